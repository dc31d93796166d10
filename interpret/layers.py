"""Layers by name: resolve `--layer`, capture a layer's output with hooks that are always removed.

A layer is a module path as `model.named_modules()` spells it (`relu3`, `features.4`,
`block2.act`). An architecture may declare numbered shorthands (`--layer 3` = `relu3` for
zhu2019, see `interpret.models.Architecture.layers`). Hooks live only inside a `with` block
(`retain`) and are removed in `finally`, also when the forward raises.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from interpret.errors import InterpretError


def layer_shorthands(model: nn.Module) -> dict[int, str]:
    """The numbered layers `model`'s registered architecture declares ({} if none)."""
    from interpret.models import ARCHITECTURES

    arch = ARCHITECTURES.get(getattr(model, "arch", None))
    return dict(arch.layers) if arch is not None else {}


def unwrapped(model: nn.Module) -> nn.Module:
    """The user's model inside DistributedDataParallel and `torch.compile` wrappers (layer names are its names)."""
    while isinstance(model, nn.parallel.DistributedDataParallel) or hasattr(model, "_orig_mod"):
        model = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model._orig_mod
    return model


def resolve_layer(model: nn.Module, layer) -> str:
    """The module name `layer` denotes: a declared number, else a name from `named_modules()`
    (of the model inside any DDP or `torch.compile` wrapper)."""
    model = unwrapped(model)
    names = dict(model.named_modules())
    text = str(layer).strip()
    if text.isdigit():
        shorthands = layer_shorthands(model)
        if int(text) in shorthands:
            return shorthands[int(text)]
        if text in names:  # an nn.Sequential child such as `4`
            return text
        declared = ", ".join(f"{k}={v}" for k, v in shorthands.items()) or "none"
        raise InterpretError(f"--layer {text}: this architecture declares no layer {text} "
                             f"(numbered layers: {declared}); give a module name (see `interpret layers`)")
    if text and text in names:
        return text
    close = [name for name in names if name and text and text.split(".")[-1] in name][:8]
    hint = f"; similar: {', '.join(close)}" if close else "; list them with `interpret layers`"
    raise InterpretError(f"--layer {text!r}: no module of that name in the model{hint}")


def get_module(model: nn.Module, name: str) -> nn.Module:
    return dict(unwrapped(model).named_modules())[resolve_layer(model, name)]


class _Stop(Exception):
    """Raised by a hook to end the forward once the last retained layer has run."""


@contextlib.contextmanager
def retain(model: nn.Module, names, stop: bool = False, detach: bool = True, inputs: bool = False):
    """Inside the block, `outputs[name]` holds each named layer's latest output (with `inputs`:
    its first input, e.g. the pre-activation of a ReLU).

    With `stop=True` the forward is cut short after the last of `names` has run (use
    `run_until`). Hooks are removed when the block exits, whatever happens in it.
    """
    names = [resolve_layer(model, name) for name in names]
    modules = dict(unwrapped(model).named_modules())
    outputs: dict[str, torch.Tensor] = {}
    pending = set(names)
    handles = []

    def hook_for(name):
        def hook(_module, args, output):
            kept = args[0] if inputs else output
            outputs[name] = kept.detach() if detach else kept
            pending.discard(name)
            if stop and not pending:
                raise _Stop

        return hook

    try:
        for name in names:
            handles.append(modules[name].register_forward_hook(hook_for(name)))
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


def layer_output(model: nn.Module, layer, x: torch.Tensor, detach: bool = True, forward=None,
                 inputs: bool = False) -> torch.Tensor:
    """The output of `layer` (with `inputs`: its first input) for batch `x`; the forward stops
    there. `forward(x)` runs the model (default `model(x)`; e.g. a `torch.func.functional_call`
    with other parameters)."""
    name = resolve_layer(model, layer)
    with retain(model, [name], stop=True, detach=detach, inputs=inputs) as outputs:
        try:
            (model if forward is None else forward)(x)
        except _Stop:
            pass
    if name not in outputs:
        raise InterpretError(f"--layer {name!r}: the module never ran in the forward pass")
    return outputs[name]


def default_layer(model: nn.Module) -> str:
    """The layer a step analyses when `--layer` is not given: the architecture's highest numbered one."""
    shorthands = layer_shorthands(model)
    if not shorthands:
        raise InterpretError("this model declares no default layer: give --layer NAME "
                             "(list them with `interpret layers`)")
    return shorthands[max(shorthands)]


def choose_layer(model: nn.Module, layer=None) -> str:
    """`resolve_layer`, or `default_layer` when `layer` is None."""
    return default_layer(model) if layer is None else resolve_layer(model, layer)


def trace(model: nn.Module, x: torch.Tensor) -> list[tuple[str, object]]:
    """(name, output) of every named module in the order their forwards finish, for batch `x`
    (first call only for modules that run twice); hooks removed whatever happens."""
    calls: list[tuple[str, object]] = []
    seen: set[str] = set()
    handles = []

    def hook_for(name):
        def hook(_module, _inputs, output):
            if name not in seen:
                seen.add(name)
                calls.append((name, output.detach() if isinstance(output, torch.Tensor) else output))

        return hook

    try:
        for name, module in model.named_modules():
            if name:
                handles.append(module.register_forward_hook(hook_for(name)))
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return calls


def map_layers(model: nn.Module, x: torch.Tensor) -> list[tuple[str, tuple[int, ...]]]:
    """The analysable layers: (name, (C, H, W)) of every module whose output is a 4-D map, in forward order."""
    return [(name, tuple(out.shape[1:])) for name, out in trace(model, x)
            if isinstance(out, torch.Tensor) and out.ndim == 4]
