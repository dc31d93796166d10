"""Seed 001, Djellali & Deljanin 2021: the paper's Keras network, valid padding (SEEDS.md §2.3).

48x48 grey in; conv 32, conv 64, pool, dropout .25, conv 128, pool, conv 128, pool, dropout .25
(3x3 kernels, valid padding, ReLU), FC 1024, dropout .5, 7 logits: 2,345,607 parameters.
Keras initialisation (glorot-uniform kernels, zero biases).

Module names: stage k = `convK`/`reluK`/`poolK` (`pool1` is the identity: the first pool follows
conv2), dropouts `drop2` and `drop4`; the FC layer `fc`, its dropout `dropout`, the output `out`.
"""

from __future__ import annotations

import torch
from torch import nn

from interpret.systems.nets import ConvStage, StagedCNN, keras_init

INPUT_SIDE = 48
STAGES = (ConvStage(32, 3, 0), ConvStage(64, 3, 0, pool=2, dropout=0.25), ConvStage(128, 3, 0, pool=2),
          ConvStage(128, 3, 0, pool=2, dropout=0.25))


class DjellaliCNN(StagedCNN):
    def __init__(self, n_classes: int = 7):
        super().__init__(1, STAGES)
        flat = self.out_channels * self.feature_side(INPUT_SIDE) ** 2  # 128 * 4 * 4 = 2,048
        self.fc = nn.Linear(flat, 1024)
        self.relu_fc = nn.ReLU()
        self.dropout = nn.Dropout(0.5)
        self.out = nn.Linear(1024, n_classes)
        keras_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.features(x), 1)
        return self.out(self.dropout(self.relu_fc(self.fc(x))))
