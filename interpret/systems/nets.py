"""Stage-built CNNs shared by the seed systems.

Every conv layer k is a stage `convK` -> `reluK` (its own non-inplace `nn.ReLU`, so deconvnet
and captum hooks see it) -> `poolK` (-> `dropK` where the paper puts a dropout), addressable
by `interpret.models.stage(model, k)`. A stage without pooling in the paper gets
`nn.MaxPool2d(1)`, the identity, so every network keeps the same per-stage shape and the
deconvnet / receptive-field code walks it unchanged. The head (FC layers) is the subclass's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ConvStage:
    """One conv layer: filters, square kernel, padding, max-pool factor after it (1 = none), dropout after it."""

    channels: int
    kernel: int
    padding: int
    pool: int = 1
    dropout: float = 0.0


class StagedCNN(nn.Module):
    """The conv stages of a network; `features(x)` runs them, subclasses add the head."""

    def __init__(self, in_channels: int, stages: tuple[ConvStage, ...]):
        super().__init__()
        self.n_layers = len(stages)
        self.drop_after = {}
        for k, st in enumerate(stages, start=1):
            setattr(self, f"conv{k}", nn.Conv2d(in_channels, st.channels, st.kernel, padding=st.padding))
            setattr(self, f"relu{k}", nn.ReLU())
            setattr(self, f"pool{k}", nn.MaxPool2d(st.pool))
            if st.dropout:
                setattr(self, f"drop{k}", nn.Dropout(st.dropout))
                self.drop_after[k] = f"drop{k}"
            in_channels = st.channels
        self.out_channels = in_channels

    def features(self, x: torch.Tensor) -> torch.Tensor:
        for k in range(1, self.n_layers + 1):
            x = getattr(self, f"pool{k}")(getattr(self, f"relu{k}")(getattr(self, f"conv{k}")(x)))
            if k in self.drop_after:
                x = getattr(self, self.drop_after[k])(x)
        return x

    def feature_side(self, side: int) -> int:
        """Spatial side of `features` for a `side` x `side` input."""
        for k in range(1, self.n_layers + 1):
            conv = getattr(self, f"conv{k}")
            side = (side + 2 * conv.padding[0] - conv.kernel_size[0] + 1) // getattr(self, f"pool{k}").kernel_size
        return side


def keras_init(model: nn.Module) -> None:
    """Keras' defaults: glorot-uniform kernels, zero biases (conv and dense)."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
