"""`interpret import-model`: bring your own PyTorch model as a run directory.

``--model FILE.py:FACTORY`` names a Python file and a function in it that returns a
`torch.nn.Module` taking (B, C, N, N) input and returning (B, classes) logits. The file is the
user's own code and is run (imported) as it is, knowingly. ``--model NAME`` (no ':') is a
packaged pretrained model (`interpret.pretrained.load_pretrained`).

The run directory is what every later command reads: ``config.json`` with ``arch: "imported"``,
``model`` = {"factory": absolute path, "factory_sha256", "name"} (or {"pretrained": NAME}),
``input`` (the `InputSpec`), ``classes`` (the model's output order), the data spec and a split
(every row 'test' unless a k-fold split is asked for), and ``model.pt`` (the state dict, via
`runs.save_checkpoint`). `runs.load_run` rebuilds the model by running the factory again
(refused if the file changed since the import) and loads ``model.pt`` with ``weights_only=True``.

The input geometry follows the paper's framing: faces are loaded at 99x99; a network input of N
pixels is the centre N x N of the face area-resized to round(99 N / 96) (no resize for N = 96).
"""

from __future__ import annotations

import importlib.util
import logging
import pickle
import sys
from pathlib import Path

import torch
from torch import nn

from interpret import __version__
from interpret.data.transforms import InputSpec
from interpret.errors import InterpretError, located
from interpret import pretrained
from interpret.io import sha256_file

log = logging.getLogger(__name__)

IMPORTED = "imported"
FACE_SIZE = 99


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


def load_factory(path, name: str):
    """The function `name` of the Python file at `path`, after running the file as a module."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise located(path, "model file not found")
    module_name = f"interpret_user_model_{sha256_file(path)[:16]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise located(path, "not a Python file that can be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling in the user's file look their module up
    try:
        spec.loader.exec_module(module)
    except SyntaxError as err:
        sys.modules.pop(module_name, None)
        raise located(path, f"cannot be run: SyntaxError: {err.msg}", err.lineno) from None
    except Exception as err:  # the user's code: any failure is reported against their file
        sys.modules.pop(module_name, None)
        raise located(path, f"running it raised {_first_line(err)}") from None
    factory = getattr(module, name, None)
    if not callable(factory):
        raise located(path, f"defines no factory {name!r} (a function returning a torch.nn.Module)")
    return factory


def build_from_factory(path, name: str) -> nn.Module:
    """Run the factory `name` of the file at `path`; its result must be an `nn.Module`."""
    factory = load_factory(path, name)
    try:
        model = factory()
    except Exception as err:  # the user's code
        raise located(path, f"{name}() raised {_first_line(err)}") from None
    if not isinstance(model, nn.Module):
        raise located(path, f"{name}() returned {type(model).__name__}, not a torch.nn.Module")
    return model


def build_imported(config: dict) -> nn.Module:
    """A fresh instance of a run's imported model: the factory run again, or the pretrained
    module with every submodule's parameters reset (the weights come from ``model.pt``)."""
    spec = config["model"]
    if "pretrained" in spec:
        model = pretrained.load_pretrained(spec["pretrained"])[0]
        for module in model.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    else:
        path = Path(spec["factory"])
        if path.is_file() and sha256_file(path) != spec["factory_sha256"]:
            raise located(path, "changed since `interpret import-model` (SHA-256 differs); import the model again")
        model = build_from_factory(path, spec["name"])
    return model


