"""Seed 003, Wang 2022: five expressions, a DCNN whose first layer is 3x3x96 on RGB, ten-crop.

From the paper: the classes (anger, sadness, happy, fear, calm = neutral), the first conv
(96 filters of 3x3 on 3 channels: 2,592 weights), Adam, ten-crop augmentation (four corners and
the centre, and their mirrors). **Our design, not the paper's** (SEEDS.md §4.3): the rest of the
network, [96] pool [128, 128] pool [256, 256] pool (3x3, same padding, ReLU), global average
pool, FC 256, dropout 0.5, 5 logits, PyTorch's default initialisation (the paper used PyTorch);
the input, grey faces resized to 48x48 and replicated to RGB, crops of 44x44 (WuJie1010's
FER convention; the paper gives no size).

Module names: stage k = `convK`/`reluK`/`poolK` (`pool2`, `pool4` are identities), `gap`, `fc`,
`dropout`, `out`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from interpret.data.faceset import UNLABELLED, FaceSet
from interpret.systems.nets import ConvStage, StagedCNN

FIVE_CLASSES = ("anger", "sadness", "happy", "fear", "calm")
#: Canonical emotion name (every reader's spelling) -> five-class name; other classes are dropped.
FIVE_FROM = {"anger": "anger", "sadness": "sadness", "happy": "happy", "fear": "fear", "neutral": "calm"}
INPUT_SIDE = 48
CROP = 44
STAGES = (ConvStage(96, 3, 1, pool=2), ConvStage(128, 3, 1), ConvStage(128, 3, 1, pool=2),
          ConvStage(256, 3, 1), ConvStage(256, 3, 1, pool=2))


class WangDCNN(StagedCNN):
    def __init__(self, n_classes: int = len(FIVE_CLASSES)):
        super().__init__(3, STAGES)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.out_channels, 256)
        self.relu_fc = nn.ReLU()
        self.dropout = nn.Dropout(0.5)
        self.out = nn.Linear(256, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.gap(self.features(x)), 1)
        return self.out(self.dropout(self.relu_fc(self.fc(x))))


def five_classes(faceset: FaceSet) -> FaceSet:
    """The same rows relabelled into FIVE_CLASSES; rows of other classes become unlabelled (kept
    for AU analyses, skipped by training)."""
    lookup = {i: FIVE_CLASSES.index(FIVE_FROM[name]) for i, name in enumerate(faceset.emotions) if name in FIVE_FROM}
    emotion = np.array([lookup.get(int(e), UNLABELLED) for e in faceset.emotion], dtype=np.int64)
    out = faceset.select(np.arange(len(faceset)))
    out.emotion, out.emotions = emotion, FIVE_CLASSES
    return out


def crop_offsets(side: int, size: int) -> list[tuple[int, int]]:
    """(top, left) of torchvision's five crops: top-left, top-right, bottom-left, bottom-right, centre."""
    if size > side:
        raise ValueError(f"crop {size} is larger than the image {side}")
    centre = int(round((side - size) / 2.0))
    far = side - size
    return [(0, 0), (0, far), (far, 0), (far, far), (centre, centre)]


def ten_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, S, S) -> (B, 10, C, size, size) in torchvision `TenCrop` order: the five crops, then
    the five crops of the mirrored image. Mirroring is done per crop: the crop of the flipped
    image at (top, left) is the flip of the original's crop at (top, S - size - left)."""
    side = x.shape[-1]
    crops = [x[..., t:t + size, l:l + size] for t, l in crop_offsets(side, size)]
    crops += [x[..., t:t + size, side - size - l:side - l].flip(-1) for t, l in crop_offsets(side, size)]
    return torch.stack(crops, 1)


def random_crop_of_ten(x: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """'online' ten-crop training: one of the ten crops per image, drawn uniformly."""
    crops = ten_crop(x, size)
    pick = torch.randint(0, 10, (len(x),), generator=generator, device=x.device)
    return crops[torch.arange(len(x), device=x.device), pick]


def ten_crop_logits(model: nn.Module, x: torch.Tensor, size: int) -> torch.Tensor:
    """Test-time ten-crop: log of the softmax averaged over the ten crops, (B, classes). The
    argmax is the averaged-probability decision; cross-entropy on it is that of the average."""
    crops = ten_crop(x, size)
    batch = crops.shape[0]
    logits = model(crops.flatten(0, 1)).float().view(batch, 10, -1)
    return F.softmax(logits, -1).mean(1).clamp_min(1e-12).log()
