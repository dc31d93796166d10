"""Receptive fields of any layer, measured from the support of a unit's input gradient.

The probe is a float64 copy of the model in which every path from an input pixel to a unit
carries a positive weight: conv and linear weights are 1 / fan-in, biases 0, BatchNorm and
activation modules are identities, max-pools become average pools of the same geometry (a
max-pool's gradient would reach one pixel of each window only). On an input of ones every
intermediate value is positive, so functional ReLUs pass everything too. The input pixels with
a nonzero gradient are then exactly the pixels the unit sees. The unit is taken at the centre
of the map, on an input enlarged (2x, 4x, 8x) until its support no longer touches the border
(zero padding hides whatever lies beyond it); its neighbour one row and column down gives the
stride. A unit (y, x) sees input rows ``stride * y + offset ... + size - 1`` (columns alike).
Limits: a functional max-pool in the model's forward (not a module) is not replaced and
narrows the measured field.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from interpret.layers import layer_output, resolve_layer

#: Input enlargements tried before a field that still touches the border is reported clipped.
SCALES = (1, 2, 4, 8)
_IDENTITIES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
               nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh, nn.Softplus, nn.Mish,
               nn.modules.batchnorm._BatchNorm, nn.Dropout, nn.Dropout2d)


@dataclass(frozen=True)
class ReceptiveField:
    """Per axis (rows, cols): unit (y, x) sees rows stride[0] * y + offset[0] ... + size[0] - 1.

    `clipped`: the unit's support reached the border of the largest input tried (a global
    layer); size is then the input's extent and stride 0 where the map has one unit.
    """

    size: tuple[int, int]
    stride: tuple[int, int]
    offset: tuple[int, int]
    clipped: bool = False

    def boxes(self, position, shape) -> np.ndarray:
        """(..., 4) boxes (top, left, bottom, right) of units at `position` (..., 2) (row, col),
        clipped to an image of `shape` (H, W); bottom and right are exclusive."""
        start = np.asarray(self.stride) * np.asarray(position) + np.asarray(self.offset)
        stop = start + np.asarray(self.size)
        limit = np.asarray(shape[-2:])
        return np.concatenate([np.clip(start, 0, limit), np.clip(stop, 0, limit)], axis=-1).astype(np.int32)

    def describe(self) -> str:
        def axis(values):
            return str(values[0]) if values[0] == values[1] else f"{values[0]}x{values[1]}"

        if self.clipped:
            return f"whole input (>= {axis(self.size)})"
        return f"{axis(self.size)} px, stride {axis(self.stride)}, offset {axis(self.offset)}"


def _probe(model: nn.Module) -> nn.Module:
    """The all-paths-positive float64 copy of `model` described in the module docstring."""
    probe = copy.deepcopy(model).double().eval()
    for parent in list(probe.modules()):
        for child_name, child in list(parent.named_children()):
            replacement = _replacement(child)
            if replacement is not None:
                setattr(parent, child_name, replacement)
    with torch.no_grad():
        for module in probe.modules():
            if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)):
                module.weight.fill_(1.0 / module.weight[0].numel())
                if module.bias is not None:
                    module.bias.zero_()
    return probe


def _replacement(module: nn.Module) -> nn.Module | None:
    if isinstance(module, _IDENTITIES):
        return nn.Identity()
    if isinstance(module, nn.MaxPool2d) and module.dilation in (1, (1, 1)):
        return nn.AvgPool2d(module.kernel_size, module.stride, module.padding, module.ceil_mode,
                            count_include_pad=True)
    if isinstance(module, nn.AdaptiveMaxPool2d):
        return nn.AdaptiveAvgPool2d(module.output_size)
    return None


def _support(grad: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the input where the gradient (1, C, H, W) is nonzero."""
    seen = grad.abs().sum((0, 1)) > 0
    return torch.nonzero(seen.any(1))[:, 0].numpy(), torch.nonzero(seen.any(0))[:, 0].numpy()


def receptive_field(model: nn.Module, layer, input_shape) -> ReceptiveField:
    """The receptive field of a unit of `layer` (a name or declared number) for inputs of
    `input_shape` (C, H, W)."""
    name = resolve_layer(model, layer)
    probe = _probe(model)
    channels, height, width = input_shape
    measured = None
    for scale in SCALES:
        x = torch.ones(1, channels, height * scale, width * scale, dtype=torch.float64, requires_grad=True)
        try:
            out = layer_output(probe, name, x, detach=False)
        except RuntimeError:
            if measured is None:
                raise
            break  # the model refuses larger inputs before this layer: keep the last measurement
        measured = _measure(out, x)
        if not measured.clipped:
            break
    return measured


def _measure(out: torch.Tensor, x: torch.Tensor) -> ReceptiveField:
    """Size, stride and offset from the centre unit of map 0 and its lower-right neighbour."""
    _, _, h, w = out.shape
    y, c = h // 2, w // 2
    first = _support(torch.autograd.grad(out[0, 0, y, c], x, retain_graph=True)[0])
    second = _support(torch.autograd.grad(out[0, 0, min(y + 1, h - 1), min(c + 1, w - 1)], x)[0])
    size, stride, offset, clipped = [], [], [], False
    for axis, (lines, next_lines, units, centre) in enumerate(((first[0], second[0], h, y), (first[1], second[1], w, c))):
        extent = x.shape[2 + axis]
        if len(lines) == 0:
            raise ValueError("the unit does not depend on the input (a constant layer)")
        lo, hi = int(lines[0]), int(lines[-1])
        clipped |= lo == 0 or hi == extent - 1
        step = int(next_lines[0]) - lo if units > 1 else 0
        size.append(hi - lo + 1)
        stride.append(step)
        offset.append(lo - step * centre)
    return ReceptiveField(tuple(size), tuple(stride), tuple(offset), clipped)
