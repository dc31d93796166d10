"""68-point iBUG landmarks for faces that come without landmark files, cached beside the dataset.

Two backends, each an optional extra (nothing is downloaded at run time: the models ship in
the wheels):

- ``mediapipe`` (default, Apache-2.0; ``pip install 'interpret[landmarks]'``): MediaPipe 0.10.14
  face mesh (468 points, the model ships in the wheel) mapped to the 68 iBUG points by
  `MEDIAPIPE_TO_IBUG68`; the face box is MediaPipe's short-range face detector's.
- ``dlib`` (``pip install 'interpret[landmarks-dlib-noncommercial]'``): dlib's frontal face
  detector and its 68-point shape predictor from the `face-recognition-models` package, trained
  on iBUG 300-W, whose licence excludes commercial use; never the default.

The map: mesh vertex per iBUG point, 0-based, in iBUG order (jaw 0-16, right brow 17-21, left
brow 22-26, nose 27-35, right eye 36-41, left eye 42-47, outer lips 48-59, inner lips 60-67;
"right" = the subject's right = the image left). It is the map in common use for MediaPipe
(eyes 33/133/362/263, mouth corners 61/291, chin 152, ...) with the jaw ends (127, 356),
jaw points 2 and 14 (132, 361) and the outer brow ends (70, 300) moved to the symmetric mesh
vertices closest to dlib's points: over the 93 faces of `skimage.data.astronaut()` and
`lfw_subset()` (enlarged to 100 px) that both backends found, the mapped points lie a median
0.03-0.16 (mean 0.08) inter-ocular distances from dlib's: 0.06 inside the face (27-67), 0.13
on the jaw, whose iBUG definition (the visible contour) the mesh only approximates.

Images are looked at in grey (the same pixels the FaceSet holds), each keyed by the SHA-256 of
its grey pixels, so a cache entry follows the image's content, not its name. The cache of a
dataset at ``PATH`` is ``PATH.landmarks-BACKEND.h5`` beside it (`cache_file`). A face that a
backend does not find is recorded as skipped, never guessed.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from interpret.errors import InterpretError, located
from interpret.io import atomic_path

BACKENDS = ("mediapipe", "dlib")
#: The pip extra that installs each backend.
EXTRAS = {"mediapipe": "landmarks", "dlib": "landmarks-dlib-noncommercial"}
_MODULES = {"mediapipe": ("mediapipe",), "dlib": ("dlib", "face_recognition_models")}
FORMAT = "interpret.landmarks/1"

#: MediaPipe face-mesh vertex for each of the 68 iBUG points (see the module docstring).
MEDIAPIPE_TO_IBUG68 = (
    127, 234, 132, 58, 172, 136, 149, 148, 152, 377, 378, 365, 397, 288, 361, 454, 356,  # jaw 0-16
    70, 63, 105, 66, 107,  # right brow 17-21 (outer to inner)
    336, 296, 334, 293, 300,  # left brow 22-26 (inner to outer)
    168, 197, 5, 4,  # nose bridge 27-30
    75, 97, 2, 326, 305,  # lower nose 31-35
    33, 160, 158, 133, 153, 144,  # right eye 36-41
    362, 385, 387, 263, 373, 380,  # left eye 42-47
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,  # outer lips 48-59
    78, 82, 13, 312, 308, 317, 14, 87,  # inner lips 60-67
)


def require(backend: str) -> None:
    """InterpretError (one line, naming the extra) unless `backend` is installed."""
    if backend not in BACKENDS:
        raise InterpretError(f"unknown landmark backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    missing = [m for m in _MODULES[backend] if importlib.util.find_spec(m) is None]
    if missing:
        raise InterpretError(f"landmarks with {backend} need the optional extra: "
                             f"pip install 'interpret[{EXTRAS[backend]}]' ({', '.join(missing)} not installed)")


def available(backend: str) -> bool:
    try:
        require(backend)
    except InterpretError:
        return False
    return True


@dataclass
class Face:
    """One detection: `points` (68, 2) float32 (x, y) image pixels, `box` (top, left, bottom, right)."""

    points: np.ndarray
    box: tuple[float, float, float, float]


class LandmarkDetector:
    """`detector(grey)` -> `Face` or None; one face per image (the largest the backend finds)."""

    def __init__(self, backend: str = "mediapipe"):
        require(backend)
        self.backend = backend
        if backend == "mediapipe":
            import mediapipe as mp

            self.version = mp.__version__
            self._mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1)
            self._boxes = mp.solutions.face_detection.FaceDetection(model_selection=0, min_detection_confidence=0.5)
        else:
            import dlib

            spec = importlib.util.find_spec("face_recognition_models")  # located, not imported (pkg_resources)
            model = Path(spec.submodule_search_locations[0]) / "models" / "shape_predictor_68_face_landmarks.dat"
            if not model.is_file():
                raise located(model, "dlib's 68-point model is missing from face-recognition-models")
            self.version = dlib.__version__
            self._detect = dlib.get_frontal_face_detector()
            self._predict = dlib.shape_predictor(str(model))

    def __call__(self, grey: np.ndarray) -> Face | None:
        grey = np.ascontiguousarray(grey, dtype=np.uint8)
        return self._mediapipe(grey) if self.backend == "mediapipe" else self._dlib(grey)

    def _mediapipe(self, grey):
        h, w = grey.shape
        rgb = np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
        mesh = self._mesh.process(rgb).multi_face_landmarks
        found = self._boxes.process(rgb).detections
        if not mesh or not found:
            return None
        points = np.array([[p.x * w, p.y * h] for p in mesh[0].landmark], dtype=np.float32)[list(MEDIAPIPE_TO_IBUG68)]
        cx, cy = points.mean(axis=0)
        for det in found:
            b = det.location_data.relative_bounding_box
            box = (b.ymin * h, b.xmin * w, (b.ymin + b.height) * h, (b.xmin + b.width) * w)
            if box[0] <= cy <= box[2] and box[1] <= cx <= box[3]:
                return Face(points, tuple(float(v) for v in box))
        return None  # the detector's faces and the mesh's disagree: no guess

    def _dlib(self, grey):
        rects = self._detect(grey, 1)
        if len(rects) == 0:
            return None
        rect = max(rects, key=lambda r: r.width() * r.height())
        shape = self._predict(grey, rect)
        points = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)
        return Face(points, (float(rect.top()), float(rect.left()), float(rect.bottom()), float(rect.right())))


def image_key(grey: np.ndarray) -> str:
    """SHA-256 of an image's shape and grey pixels: the cache key."""
    grey = np.ascontiguousarray(grey, dtype=np.uint8)
    digest = hashlib.sha256(str(grey.shape).encode())
    digest.update(memoryview(grey).cast("B"))
    return digest.hexdigest()


