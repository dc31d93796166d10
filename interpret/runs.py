"""Run directories: checkpoints that load with `weights_only=True`, and `load_run`.

A run is rebuilt from `config.json` alone: the data spec, protocol, split and architecture
recorded there regenerate the exact dataset (in one fixed order) that training used; it is
stored once in `RUN/dataset.h5` (`interpret.datastore`) and read from there afterwards.
"""

from __future__ import annotations

import json
import pickle
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

from interpret.data import load_faceset
from interpret.data.faceset import FaceSet, UNLABELLED
from interpret.data.protocols import apply_protocol
from interpret.data.splits import assign_split
from interpret.data.transforms import InputSpec, PAPER_INPUT, evaluate
from interpret.datastore import read_dataset, write_dataset
from interpret.errors import InterpretError, located
from interpret.io import atomic_path, sha256_file, write_json
from interpret.models import build_model, input_spec


def save_checkpoint(path, model: torch.nn.Module, meta: dict) -> None:
    """Write ``{"state_dict", "meta"}`` atomically; `meta` must hold plain types only."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"state_dict": state, "meta": meta}, tmp)


def load_checkpoint(path, mmap: bool = False) -> dict:
    """Load a checkpoint with `weights_only=True`; pickled code or objects are refused. `mmap`
    maps the file instead of reading it: only the weights a command touches are read (privately:
    writes to them never reach the file)."""
    path = Path(path)
    if not path.is_file():
        raise located(path, "checkpoint not found")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise located(path, f"refusing to load: the checkpoint holds pickled code or objects ({first})") from None
    except (RuntimeError, EOFError, OSError) as err:
        raise located(path, f"not a readable torch checkpoint ({type(err).__name__})") from None
    if not isinstance(blob, dict) or "state_dict" not in blob:
        raise located(path, "not an interpret checkpoint (no 'state_dict')")
    return blob


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise InterpretError("--device cuda asked for, but torch sees no CUDA device")
    if device not in ("cpu", "cuda"):
        raise InterpretError(f"--device must be auto, cpu or cuda, got {device!r}")
    return torch.device(device)


def run_faceset(config: dict) -> FaceSet:
    """The protocol-applied FaceSet a run's config describes."""
    data = dict(config["data"])
    spec = data.pop("spec")
    faceset = apply_protocol(load_faceset(spec, size=config["size"], **data), config["protocol"])
    if config.get("labels"):  # a seed system's label space (valence levels, five classes)
        from interpret.systems.labels import apply_labels

        faceset = apply_labels(faceset, config["labels"])
    return faceset


def run_split(faceset: FaceSet, config: dict) -> np.ndarray:
    """'train' / 'val' / 'test' per row; kind 'test' (imported models): every row is 'test'."""
    split = config["split"]
    if split["kind"] == "test":
        return np.full(len(faceset.subject), "test", dtype="<U5")
    if split["kind"] == "usage":  # the source's own partition (FER: PublicTest = val, PrivateTest = test)
        from interpret.systems.labels import usage_split

        return usage_split(faceset)
    return assign_split(faceset.subject, kind=split["kind"], folds=split["folds"], fold=split["fold"],
                        seed=split["seed"])


def class_targets(faceset: FaceSet, classes) -> np.ndarray:
    """Class index per row (into `classes`), -1 where a row has no emotion label."""
    lookup = {faceset.emotions.index(name): i for i, name in enumerate(classes) if name in faceset.emotions}
    return np.array([lookup.get(int(e), -1) if e != UNLABELLED else -1 for e in faceset.emotion])


class RunDataset(torch.utils.data.Dataset):
    """A run's protocol-applied data, all subjects, one fixed order (the cache uses it too).

    Item i: dict with `image` (C, size, size) evaluation-transform tensor (the run's `InputSpec`), `emotion` (class index or
    -1), `aus` (A,) uint8 presence, `subject`, `sequence`, `frame`, `split`, `index`.
    """

    def __init__(self, faceset: FaceSet, split: np.ndarray, classes, spec: InputSpec = PAPER_INPUT):
        self.faceset = faceset
        self.spec = spec
        self.split = split
        self.classes = list(classes)
        self.targets = class_targets(faceset, classes)
        self.au_presence = faceset.au_present.astype(np.uint8)

    def __len__(self) -> int:
        return len(self.faceset)

    def images(self, start: int, stop: int) -> torch.Tensor:
        """Evaluation-transform batch of rows start..stop-1, (B, C, size, size) float32."""
        return evaluate(torch.from_numpy(np.asarray(self.faceset.images[start:stop])), self.spec)

    def rows(self, index) -> torch.Tensor:
        """Evaluation-transform batch of the rows `index` (any order, repeats allowed), read at once."""
        index = np.asarray(index, dtype=np.int64).reshape(-1)
        return evaluate(torch.from_numpy(np.asarray(self.faceset.images[index])), self.spec)

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i = i % len(self)
        fs = self.faceset
        return {
            "image": self.images(i, i + 1)[0],
            "emotion": int(self.targets[i]),
            "aus": torch.from_numpy(self.au_presence[i]),
            "subject": str(fs.subject[i]),
            "sequence": str(fs.sequence[i]),
            "frame": int(fs.frame[i]),
            "split": str(self.split[i]),
            "index": i,
        }


