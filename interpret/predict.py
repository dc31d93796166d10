"""Per-face predictions of a run on frames: Haar detection, the run's crop, class probabilities.

What predict reads from other modules goes through the small adapters at the top of this file
(`load_predict_run`, `is_valence_run`, `valence_of`, `sequence_length`, `read_au_maps`), so a
change of run layout is one edit here.

Face crop: OpenCV's Haar box (x, y, w, h) -> the square of side max(w, h) on the box centre
(shifted to lie inside the frame, edge-replicated if larger than it) -> grey -> resized (area) to
the run's face size (`config["size"]`) -> `transforms.evaluate(faces, run spec)`, exactly the
evaluation input of the run's data. Detectors: 'alt' = `haarcascade_frontalface_alt` with OpenCV's
defaults (scale 1.1, 3 neighbours; seed 000), 'default' = `haarcascade_frontalface_default` with
scale 1.3, 5 neighbours (seed 001).
"""

from __future__ import annotations

import collections
import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import h5py
import numpy as np
import torch

from interpret.data.transforms import InputSpec, evaluate
from interpret.errors import InterpretError, located
from interpret.io import sha256_file
from interpret.layers import layer_shorthands, resolve_layer, retain
from interpret.runs import load_checkpoint, read_config, restored_model, run_input


DETECTORS = {
    "alt": ("haarcascade_frontalface_alt.xml", 1.1, 3),
    "default": ("haarcascade_frontalface_default.xml", 1.3, 5),
}
FACE_MODES = ("largest", "all")
#: Default smallest face: a tenth of the frame's shorter side (48 px at 640x480).
MIN_FACE = 0.1
NO_FACE = "no face"
WINDOW_FILLING = "window filling"


# ---- adapters: what predict reads from runs, other systems and au-map results -------------------

@dataclass
class AUMap:
    """The network map au-map found best for one AU, and that map's top-n level on the run's data."""

    au: str
    layer: str
    map: int
    level: float
    n: int

    @property
    def column(self) -> str:
        return f"{self.au}_map"


@dataclass
class PredictRun:
    path: Path
    config: dict
    model: torch.nn.Module
    classes: list[str]
    spec: InputSpec
    face_size: int
    valence: bool
    window: int | None
    au_maps: list[AUMap] = field(default_factory=list)


def is_valence_run(config: dict) -> bool:
    """A run whose classes are ordered valence levels (seed 000: 9 SAM levels)."""
    return config.get("label_mode") == "valence" or config.get("task") == "valence"