def cache_file(data_path, backend: str) -> Path:
    """``PATH.landmarks-BACKEND.h5`` beside the dataset folder or file `data_path`."""
    path = Path(data_path).expanduser().resolve()
    return path.with_name(f"{path.name}.landmarks-{backend}.h5")


class LandmarkCache:
    """Landmarks by image key (`faces`), keys with no face found (`missing`), read or written whole."""

    def __init__(self, path: Path, backend: str):
        self.path, self.backend = Path(path), backend
        self.faces: dict[str, Face] = {}
        self.missing: dict[str, str] = {}  # key -> the image's label (path, frame)
        self.version = ""
        if self.path.is_file():
            self._read()

    def _read(self) -> None:
        try:
            with h5py.File(self.path, "r") as h5:
                if h5.attrs.get("format") != FORMAT or h5.attrs.get("backend") != self.backend:
                    raise located(self.path, f"not an {FORMAT} cache of backend {self.backend}; delete it")
                keys = h5["keys"].asstr()[:]
                points, boxes = h5["points"][:], h5["boxes"][:]
                self.faces = {k: Face(p, tuple(float(v) for v in b)) for k, p, b in zip(keys, points, boxes)}
                self.missing = dict(zip(h5["missing_keys"].asstr()[:], h5["missing_labels"].asstr()[:]))
                self.version = str(h5.attrs.get("backend_version", ""))
        except (OSError, KeyError) as err:
            raise located(self.path, f"unreadable landmark cache ({type(err).__name__}); delete it") from None

    def __contains__(self, key: str) -> bool:
        return key in self.faces or key in self.missing

    def save(self) -> None:
        string = h5py.string_dtype("utf-8")
        keys = sorted(self.faces)
        with atomic_path(self.path) as tmp:
            with h5py.File(tmp, "w") as h5:
                h5.attrs.update({"format": FORMAT, "backend": self.backend, "backend_version": self.version,
                                 "map": "MEDIAPIPE_TO_IBUG68" if self.backend == "mediapipe" else "dlib 68"})
                h5.create_dataset("keys", data=np.array(keys, dtype=object), dtype=string)
                h5.create_dataset("points", data=np.array([self.faces[k].points for k in keys],
                                                          dtype=np.float32).reshape(-1, 68, 2))
                h5.create_dataset("boxes", data=np.array([self.faces[k].box for k in keys],
                                                         dtype=np.float32).reshape(-1, 4))
                missing = sorted(self.missing)
                h5.create_dataset("missing_keys", data=np.array(missing, dtype=object), dtype=string)
                h5.create_dataset("missing_labels", data=np.array([self.missing[k] for k in missing], dtype=object),
                                  dtype=string)


