"""Receptive fields of any layer, measured from the support of a unit's input gradient.

The probe runs the model itself (no copy: forward hooks and `torch.func.functional_call`,
removed afterwards) in float64 with every path from an input pixel to a unit carrying a
positive weight: conv and linear weights are 1 / fan-in, biases 0, BatchNorm, dropout and
activation modules pass their input through, max-pools are replaced by average pools of the
same geometry (a max-pool's gradient would reach one pixel of each window only). On an input of
ones every intermediate value is positive, so functional ReLUs pass everything too. The input
pixels with a nonzero gradient are then exactly the pixels the unit sees. The unit is taken at
the centre of the map, on an input enlarged (2x, 4x, 8x) until its support no longer touches
the border (zero padding hides whatever lies beyond it); its neighbour one row and column down
gives the stride. A unit (y, x) sees input rows ``stride * y + offset ... + size - 1``
(columns alike). Limits: a functional max-pool in the model's forward (not a module) is not
replaced and narrows the measured field.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from interpret.layers import layer_output, resolve_layer

#: Input enlargements tried before a field that still touches the border is reported clipped.
SCALES = (1, 2, 4, 8)
_PASS_THROUGH = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
                 nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh, nn.Softplus, nn.Mish,
                 nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd)


@dataclass(frozen=True)
class ReceptiveField:
    """Per axis (rows, cols): unit (y, x) sees rows stride[0] * y + offset[0] ... + size[0] - 1.

    `clipped`: the unit's support reached the border of the largest input tried (a global
    layer): every unit is then taken to see the whole input (size = the input's extent,
    stride 0, offset 0).
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
            return "whole input"
        return f"{axis(self.size)} px, stride {axis(self.stride)}, offset {axis(self.offset)}"


def _replaced_output(module: nn.Module):
    """A forward hook giving `module` the probe's behaviour, or None to leave it as it is."""
    if isinstance(module, _PASS_THROUGH):
        return lambda _m, inputs, _out: inputs[0]
    if isinstance(module, nn.MaxPool2d) and module.dilation in (1, (1, 1)):
        # a max-pool that pads its own input (Keras 'same', `pad_input`) is averaged over that padding
        pad = getattr(module, "pad_input", None)
        return lambda m, inputs, _out: F.avg_pool2d(inputs[0] if pad is None else pad(inputs[0], 0.0), m.kernel_size,
                                                    m.stride, m.padding, m.ceil_mode, count_include_pad=True)
    if isinstance(module, nn.AdaptiveMaxPool2d):
        return lambda m, inputs, _out: F.adaptive_avg_pool2d(inputs[0], m.output_size)
    return None


def _positive_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """float64 parameters and buffers: conv/linear weights 1 / fan-in (broadcast, not stored), the rest 0."""
    state = {}
    for prefix, module in model.named_modules():
        for name, tensor in list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False)):
            key = f"{prefix}.{name}" if prefix else name
            if not tensor.is_floating_point():
                continue
            weight = name == "weight" and isinstance(module, (nn.modules.conv._ConvNd, nn.Linear))
            value = 1.0 / tensor[0].numel() if weight else 0.0
            state[key] = torch.full((), value, dtype=torch.float64, device=tensor.device).expand(tensor.shape)
    return state


@contextlib.contextmanager
def _probe(model: nn.Module):
    """Inside the block, the probe's forward of `model` (see the module docstring)."""
    handles = []
    try:
        for module in model.modules():
            hook = _replaced_output(module)
            if hook is not None:
                handles.append(module.register_forward_hook(hook))
        state = _positive_state(model)
        yield lambda x: torch.func.functional_call(model, state, (x,))
    finally:
        for handle in handles:
            handle.remove()


def _support(grad: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the input where the gradient (1, C, H, W) is nonzero."""
    seen = grad.abs().sum((0, 1)) > 0
    return torch.nonzero(seen.any(1))[:, 0].numpy(), torch.nonzero(seen.any(0))[:, 0].numpy()


def receptive_field(model: nn.Module, layer, input_shape) -> ReceptiveField:
    """The receptive field of a unit of `layer` (a name or declared number) for inputs of
    `input_shape` (C, H, W)."""
    name = resolve_layer(model, layer)
    channels, height, width = input_shape
    device = next(model.parameters()).device
    measured = None
    with _probe(model) as forward:
        for scale in SCALES:
            x = torch.ones(1, channels, height * scale, width * scale, dtype=torch.float64, device=device,
                           requires_grad=True)
            try:
                out = layer_output(model, name, x, detach=False, forward=forward)
            except RuntimeError:
                if measured is None:
                    raise
                break  # the model refuses larger inputs before this layer: keep the last measurement
            measured = _measure(out, x)
            if not measured.clipped:
                return measured
    return ReceptiveField((height, width), (0, 0), (0, 0), clipped=True)


def _measure(out: torch.Tensor, x: torch.Tensor) -> ReceptiveField:
    """Size, stride and offset from the centre unit of map 0 and its lower-right neighbour."""
    _, _, h, w = out.shape
    y, c = h // 2, w // 2
    first = _support(torch.autograd.grad(out[0, 0, y, c], x, retain_graph=True)[0])
    second = _support(torch.autograd.grad(out[0, 0, min(y + 1, h - 1), min(c + 1, w - 1)], x)[0])
    size, stride, offset, clipped = [], [], [], False
    axes = ((first[0], second[0], h, y), (first[1], second[1], w, c))
    for axis, (lines, next_lines, units, centre) in enumerate(axes):
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