def valence_of(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """E = sum_i i p_i over levels i = 1..K and V = 2 (E - 1) / (K - 1) - 1 in [-1, 1] (K = 9: (E - 5) / 4)."""
    levels = np.arange(1, probs.shape[1] + 1, dtype=np.float64)
    expected = probs @ levels
    return expected, 2 * (expected - 1) / (len(levels) - 1) - 1


def sequence_length(config: dict) -> int | None:
    """Faces per window for a sequence model (config ``sequence.length``), None for a per-image model."""
    sequence = config.get("sequence")
    return int(sequence["length"]) if isinstance(sequence, dict) and sequence.get("length") else None


def _cache_file(run_path: Path, layer: int | str, layer_name: str) -> Path:
    """The activation cache of a layer: named by number today, by module name after the rename."""
    for name in (f"conv{layer}.h5", f"{layer_name}.h5"):
        if (run_path / "activations" / name).is_file():
            return run_path / "activations" / name
    return run_path / "activations" / f"{layer_name}.h5"


def read_au_maps(run_path: Path, model: torch.nn.Module) -> list[AUMap]:
    """Each `RUN/aumap/AU*.json`'s best map, with the mean of that map's top-n per-image maxima
    over the run's data (from the activation cache the au-map was computed on) as its level."""
    files = sorted((run_path / "aumap").glob("AU[0-9]*.json"))
    model_sha = sha256_file(run_path / "model.pt") if files else None
    out = []
    for path in files:
        try:
            res = json.loads(path.read_text())
            layer, best, n, au = res["layer"], int(res["best_map"]), int(res["n"]), res["au"]
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise located(path, f"not an au-map result ({type(err).__name__}: {err})") from None
        name = layer_shorthands(model).get(layer, layer) if isinstance(layer, int) else str(layer)
        name = resolve_layer(model, name)
        cache = _cache_file(run_path, layer, name)
        if not cache.is_file():
            raise located(cache, f"missing: {path.name} needs the activation cache it was computed from "
                                 f"(`interpret cache --run {run_path}`)")
        with h5py.File(cache, "r") as handle:
            if handle.attrs.get("model_sha256") not in (None, model_sha):
                raise located(cache, "computed from another model.pt; rebuild it and rerun au-map")
            if not 0 <= best < handle["max"].shape[1]:
                raise located(path, f"best_map {best} is not a map of {name} ({handle['max'].shape[1]} maps)")
            column = np.asarray(handle["max"][:, best], dtype=np.float64)
        level = float(np.sort(column)[::-1][:n].mean())
        if level <= 0:
            raise located(cache, f"map {best} of {name} never fires on the run's data; {path.name} has no level")
        out.append(AUMap(au=au, layer=name, map=best, level=level, n=n))
    return out


def load_predict_run(path) -> PredictRun:
    """The model, classes, input and extras of a run directory (its dataset is not loaded)."""
    path = Path(path)
    config = read_config(path)
    blob = load_checkpoint(path / "model.pt", mmap=True)
    try:
        model = restored_model(config, blob["state_dict"])
    except (RuntimeError, ValueError) as err:
        raise located(path / "model.pt", f"weights do not fit architecture {config.get('arch')!r} "
                                         f"({str(err).splitlines()[0]})") from None
    model.eval()
    spec = run_input(config)
    face_size = int(config.get("size") or spec.resize or spec.size)
    return PredictRun(path=path, config=config, model=model, classes=list(config["classes"]), spec=spec,
                      face_size=face_size, valence=is_valence_run(config), window=sequence_length(config),
                      au_maps=read_au_maps(path, model))


# ---- detection and crops ------------------------------------------------------------------------

class HaarDetector:
    """OpenCV's Haar frontal-face cascade with a seed system's parameters; boxes largest first.

    `min_face`: the smallest face searched, as a fraction (< 1) of the frame's shorter side or in
    pixels (>= 1); 0 or None searches down to the cascade's own window (OpenCV's default, slow).
    """

    def __init__(self, kind: str = "alt", min_face: float | None = MIN_FACE):
        if kind not in DETECTORS:
            raise InterpretError(f"--detector must be one of {', '.join(DETECTORS)}, got {kind!r}")
        if not hasattr(cv2, "CascadeClassifier") or not hasattr(cv2, "data"):
            raise InterpretError("this OpenCV build ships no Haar cascades (use opencv-python-headless<5)")
        file, self.scale, self.neighbours = DETECTORS[kind]
        self.kind = kind
        self.min_face = min_face
        self.cascade = cv2.CascadeClassifier(cv2.data.haarcascades + file)
        if self.cascade.empty():
            raise located(cv2.data.haarcascades + file, "the Haar cascade does not load")

    def __call__(self, grey: np.ndarray) -> list[tuple[int, int, int, int]]:
        side = self.min_face_px(grey.shape)
        found = self.cascade.detectMultiScale(grey, scaleFactor=self.scale, minNeighbors=self.neighbours,
                                              minSize=(side, side))
        boxes = [tuple(int(v) for v in box) for box in found]
        return sorted(boxes, key=lambda b: (-b[2] * b[3], b[1], b[0]))


    def min_face_px(self, shape) -> int:
        if not self.min_face:
            return 0
        return int(round(self.min_face * min(shape[:2]))) if self.min_face < 1 else int(self.min_face)


def square_crop(grey: np.ndarray, box, size: int) -> np.ndarray:
    """The square of side max(w, h) centred on box (x, y, w, h), moved inside the frame, resized."""
    x, y, w, h = box
    side = max(w, h)
    height, width = grey.shape
    if side > min(height, width):
        pad = side
        grey = cv2.copyMakeBorder(grey, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x, y, height, width = x + pad, y + pad, height + 2 * pad, width + 2 * pad
    left = min(max(0, x + w // 2 - side // 2), width - side)
    top = min(max(0, y + h // 2 - side // 2), height - side)
    return cv2.resize(grey[top:top + side, left:left + side], (size, size), interpolation=cv2.INTER_AREA)


def to_grey(image: np.ndarray) -> np.ndarray:
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


# ---- the predictor ------------------------------------------------------------------------------

@dataclass
class FacePrediction:
    box: tuple[int, int, int, int] | None
    status: str
    probs: np.ndarray | None = None
    au: np.ndarray | None = None


class Predictor:
    """Detect, crop, classify; for sequence models, a sliding window of the sampled faces.

    Sequence models (config ``sequence.length`` = T) get the last T sampled faces of the largest
    face as one (1, T, C, S, S) input; until T faces are seen a face row says 'window filling'.
    Frames without a face are skipped: the window keeps its faces and moves on with the next one.
    """

    def __init__(self, run: PredictRun, detector: str = "alt", faces: str = "largest",
                 min_face: float | None = MIN_FACE):
        if faces not in FACE_MODES:
            raise InterpretError(f"--faces must be largest or all, got {faces!r}")
        if run.window and faces == "all":
            raise InterpretError(f"{run.path}: a sequence model follows one face; use --faces largest")
        self.run = run
        self.detect = HaarDetector(detector, min_face)
        self.faces = faces
        self.window = collections.deque(maxlen=run.window) if run.window else None
        self._outputs = None

    def __enter__(self):
        names = sorted({m.layer for m in self.run.au_maps})
        self._retain = retain(self.run.model, names)
        self._outputs = self._retain.__enter__()
        return self

    def __exit__(self, *exc):
        self._retain.__exit__(*exc)

    def network_input(self, crops: np.ndarray) -> torch.Tensor:
        return evaluate(torch.from_numpy(crops), self.run.spec)

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
        """Softmax probabilities (B, K) and the AU read-out (B, M) of a network input batch."""
        logits = self.run.model(x)
        probs = torch.softmax(logits.float(), dim=1).numpy().astype(np.float64)
        if not self.run.au_maps:
            return probs, None
        if self._outputs is None:
            raise RuntimeError("the AU read-out needs the Predictor entered as a context manager")
        au = np.stack([self._outputs[m.layer][:, m.map].flatten(1).amax(1).float().numpy() / m.level
                       for m in self.run.au_maps], axis=1)
        return probs, au[-len(probs):]

    def locate(self, image: np.ndarray) -> tuple[list, np.ndarray | None]:
        """Face boxes (largest first; only the largest with faces='largest') and their crops."""
        grey = to_grey(image)
        boxes = self.detect(grey)
        if self.faces == "largest":
            boxes = boxes[:1]
        if not boxes:
            return [], None
        return boxes, np.stack([square_crop(grey, box, self.run.face_size) for box in boxes])

    def classify(self, boxes: list, crops: np.ndarray | None) -> list[FacePrediction]:
        """The network's predictions for `locate`'s output (a 'no face' entry when it found none)."""
        if not boxes:
            return [FacePrediction(None, NO_FACE)]
        x = self.network_input(crops)
        if self.window is not None:
            self.window.append(x[0])
            if len(self.window) < self.window.maxlen:
                return [FacePrediction(boxes[0], WINDOW_FILLING)]
            x = torch.stack(list(self.window))[None]
        probs, au = self.forward(x)
        return [FacePrediction(box, "face", probs[i], None if au is None else au[i]) for i, box in enumerate(boxes)]

    def __call__(self, image: np.ndarray) -> list[FacePrediction]:
        return self.classify(*self.locate(image))
