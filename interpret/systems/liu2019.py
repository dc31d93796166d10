"""Seed 000, Liu et al. 2019: the valence CNN of Table I, corrected (SEEDS.md §1.4).

48x48 grey in; conv 1x1x32, 5x5x32, 3x3x32, 3x3x64 (same padding, ReLU) with 2x2 max-pools
after the 2nd, 3rd and 4th conv; FC 512 and FC 256 (ReLU, dropout 0.4, kernels N(0, 0.05^2));
9 logits, one per SAM valence level. 1,367,241 parameters for 9 outputs.

Module names: stage k = `convK`/`reluK`/`poolK` (`pool1` is the identity: the paper pools
after conv2, so the paper's pool1..pool3 are our `pool2`..`pool4`); the paper's FC1 is `fc`
(the name every analysis looks up), FC2 is `fc2`, the output layer `out`.
"""

from __future__ import annotations

import torch
from torch import nn

from interpret.systems.nets import ConvStage, StagedCNN, keras_init

INPUT_SIDE = 48
N_LEVELS = 9
STAGES = (ConvStage(32, 1, 0), ConvStage(32, 5, 2, pool=2), ConvStage(32, 3, 1, pool=2), ConvStage(64, 3, 1, pool=2))
#: Keras `l2(0.05)` on the FC1 and FC2 kernels (SEEDS.md §1.5).
L2 = 0.05
DROPOUT = 0.4
FC_INIT_STD = 0.05


class LiuValenceCNN(StagedCNN):
    def __init__(self, n_classes: int = N_LEVELS):
        super().__init__(1, STAGES)
        flat = self.out_channels * self.feature_side(INPUT_SIDE) ** 2  # 64 * 6 * 6 = 2,304
        self.fc = nn.Linear(flat, 512)
        self.relu_fc = nn.ReLU()
        self.drop_fc = nn.Dropout(DROPOUT)
        self.fc2 = nn.Linear(512, 256)
        self.relu_fc2 = nn.ReLU()
        self.drop_fc2 = nn.Dropout(DROPOUT)
        self.out = nn.Linear(256, n_classes)
        keras_init(self)
        for fc in (self.fc, self.fc2):  # Keras `random_normal`
            nn.init.normal_(fc.weight, std=FC_INIT_STD)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.features(x), 1)
        x = self.drop_fc(self.relu_fc(self.fc(x)))
        x = self.drop_fc2(self.relu_fc2(self.fc2(x)))
        return self.out(x)


def l2_penalty(model: LiuValenceCNN, strength: float = L2, convention: str = "keras") -> torch.Tensor:
    """The weight penalty added to the loss: FC1 and FC2 kernels only (no biases, conv or output).

    'keras' (default, the implementation's convention): strength * sum(w^2), which equals a coupled
    weight decay of 2 * strength on those kernels; 'half' (the paper's eq. 2): strength / 2 * sum(w^2).
    """
    if convention not in ("keras", "half"):
        raise ValueError(f"l2 convention must be 'keras' or 'half', got {convention!r}")
    total = model.fc.weight.pow(2).sum() + model.fc2.weight.pow(2).sum()
    return (strength if convention == "keras" else strength / 2) * total
