"""The registered architectures.

`ARCHITECTURES` maps a name to an `Architecture`: how to build it for n classes, the input it
takes (`InputSpec`), and the layer numbers it declares as shorthands for module names
(`--layer 3` = `relu3` for zhu2019). Other modules register their own with
`register_architecture`.

The paper's family (zhu2019, khorrami2015) is built from one set of named blocks: every conv
stage is `convK` -> `reluK` (its own non-inplace `nn.ReLU`: deconvnet rules and captum hook
these modules) -> `poolK`, addressed by `stage(model, K)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from interpret.data.transforms import PAPER_INPUT, InputSpec

INPUT_SIZE = 96


@dataclass(frozen=True)
class Architecture:
    """A registered network: `build(n_classes)`, its input, its numbered layer shorthands."""

    build: Callable[[int], nn.Module]
    input: InputSpec
    layers: dict[int, str] = field(default_factory=dict)
    description: str = ""


ARCHITECTURES: dict[str, Architecture] = {}


def register_architecture(name: str, architecture: Architecture) -> None:
    ARCHITECTURES[name] = architecture


@dataclass(frozen=True)
class ArchSpec:
    """Channels per conv stage, pooling of the last stage, and the FC width."""

    channels: tuple[int, ...]
    kernel: int
    last_pool: int
    fc: int
    description: str


CONV_NETS = {
    "zhu2019": ArchSpec((64, 128, 256), 5, 2, 1024,
                        "Zhu, Fan, Yuan 2019: conv5x5 64/128/256, 2x2 max-pools, FC 1024, dropout 0.5"),
    "khorrami2015": ArchSpec((64, 128, 256), 5, 12, 300,
                             "Khorrami et al. 2015: conv5x5 64/128/256, 2x2, 2x2, 12x12 max-pool, FC 300"),
}


class ExpressionNet(nn.Module):
    """Grey 96x96 input, three conv stages, one hidden FC layer with dropout, class logits."""

    def __init__(self, arch: str, n_classes: int):
        super().__init__()
        if arch not in CONV_NETS:
            raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(CONV_NETS)}")
        spec = CONV_NETS[arch]
        self.arch = arch
        self.n_layers = len(spec.channels)
        in_channels, side = 1, INPUT_SIZE
        for k, out_channels in enumerate(spec.channels, start=1):
            pool = spec.last_pool if k == self.n_layers else 2
            setattr(self, f"conv{k}", nn.Conv2d(in_channels, out_channels, spec.kernel, padding=spec.kernel // 2))
            setattr(self, f"relu{k}", nn.ReLU())
            setattr(self, f"pool{k}", nn.MaxPool2d(pool))
            in_channels, side = out_channels, side // pool
        self.fc = nn.Linear(in_channels * side * side, spec.fc)
        self.relu_fc = nn.ReLU()
        self.dropout = nn.Dropout(0.5)
        self.out = nn.Linear(spec.fc, n_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He-normal weights (std = sqrt(2 / fan_in)) and zero biases.

        The paper's "Gaussian, variance 1" explodes activations through three ReLU layers
        (std 1 on a 5x5x128 fan-in multiplies the scale by ~57 per layer); He init keeps the
        activation variance constant under ReLU, which is what "variance 1" is usually meant
        to approximate. The output layer feeds a softmax, not a ReLU: it starts small (std 0.01)
        so the initial logits are near zero and the first loss is log(classes), not ~5–10.
        """
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.out.weight, std=0.01)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        for k in range(1, self.n_layers + 1):
            x = stage(self, k).pool(stage(self, k).relu(stage(self, k).conv(x)))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.features(x), 1)
        return self.out(self.dropout(self.relu_fc(self.fc(x))))


@dataclass(frozen=True)
class Stage:
    conv: nn.Conv2d
    relu: nn.ReLU
    pool: nn.MaxPool2d


def stage(model: nn.Module, layer: int) -> Stage:
    """The (conv, relu, pool) modules of conv layer `layer` (1-based)."""
    if not 1 <= layer <= model.n_layers:
        raise ValueError(f"layer must be 1..{model.n_layers}, got {layer}")
    return Stage(getattr(model, f"conv{layer}"), getattr(model, f"relu{layer}"), getattr(model, f"pool{layer}"))


def build_model(arch: str, n_classes: int) -> nn.Module:
    """A fresh network of a registered architecture; its `.arch` attribute names it."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
    model = ARCHITECTURES[arch].build(n_classes)
    model.arch = arch
    return model


def input_spec(arch: str) -> InputSpec:
    return ARCHITECTURES[arch].input if arch in ARCHITECTURES else PAPER_INPUT


for _name, _spec in CONV_NETS.items():
    register_architecture(_name, Architecture(
        build=lambda n, name=_name: ExpressionNet(name, n), input=PAPER_INPUT,
        layers={k: f"relu{k}" for k in range(1, len(_spec.channels) + 1)}, description=_spec.description))


# The seed systems register themselves (after everything above exists, which they import).
import interpret.systems  # noqa: E402,F401
