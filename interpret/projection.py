"""Exact projection of single units to input pixels for any network (the general path).

`project_general` has the contract of `interpret.deconv.project` (the receptive-field fast path
for conv/ReLU/max-pool stacks) but works on any PyTorch CNN: BatchNorm (eval), strided or
unpadded and depthwise/separable convolutions, residual additions, average pooling, dropout.
The result is the input gradient of the unit under the rule: plain autograd does every layer
(pooling switches, transposed filters, BatchNorm's scale, additions) except the ReLU, whose
backward the rule replaces:

- 'deconvnet' (Zeiler–Fergus): relu(signal), the forward mask ignored;
- 'gradient': signal * [relu output > 0] (plain autograd);
- 'guided' (guided backprop): relu(signal) * [relu output > 0].

The rule applies at every ReLU *call*, not at ReLU modules: a `TorchFunctionMode` active during
the forward swaps each `F.relu`/`torch.relu`/`Tensor.relu` (and their in-place forms; `nn.ReLU`
goes through `F.relu`) for an autograd function with the rule's backward. So a functional ReLU,
an in-place ReLU and one `nn.ReLU` module called twice all get the rule, where hook-based tools
(captum's NeuronDeconvolution / NeuronGuidedBackprop hook `nn.ReLU` modules) silently pass the
plain gradient or hook only one of the calls. Other piecewise-linear or smooth activations
(ReLU6/Hardtanh, LeakyReLU, PReLU, RReLU, Threshold, ELU, SELU, CELU, GELU, SiLU, Mish, Softplus,
Hardswish) have no agreed deconvnet/guided rule: they are refused under those rules (the
gradient rule takes them as they are). A ReLU written as other ops (`clamp`, `where`, `max`) is
not a ReLU call and passes the plain gradient.

Seeds are batched: each seed's image is replicated into a batch row (`chunk` rows at a time, to
bound memory), one forward runs up to the layer and stops there, each row picks its own unit,
and one backward of their sum gives every row's projection (rows do not interact in eval mode).
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from interpret.layers import layer_output, resolve_layer

RULES = ("deconvnet", "gradient", "guided")
#: Seeds per forward/backward batch; bounds memory (each row keeps one forward up to the layer).
CHUNK = 64

_RELU = {F.relu, torch.relu, torch.Tensor.relu}
_RELU_INPLACE = {F.relu_, torch.relu_, torch.Tensor.relu_}
_REFUSED = {
    F.relu6: "ReLU6", F.hardtanh: "Hardtanh/ReLU6", F.hardtanh_: "Hardtanh/ReLU6",
    F.leaky_relu: "LeakyReLU", F.leaky_relu_: "LeakyReLU", F.prelu: "PReLU", torch.prelu: "PReLU",
    F.rrelu: "RReLU", F.rrelu_: "RReLU", F.threshold: "Threshold", F.threshold_: "Threshold",
    torch.threshold: "Threshold", F.elu: "ELU", F.elu_: "ELU", F.selu: "SELU", torch.selu: "SELU",
    F.celu: "CELU", torch.celu: "CELU", F.gelu: "GELU", F.silu: "SiLU", F.mish: "Mish",
    F.softplus: "Softplus", F.hardswish: "Hardswish",
}


class _RuleReLU(torch.autograd.Function):
    """ReLU forward; the rule's backward (see the module docstring)."""

    @staticmethod
    def forward(ctx, x, rule: str, inplace: bool):
        out = x.clamp_(min=0) if inplace else x.clamp(min=0)
        if inplace:
            ctx.mark_dirty(x)
        ctx.rule = rule
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, signal):
        (out,) = ctx.saved_tensors
        if ctx.rule != "gradient":
            signal = signal.clamp(min=0)
        if ctx.rule != "deconvnet":
            signal = signal * (out > 0)
        return signal, None, None


class _RuleMode(TorchFunctionMode):
    """Inside: every ReLU call gets `rule`'s backward; activations without a rule are refused."""

    def __init__(self, rule: str):
        super().__init__()
        self.rule = rule

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _RELU or func in _RELU_INPLACE:
            inplace = func in _RELU_INPLACE or bool(kwargs.get("inplace", args[1] if len(args) > 1 else False))
            return _RuleReLU.apply(args[0], self.rule, inplace)
        if func in _REFUSED:
            raise ValueError(f"rule {self.rule!r} is defined at ReLUs only; the network calls "
                             f"{_REFUSED[func]} before the layer (use rule 'gradient')")
        return func(*args, **kwargs)