@dataclass
class Run:
    path: Path
    config: dict
    model: torch.nn.Module
    dataset: RunDataset
    device: torch.device

    @property
    def model_file(self) -> Path:
        return self.path / "model.pt"

    _model_digest: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def model_sha256(self) -> str:
        """SHA-256 of the checkpoint; read again only when the file changed (size, time, inode)."""
        stat = self.model_file.stat()
        key = (stat.st_size, stat.st_mtime_ns, stat.st_ino)
        if key not in self._model_digest:
            self._model_digest.clear()
            self._model_digest[key] = sha256_file(self.model_file)
        return self._model_digest[key]


def read_config(path) -> dict:
    path = Path(path)
    config_file = path / "config.json"
    if not path.is_dir():
        raise located(path, "run directory not found")
    if not config_file.is_file():
        raise located(config_file, "missing: not a run directory (train one with `interpret train`)")
    try:
        return json.loads(config_file.read_text())
    except json.JSONDecodeError as err:
        raise located(config_file, f"malformed JSON ({err.msg})", err.lineno) from None


def claim_run_dir(out, overwrite: bool = False) -> None:
    """Make `out` ready for a new training run.

    An absent or empty folder is used as is; a folder holding only an interrupted run's
    checkpoint is resumed by the trainer. A finished run is replaced only with `overwrite`
    (its derived files -- caches, deconvolutions, au-map, sanity, report -- would otherwise
    describe the old model), and a non-empty folder that is not a run is never deleted.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise located(out, "exists and is not a folder")
    entries = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if not entries or entries == ["checkpoint.pt"] or ("checkpoint.pt" in entries and "model.pt" not in entries):
        return
    if not (out / "config.json").is_file():
        raise located(out, f"not empty and not a run directory ({', '.join(entries[:5])}"
                           f"{', ...' if len(entries) > 5 else ''}); choose another --out")
    if not overwrite:
        raise located(out, f"already holds a finished run ({', '.join(entries[:6])}"
                           f"{', ...' if len(entries) > 6 else ''}); pass --overwrite to replace it and "
                           "everything derived from it, or choose another --out")
    for entry in out.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def write_config(path, config: dict) -> None:
    write_json(Path(path) / "config.json", config)


def run_input(config: dict) -> InputSpec:
    """The input spec a run's config records (older configs: their architecture's)."""
    return InputSpec.from_dict(config["input"]) if config.get("input") else input_spec(config["arch"])


def fresh_model(config: dict) -> torch.nn.Module:
    """A freshly initialised model of the run's config: its registered architecture, or for
    ``arch: "imported"`` the user's factory run again (`interpret.importing`)."""
    if config["arch"] == "imported":
        from interpret.importing import build_imported

        return build_imported(config)
    return build_model(config["arch"], len(config["classes"]))


class _SkipParameterInit(TorchFunctionMode):
    """While a model is built for weights it is about to receive: initialisers applied to its
    parameters (`torch.nn.init`'s, which the mode sees whole, and `Tensor.uniform_` /
    `normal_`) do nothing. Buffers are initialised as usual."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        target = args[0] if args else kwargs.get("tensor")
        if _initialiser(func) and isinstance(target, torch.nn.Parameter):
            return target
        return func(*args, **kwargs)


def _initialiser(func) -> bool:
    """An in-place initialiser: `torch.nn.init`'s public `*_` functions, `Tensor.uniform_`, `Tensor.normal_`."""
    if func in (torch.Tensor.uniform_, torch.Tensor.normal_):
        return True
    name = getattr(func, "__name__", "")
    return getattr(func, "__module__", None) == "torch.nn.init" and name.endswith("_") and not name.startswith("_")


def restored_model(config: dict, state: dict) -> torch.nn.Module:
    """The run's model holding the weights `state` (every parameter must be there), which it
    takes as they are (with a mapped checkpoint: read only where used); no random
    initialisation is spent on parameters about to be replaced."""
    with _SkipParameterInit():
        model = fresh_model(config)
    model.load_state_dict(state, assign=True)
    return model


def run_data(path, config: dict, refresh: bool = False) -> tuple[FaceSet, np.ndarray]:
    """A run's (FaceSet, split): read from `RUN/dataset.h5`, or (absent, or `refresh`) rebuilt
    from the source the config names and stored there."""
    stored = None if refresh else read_dataset(path, config)
    if stored is not None:
        return stored
    faceset = run_faceset(config)
    split = run_split(faceset, config)
    write_dataset(path, faceset, split, config["classes"], config)
    return faceset, split


def load_run(path, device: str = "cpu", refresh_data: bool = False) -> Run:
    """Rebuild a run's model (eval mode, on `device`) and read its dataset (`RUN/dataset.h5`,
    written on first use for older runs; `refresh_data` re-reads the source and rewrites it)."""
    path = Path(path)
    config = read_config(path)
    blob = load_checkpoint(path / "model.pt", mmap=True)
    try:
        model = restored_model(config, blob["state_dict"])
    except RuntimeError as err:
        raise located(path / "model.pt", f"weights do not fit architecture {config['arch']!r} "
                      f"({str(err).splitlines()[0]})") from None
    torch_device = resolve_device(device)
    model.to(torch_device).eval()
    faceset, split = run_data(path, config, refresh=refresh_data)
    dataset = RunDataset(faceset, split, config["classes"], run_input(config))
    return Run(path=path, config=config, model=model, dataset=dataset, device=torch_device)