def load_weights(model: nn.Module, path) -> None:
    """Load a state dict (plain, or an interpret checkpoint's 'state_dict') with weights_only=True."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise located(path, "weights file not found")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise located(path, f"refusing to load: the file holds pickled code or objects ({_first_line(err)})") from None
    except (RuntimeError, EOFError, OSError) as err:
        raise located(path, f"not a readable torch file ({type(err).__name__})") from None
    state = blob.get("state_dict", blob) if isinstance(blob, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise located(path, "not a state dict (a mapping of parameter names to tensors)")
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise located(path, f"weights do not fit the model ({str(err).strip().splitlines()[0]})") from None


def check_model(model: nn.Module, spec: InputSpec, n_classes: int, where) -> None:
    """The model must take a (2, C, N, N) batch and return (2, n_classes) logits."""
    shape = (2, spec.channels, spec.size, spec.size)
    try:
        with torch.no_grad():
            out = model.eval()(torch.zeros(shape))
    except Exception as err:  # the user's code
        raise located(where, f"the model rejects a {shape} input ({_first_line(err)}); check --input-size "
                      "and --channels") from None
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != 2:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise located(where, f"the model returns {got} for a {shape} input, not (2, classes) logits")
    if out.shape[1] != n_classes:
        raise located(where, f"output width {out.shape[1]} differs from the {n_classes} classes given (--classes)")


def input_for(size: int, channels: int, normalize: str) -> InputSpec:
    """The paper's framing at `size` pixels (see the module docstring)."""
    if size < 8 or size > 4 * FACE_SIZE:
        raise InterpretError(f"--input-size must be 8..{4 * FACE_SIZE}, got {size}")
    try:
        return InputSpec(size=size, channels=channels, normalize=normalize,
                         resize=None if size == 96 else round(FACE_SIZE * size / 96))
    except ValueError as err:
        raise InterpretError(f"{err}") from None


def import_model(model: str, out, data: str = "synthetic", weights=None, input_size: int | None = None,
                 channels: int = 1, normalize: str = "standardize", classes: str | None = None,
                 split: str = "test", folds: int = 10, fold: int = 0, protocol: str = "auto",
                 subjects: int = 40, seed: int = 0) -> Path:
    """Write the run directory `out` for `model` (see the module docstring); returns `out`."""
    from interpret.data.protocols import is_sequence_data
    from interpret.runs import run_faceset, run_split, save_checkpoint, write_config

    out = Path(out)
    if (out / "config.json").exists():
        raise located(out, "already holds a run (config.json); choose another --out or remove it")
    if ":" in model:
        file, name = model.rsplit(":", 1)
        path = Path(file).expanduser().resolve()
        if input_size is None or not classes:
            raise InterpretError("--model FILE.py:FACTORY needs --input-size and --classes")
        class_list = [c.strip() for c in classes.split(",") if c.strip()]
        spec = input_for(input_size, channels, normalize)
        network = build_from_factory(path, name)
        where = path
        model_entry = {"factory": str(path), "factory_sha256": sha256_file(path), "name": name}
    else:
        network, spec, class_list = pretrained.load_pretrained(model)
        if input_size is not None and input_size != spec.size:
            raise InterpretError(f"--model {model} takes {spec.size}x{spec.size} input; drop --input-size {input_size}")
        class_list = [c.strip() for c in classes.split(",")] if classes else list(class_list)
        where = model
        model_entry = {"pretrained": model}
    if len(set(class_list)) != len(class_list) or not class_list:
        raise InterpretError(f"--classes must name distinct classes, got {class_list}")
    if weights is not None:
        load_weights(network, weights)
    check_model(network, spec, len(class_list), where)
    data_spec = ({"spec": "synthetic", "subjects": int(subjects), "seed": int(seed)} if str(data) == "synthetic"
                 else {"spec": str(Path(data).expanduser().resolve())})
    config = {
        "arch": IMPORTED,
        "model": model_entry,
        "classes": class_list,
        "data": data_spec,
        "protocol": protocol,
        "size": FACE_SIZE,
        "input": spec.to_dict(),
        "split": {"kind": split, "folds": int(folds), "fold": int(fold), "seed": int(seed)},
        "seed": int(seed),
        "package_version": __version__,
    }
    faceset = run_faceset(config)
    if protocol == "auto":
        config["protocol"] = "paper" if is_sequence_data(faceset) else "frames"
        faceset = run_faceset(config)
    run_split(faceset, config)  # an impossible split fails here, before anything is written
    unknown = [c for c in class_list if c not in faceset.emotions]
    if unknown:
        log.warning("classes %s are not emotions of the data (%s): their images count as unlabelled",
                    ", ".join(unknown), ", ".join(faceset.emotions))
    save_checkpoint(out / "model.pt", network, {"arch": IMPORTED, "model": model_entry})
    write_config(out, config)
    return out