def project_general(model, layer, images, seeds, rule: str = "deconvnet", owner=None,
                    chunk: int = CHUNK) -> torch.Tensor:
    """Project single units of module `layer`'s output to input pixels: (B, H, W) float32.

    layer: a module name (or a number the architecture declares, see `resolve_layer`); a module
    called more than once in the forward is taken at its first call.
    images (N, C, H, W), any C: the projection is the input gradient summed over the C input
    channels. seeds (B, 3) ints (c, y, x) on the layer's output (B, C', H', W'); seed i
    belongs to images[i], or with `owner` (B,) to images[owner[i]]. rule: 'deconvnet',
    'gradient' or 'guided' (module docstring). The top signal is 1 (a unit signal); pooling
    switches and ReLU masks are each image's own forward's. The model runs in eval mode
    (BatchNorm's running statistics, no dropout); its train/eval flags are restored after.
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {', '.join(RULES)}, got {rule!r}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    name = resolve_layer(model, layer)
    device = next(model.parameters()).device
    images = torch.as_tensor(images, dtype=torch.float32).to(device)
    seeds = torch.as_tensor(np.asarray(seeds), dtype=torch.long).reshape(-1, 3).to(device)
    owner = torch.arange(len(seeds), device=device) if owner is None else \
        torch.as_tensor(np.asarray(owner), dtype=torch.long).reshape(-1).to(device)
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got {tuple(images.shape)}")
    if owner.shape != (len(seeds),) or (len(seeds) and not 0 <= int(owner.min()) <= int(owner.max()) < len(images)):
        raise ValueError(f"{len(seeds)} seeds need one image each: {len(images)} images, owner {tuple(owner.shape)}")
    out = torch.zeros(len(seeds), *images.shape[2:], device=device)
    if not len(seeds):
        return out
    modes = {module: module.training for module in model.modules()}
    model.eval()
    # full float32 convolutions on the GPU (cuDNN would use TF32), as the fast path
    flags = torch.backends.cudnn.flags(enabled=True, allow_tf32=False) if device.type == "cuda" else contextlib.nullcontext()
    try:
        with flags:
            with torch.no_grad():
                shape = _output_shape(layer_output(model, name, images[:1]), name)
            _check_seeds(seeds, shape, name)
            for lo in range(0, len(seeds), chunk):
                rows = slice(lo, lo + chunk)
                out[rows] = _project_chunk(model, name, images[owner[rows]], seeds[rows], rule)
    finally:
        for module, training in modes.items():
            module.train(training)
    return out


def _output_shape(output, name: str) -> tuple[int, int, int]:
    if not isinstance(output, torch.Tensor) or output.ndim != 4:
        found = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise ValueError(f"layer {name!r} must output a (B, C, H, W) map to project its units, got {found}")
    return tuple(output.shape[1:])


def _check_seeds(seeds: torch.Tensor, shape, name: str) -> None:
    low = seeds.min(0).values
    high = seeds.max(0).values
    if bool((low < 0).any()) or any(int(h) >= s for h, s in zip(high, shape)):
        raise ValueError(f"seeds must lie in {name}'s output: channels 0..{shape[0] - 1}, "
                         f"rows 0..{shape[1] - 1}, columns 0..{shape[2] - 1}")


def _project_chunk(model, name: str, images: torch.Tensor, seeds: torch.Tensor, rule: str) -> torch.Tensor:
    """Input gradients (B, H, W) of unit seeds[i] of images[i] under `rule`, one forward/backward."""
    x = images.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        if rule == "gradient":  # plain autograd is the gradient rule
            output = layer_output(model, name, x, detach=False)
        else:
            with _RuleMode(rule):
                output = layer_output(model, name, x, detach=False)
        c, y, xx = seeds.unbind(1)
        units = output[torch.arange(len(seeds), device=seeds.device), c, y, xx]
        (grad,) = torch.autograd.grad(units.sum(), x)
    return grad.sum(1)
