"""Seed 002, Wu & Pan 2019: a VGG-style frame CNN with a 512-d feature head, frozen, then
LSTM 128 -> LSTM 64 -> FC over sequences of its features (SEEDS.md §3).

Frame CNN (our reading of "x2/x3 rounds of 32/64/128 3x3 filters"): [32, 32] pool [64, 64] pool
[128, 128, 128] pool (same padding, ReLU, no normalisation), flatten, FC 512 (ReLU, dropout 0.5:
the feature), 7 logits for pre-training. Keras initialisation. Input 48x48 grey (the paper's
256x256 is a parameter of `WuFrameCNN`; 48 is the CPU default).

Sequence head: LSTM(512 -> 128), dropout 0.5, LSTM(128 -> 64), dropout 0.5, flatten over the T
steps (return_sequences, as the paper's Flatten implies), FC(64 T -> classes). T = 1 is the paper.
Sequence modes (`sequences`): `single` (each frame alone, T = 1), `last-k` (the last T frames of
each sequence, one sample per sequence), `window` (every run of T consecutive frames, stride s,
labelled by its last frame). The "no CNN" baseline is the same head on raw pixels, one image row
per time step (`RowsLSTM`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from interpret.systems.nets import ConvStage, StagedCNN, keras_init

INPUT_SIDE = 48
FEATURES = 512
SEQUENCE_MODES = ("single", "last-k", "window")


def frame_stages() -> tuple[ConvStage, ...]:
    return (ConvStage(32, 3, 1), ConvStage(32, 3, 1, pool=2), ConvStage(64, 3, 1), ConvStage(64, 3, 1, pool=2),
            ConvStage(128, 3, 1), ConvStage(128, 3, 1), ConvStage(128, 3, 1, pool=2))


class WuFrameCNN(StagedCNN):
    """The frame CNN; `embed(x)` is the 512-d feature (FC 512 after its ReLU)."""

    def __init__(self, n_classes: int = 7, side: int = INPUT_SIDE):
        super().__init__(1, frame_stages())
        self.fc = nn.Linear(self.out_channels * self.feature_side(side) ** 2, FEATURES)
        self.relu_fc = nn.ReLU()
        self.dropout = nn.Dropout(0.5)
        self.out = nn.Linear(FEATURES, n_classes)
        keras_init(self)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu_fc(self.fc(torch.flatten(self.features(x), 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.dropout(self.embed(x)))


class SequenceHead(nn.Module):
    """(B, T, D) -> (B, classes): LSTM 128, dropout, LSTM 64, dropout, flatten, FC."""

    def __init__(self, n_classes: int, steps: int, in_features: int = FEATURES, dropout: float = 0.5):
        super().__init__()
        self.steps = steps
        self.lstm1 = nn.LSTM(in_features, 128, batch_first=True)
        self.drop1 = nn.Dropout(dropout)
        self.lstm2 = nn.LSTM(128, 64, batch_first=True)
        self.drop2 = nn.Dropout(dropout)
        self.out = nn.Linear(64 * steps, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.steps:
            raise ValueError(f"sequence head built for {self.steps} steps, got {x.shape[1]}")
        x = self.drop1(self.lstm1(x)[0])
        x = self.drop2(self.lstm2(x)[0])
        return self.out(torch.flatten(x, 1))


def image_rows(images: torch.Tensor) -> torch.Tensor:
    """The "no CNN" input: (B, 1, H, W) images -> (B, H, W), one row per time step."""
    return images[:, 0]


def build_sequences(sequence: np.ndarray, frame: np.ndarray, targets: np.ndarray, mode: str, steps: int,
                    stride: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(samples (M, T) row indices, labels (M,)) for rows grouped by `sequence`, ordered by `frame`.

    single: every labelled row alone (T must be 1). last-k: the last T rows of each sequence,
    labelled by the last row; sequences shorter than T are skipped. window: every run of T
    consecutive rows, start stepping by `stride`, labelled by its last row. Samples whose label
    is -1 (unlabelled) are dropped.
    """
    if mode not in SEQUENCE_MODES:
        raise ValueError(f"sequence mode must be one of {', '.join(SEQUENCE_MODES)}, got {mode!r}")
    if steps < 1 or stride < 1:
        raise ValueError("steps and stride must be at least 1")
    if mode == "single" and steps != 1:
        raise ValueError("sequence mode 'single' has T = 1")
    order = np.lexsort((frame, sequence))
    samples = []
    start = 0
    while start < len(order):
        stop = start
        while stop < len(order) and sequence[order[stop]] == sequence[order[start]]:
            stop += 1
        rows = order[start:stop]
        if mode == "single":
            samples += [[r] for r in rows]
        elif mode == "last-k":
            if len(rows) >= steps:
                samples.append(list(rows[-steps:]))
        else:
            samples += [list(rows[i:i + steps]) for i in range(0, len(rows) - steps + 1, stride)]
        start = stop
    samples = np.array(samples, dtype=np.int64).reshape(-1, steps)
    labels = targets[samples[:, -1]] if len(samples) else np.zeros(0, np.int64)
    keep = labels >= 0
    return samples[keep], labels[keep]


def fit_head(head: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, batch_size: int = 32,
             lr: float = 1e-3, seed: int = 0) -> list[float]:
    """Train a head with Adam and cross-entropy on (N, T, D) inputs; returns the loss per epoch."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(head.parameters(), lr=lr)
    losses = []
    head.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        total = 0.0
        for start in range(0, len(x), batch_size):
            index = order[start:start + batch_size]
            loss = nn.functional.cross_entropy(head(x[index]), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(index)
        losses.append(total / max(1, len(x)))
    head.eval()
    return losses


@torch.no_grad()
def head_predict(head: nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    head.eval()
    if not len(x):
        return torch.zeros(0, dtype=torch.int64)
    return torch.cat([head(x[s:s + batch_size]).argmax(1) for s in range(0, len(x), batch_size)])