class Landmarker:
    """Landmarks for the images of one dataset: cached ones read, new ones detected, `save()` once."""

    def __init__(self, data_path, backend: str = "mediapipe"):
        require(backend)
        self.cache = LandmarkCache(cache_file(data_path, backend), backend)
        self.backend = backend
        self._detector = None
        self.detected = 0

    def __call__(self, grey: np.ndarray, label: str) -> np.ndarray | None:
        """(68, 2) points of `grey` (image pixels), or None when no face is found."""
        key = image_key(grey)
        if key not in self.cache:
            if self._detector is None:
                self._detector = LandmarkDetector(self.backend)
                self.cache.version = self._detector.version
            face = self._detector(grey)
            self.detected += 1
            if face is None:
                self.cache.missing[key] = label
            else:
                self.cache.faces[key] = face
        face = self.cache.faces.get(key)
        return None if face is None else face.points

    def save(self) -> Path:
        if self.detected:
            self.cache.save()
        return self.cache.path


def landmark_crop(grey: np.ndarray, points: np.ndarray, size: int):
    """The paper's landmark-box crop of `grey` (`interpret.data.crop.crop_face`) or None if it spans no area."""
    from interpret.data.crop import crop_face, landmark_box

    top, left, bottom, right = landmark_box(points, grey.shape)
    if bottom - top < 2 or right - left < 2:
        return None
    return crop_face(grey, points, size)


def with_landmarks(fs, data_path, backend: str, size: int, progress: bool = False):
    """A stills FaceSet re-cut to the landmark box, with landmarks in crop coordinates.

    Each row's picture is its source file when `paths` names an image file (folders, JAFFE),
    else the FaceSet's own image (FER rows: the whole 48x48 picture, resized). Rows whose face
    the backend does not find are dropped and listed in `skipped`; the cache beside
    `data_path` is updated.
    """
    from dataclasses import replace

    from interpret.data.folders import IMAGE_SUFFIXES, read_grey
    from interpret.progress import progress_bar

    marker = Landmarker(data_path, backend)
    images, marks, keep, skipped = [], [], [], list(fs.skipped)
    for i in progress_bar(range(len(fs)), enabled=progress, desc=f"landmarks ({backend})", unit="img"):
        path = Path(str(fs.paths[i]))
        picture = read_grey(path) if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file() else fs.images[i]
        points = marker(picture, str(fs.paths[i]))
        cut = None if points is None else landmark_crop(picture, points, size)
        if cut is None:
            skipped.append((str(fs.paths[i]), f"no face found by {backend}"))
            continue
        images.append(cut[0])
        marks.append(cut[1])
        keep.append(i)
    marker.save()
    out = fs.select(np.array(keep, dtype=np.int64))
    n = len(keep)
    return replace(out, images=np.stack(images) if n else np.zeros((0, size, size), np.uint8),
                   landmarks=np.stack(marks).astype(np.float32) if n else np.zeros((0, 68, 2), np.float32),
                   skipped=skipped, label_options={**fs.label_options, "landmarks": backend})
