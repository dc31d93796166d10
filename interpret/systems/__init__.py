"""The four other seed systems as registered architectures (SEEDS.md §1-4).

`interpret.models` imports this package at its end, so `ARCHITECTURES` always holds
liu2019, djellali2021, wu2019 and wang2022 beside the core ones. Importing it only defines
classes and registers builders: no network is built, nothing is read.

How each system trains (recipes, labels, augmentation, loss, its own metrics) lives in
`interpret.systems.specs`, which `interpret.training` imports when it trains.
"""

from __future__ import annotations

from interpret.data.transforms import InputSpec
from interpret.models import Architecture, register_architecture
from interpret.systems import djellali2021, liu2019, wang2022, wu2019

GREY48_UNIT = InputSpec(size=48, channels=1, normalize="unit", resize=48)

SYSTEM_ARCHITECTURES = {
    "liu2019": Architecture(
        build=liu2019.LiuValenceCNN, input=GREY48_UNIT, layers={k: f"relu{k}" for k in range(1, 5)},
        description="Liu et al. 2019 (seed 000): valence CNN, Table I corrected, 9 SAM levels, 1,367,241 parameters"),
    "djellali2021": Architecture(
        build=djellali2021.DjellaliCNN, input=GREY48_UNIT, layers={k: f"relu{k}" for k in range(1, 5)},
        description="Djellali & Deljanin 2021 (seed 001): Keras CNN, valid padding, 2,345,607 parameters for 7 classes"),
    "wu2019": Architecture(
        build=wu2019.WuFrameCNN, input=InputSpec(size=48, channels=1, normalize="standardize", resize=48),
        layers={k: f"relu{k}" for k in range(1, 8)},
        description="Wu & Pan 2019 (seed 002): VGG-style frame CNN, 512-d feature, then LSTM 128 -> 64 -> FC on sequences"),
    "wang2022": Architecture(
        build=wang2022.WangDCNN, input=InputSpec(size=wang2022.CROP, channels=3, normalize="unit", resize=48),
        layers={k: f"relu{k}" for k in range(1, 6)},
        description="Wang 2022 (seed 003): five classes, first conv 3x3x96 on RGB (rest our design), ten-crop"),
}

for _name, _arch in SYSTEM_ARCHITECTURES.items():
    register_architecture(_name, _arch)
