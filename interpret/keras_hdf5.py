"""A Keras HDF5 model file (functional CNN graph) as a PyTorch module, read with h5py only.

`load_keras_hdf5(path)` reads the graph from the file's `model_config` and the weights from
`model_weights`, and builds a `KerasGraph`: one submodule per Keras layer, named as in Keras
(`conv2d_1`, `batch_normalization_4`, `activation_3`, `separable_conv2d_2.depthwise`), so a
`--layer` name reads like the Keras summary. The forward runs the layers in the file's
(topological) order on NCHW tensors. Keras semantics are reproduced exactly:

- 'same' padding pads (total = max((ceil(n / s) - 1) * s + k - n, 0)) with the odd pixel at the
  bottom/right, for convolutions (strided too) and max-pooling (which pads with -inf);
- BatchNormalization uses the file's epsilon (Keras' default 1e-3) and moving statistics;
- SeparableConv2D is a depthwise conv (depth multiplier m: channel i*m + j comes from input i)
  then a 1x1 pointwise conv, the bias after the pointwise one;
- GlobalAveragePooling2D averages over rows and columns.

A final softmax Activation is left out, so the module outputs logits like every network in
`interpret` (softmax(logits) is the Keras model's output). Supported layers: InputLayer,
Conv2D, SeparableConv2D, DepthwiseConv2D, BatchNormalization, Activation (relu, linear),
MaxPooling2D, AveragePooling2D ('valid'), Add, GlobalAveragePooling2D, Dropout; anything else
is a one-line error naming the file and the layer.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from interpret.errors import located


SUPPORTED = ("Conv2D", "SeparableConv2D", "DepthwiseConv2D", "BatchNormalization", "Activation", "MaxPooling2D",
             "AveragePooling2D", "Add", "GlobalAveragePooling2D", "Dropout")


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding (before, after) of one axis: the odd pixel goes after."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pad_same(x: torch.Tensor, kernel, stride, value: float = 0.0) -> torch.Tensor:
    top, bottom = same_padding(x.shape[-2], kernel[0], stride[0])
    left, right = same_padding(x.shape[-1], kernel[1], stride[1])
    if top == bottom == left == right == 0:
        return x
    return F.pad(x, (left, right, top, bottom), value=value)


class KerasConv2d(nn.Conv2d):
    """nn.Conv2d with Keras padding: 'valid' (none) or 'same' (odd pixel bottom/right)."""

    def __init__(self, *args, keras_padding: str = "valid", **kwargs):
        super().__init__(*args, padding=0, **kwargs)
        self.keras_padding = keras_padding

    def forward(self, x):
        if self.keras_padding == "same":
            x = _pad_same(x, self.kernel_size, self.stride)
        return super().forward(x)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, keras_padding={self.keras_padding!r}"


class SeparableConv2d(nn.Module):
    """Keras SeparableConv2D: `depthwise` (groups = input channels) then 1x1 `pointwise`."""

    def __init__(self, channels_in, channels_out, kernel, stride, keras_padding, multiplier, bias):
        super().__init__()
        self.depthwise = KerasConv2d(channels_in, channels_in * multiplier, kernel, stride=stride,
                                     groups=channels_in, bias=False, keras_padding=keras_padding)
        self.pointwise = nn.Conv2d(channels_in * multiplier, channels_out, 1, bias=bias)

    def forward(self, x):
        return self.pointwise(self.depthwise(x))


class KerasMaxPool2d(nn.MaxPool2d):
    """nn.MaxPool2d with Keras padding ('same' pads with -inf, odd pixel bottom/right)."""

    def __init__(self, kernel, stride, keras_padding: str):
        super().__init__(kernel, stride)
        self.keras_padding = keras_padding

    def pad_input(self, x: torch.Tensor, value: float = float("-inf")) -> torch.Tensor:
        """The input as the pooling sees it (the receptive-field probe pads with 0 instead)."""
        if self.keras_padding == "same":
            return _pad_same(x, _pair(self.kernel_size), _pair(self.stride), value=value)
        return x

    def forward(self, x):
        return super().forward(self.pad_input(x))


class Add(nn.Module):
    def forward(self, *inputs):
        out = inputs[0]
        for x in inputs[1:]:
            out = out + x
        return out


class GlobalAveragePool(nn.Module):
    def forward(self, x):
        return x.mean((2, 3))


def _pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


class KerasGraph(nn.Module):
    """Runs the Keras layers in file order; `graph` lists (layer name, input layer names)."""

    def __init__(self, graph: list[tuple[str, list[str]]], input_name: str, output_name: str):
        super().__init__()
        self.graph = graph
        self.input_name = input_name
        self.output_name = output_name

    def forward(self, x):
        values = {self.input_name: x}
        for name, inputs in self.graph:
            values[name] = getattr(self, name)(*(values[i] for i in inputs))
        return values[self.output_name]


def load_keras_hdf5(path) -> KerasGraph:
    """The Keras model in HDF5 file `path` as a `KerasGraph` in eval mode (see module docstring)."""
    import h5py

    path = Path(path)
    try:
        with h5py.File(path, "r") as h5:
            if "model_config" not in h5.attrs or "model_weights" not in h5:
                raise located(path, "not a Keras model file (no model_config / model_weights)")
            config = json.loads(h5.attrs["model_config"])
            weights = _read_weights(h5["model_weights"])
    except OSError as error:
        raise located(path, f"cannot read as HDF5 ({error})") from None
    return _build(path, config, weights)


def _read_weights(group) -> dict[str, dict[str, np.ndarray]]:
    """layer name -> {'kernel': ..., 'bias': ..., 'gamma': ...} (the names without ':0')."""
    out = {}
    for layer in group:
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in group[layer].attrs.get("weight_names", [])]
        out[layer] = {name.split("/")[-1].split(":")[0]: np.asarray(group[layer][name]) for name in names}
    return out


def _inputs(layer) -> list[str]:
    nodes = layer.get("inbound_nodes") or []
    if len(nodes) > 1:
        raise ValueError("is called more than once (shared layers are not supported)")
    return [entry[0] for entry in nodes[0]] if nodes else []


def _build(path: Path, config: dict, weights: dict) -> KerasGraph:
    if config.get("class_name") not in ("Model", "Functional"):
        raise located(path, f"Keras model class {config.get('class_name')!r} is not supported (functional models only)")
    layers = config["config"]["layers"]
    (input_name, *_), = config["config"]["input_layers"]
    (output_name, *_), = config["config"]["output_layers"]
    modules, graph, shapes = {}, [], {}
    name = kind = "?"
    try:
        for layer in layers:
            kind, cfg, name = layer["class_name"], layer["config"], layer["config"]["name"]
            inputs = _inputs(layer)
            if kind == "InputLayer":
                shapes[name] = cfg["batch_input_shape"][-1]
                continue
            if name == output_name and kind == "Activation" and cfg["activation"] == "softmax":
                output_name = inputs[0]  # logits: the softmax is left out
                continue
            module, channels = _layer(kind, cfg, weights.get(name, {}), shapes[inputs[0]])
            shapes[name] = channels
            modules[name] = module
            graph.append((name, inputs))
    except (KeyError, ValueError, TypeError) as error:
        raise located(path, f"layer {name!r} ({kind}): {error}") from None
    model = KerasGraph(graph, input_name, output_name)
    for name, module in modules.items():
        model.add_module(name, module)
    return model.eval()


def _tensor(array) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def _layer(kind: str, cfg: dict, w: dict, channels: int) -> tuple[nn.Module, int]:
    """The PyTorch module of one Keras layer, with its weights, and its output channel count."""
    if kind not in SUPPORTED:
        raise ValueError("layer type is not supported")
    if cfg.get("activation", "linear") != "linear" and kind != "Activation":
        raise ValueError(f"fused activation {cfg['activation']!r} is not supported")
    if cfg.get("data_format", "channels_last") != "channels_last":
        raise ValueError("only channels_last models are supported")
    if any(d != 1 for d in _pair(cfg.get("dilation_rate", 1))):
        raise ValueError("dilated convolutions are not supported")
    padding = cfg.get("padding", "valid")
    if padding not in ("valid", "same"):
        raise ValueError(f"padding {padding!r} is not supported")
    if kind == "Conv2D":
        kernel = w["kernel"]  # (kh, kw, in, out)
        module = KerasConv2d(channels, cfg["filters"], tuple(cfg["kernel_size"]), stride=tuple(cfg["strides"]),
                             bias=cfg["use_bias"], keras_padding=padding)
        module.weight.data = _tensor(kernel.transpose(3, 2, 0, 1))
        if cfg["use_bias"]:
            module.bias.data = _tensor(w["bias"])
        return module, cfg["filters"]
    if kind in ("SeparableConv2D", "DepthwiseConv2D"):
        multiplier = cfg.get("depth_multiplier", 1)
        depthwise = w["depthwise_kernel"]  # (kh, kw, in, multiplier)
        kh, kw = depthwise.shape[:2]
        depth = depthwise.transpose(2, 3, 0, 1).reshape(channels * multiplier, 1, kh, kw)
        if kind == "DepthwiseConv2D":
            module = KerasConv2d(channels, channels * multiplier, (kh, kw), stride=tuple(cfg["strides"]),
                                 groups=channels, bias=cfg["use_bias"], keras_padding=padding)
            module.weight.data = _tensor(depth)
            if cfg["use_bias"]:
                module.bias.data = _tensor(w["bias"])
            return module, channels * multiplier
        module = SeparableConv2d(channels, cfg["filters"], (kh, kw), tuple(cfg["strides"]), padding,
                                 multiplier, cfg["use_bias"])
        module.depthwise.weight.data = _tensor(depth)
        module.pointwise.weight.data = _tensor(w["pointwise_kernel"].transpose(3, 2, 0, 1))
        if cfg["use_bias"]:
            module.pointwise.bias.data = _tensor(w["bias"])
        return module, cfg["filters"]
    if kind == "BatchNormalization":
        if cfg.get("axis", -1) not in (-1, 3, [3]):
            raise ValueError(f"axis {cfg['axis']} is not the channel axis")
        module = nn.BatchNorm2d(channels, eps=cfg["epsilon"])
        module.running_mean.data = _tensor(w["moving_mean"])
        module.running_var.data = _tensor(w["moving_variance"])
        module.weight.data = _tensor(w["gamma"]) if cfg.get("scale", True) else torch.ones(channels)
        module.bias.data = _tensor(w["beta"]) if cfg.get("center", True) else torch.zeros(channels)
        return module, channels
    if kind == "Activation":
        if cfg["activation"] == "relu":
            return nn.ReLU(), channels
        if cfg["activation"] == "linear":
            return nn.Identity(), channels
        raise ValueError(f"activation {cfg['activation']!r} is not supported here")
    if kind == "MaxPooling2D":
        return KerasMaxPool2d(tuple(cfg["pool_size"]), tuple(cfg["strides"] or cfg["pool_size"]), padding), channels
    if kind == "AveragePooling2D":
        if padding != "valid":
            raise ValueError("'same' average pooling is not supported")
        return nn.AvgPool2d(tuple(cfg["pool_size"]), tuple(cfg["strides"] or cfg["pool_size"])), channels
    if kind == "Add":
        return Add(), channels
    if kind == "GlobalAveragePooling2D":
        return GlobalAveragePool(), channels
    return nn.Dropout(cfg["rate"]), channels  # Dropout

