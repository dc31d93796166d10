"""Frame sources: a photo, a folder of photos, a video file or a camera, behind one abstraction.

Every source yields `Frame(source, index, time_s, image)` with `image` a BGR uint8 array. A
video file's frame k is at k / fps seconds (its container's rate); a live source (a camera, or
a file read as if it were one, which is how tests drive the webcam loop) stamps each frame with
the wall-clock seconds since the first one. `open_source('webcam:N')` opens camera N.

`Sampler(every)` picks the frames to predict by timestamp: sample k is the frame nearest
t_k = k * every (for a file, index round(t_k * fps); live, the first frame at or after t_k).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from interpret.errors import InterpretError, located

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm", ".ppm", ".webp"}
#: A video may end this many frames (or 1 %) before its declared count without being called truncated.
COUNT_SLACK = 2


@dataclass
class Frame:
    source: str
    index: int
    time_s: float
    image: np.ndarray


class FrameSource:
    """Iterate over `Frame`s; `kind` is image, folder, video or webcam; `fps` None for stills."""

    kind = ""
    name = ""
    fps: float | None = None
    live = False

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the source holds (a capture device)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_image(path: Path) -> np.ndarray:
    """A photo as BGR uint8; a file OpenCV cannot decode is an error naming it."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise located(path, "not an image OpenCV can decode")
    return image


class ImageSource(FrameSource):
    kind = "image"

    def __init__(self, path: Path):
        self.path = Path(path)
        self.name = self.path.name
        self._image = read_image(self.path)

    def __iter__(self):
        yield Frame(self.name, 0, 0.0, self._image)


class FolderSource(FrameSource):
    """Every photo in a folder (sorted by name); each is frame 0 of its own source."""

    kind = "folder"

    def __init__(self, path: Path):
        self.path = Path(path)
        self.name = self.path.name
        self.files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not self.files:
            raise located(self.path, f"no photos ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder")

    def __iter__(self):
        for path in self.files:
            yield Frame(path.name, 0, 0.0, read_image(path))


class CaptureSource(FrameSource):
    """An OpenCV capture: a video file, or camera N. `live=True` stamps frames by wall clock."""

    def __init__(self, target: str | int, live: bool = False):
        self.target = target
        self.live = live
        self.kind = "webcam" if isinstance(target, int) else "video"
        self.name = f"webcam:{target}" if isinstance(target, int) else Path(target).name
        where = self.name if isinstance(target, int) else target
        self._capture = cv2.VideoCapture(target if isinstance(target, int) else str(target))
        if not self._capture.isOpened():
            self._capture.release()
            problem = "the camera does not open" if isinstance(target, int) else "not a video OpenCV can open"
            raise located(where, problem)
        self._where = where
        fps = self._capture.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and math.isfinite(fps) and fps > 0 else None
        count = self._capture.get(cv2.CAP_PROP_FRAME_COUNT)
        self.frame_count = int(count) if not isinstance(target, int) and count and count > 0 else None
        if self.fps is None and not live:
            raise located(where, "the video declares no frame rate; timestamps cannot be computed")

    def __iter__(self):
        index, start = 0, None
        while True:
            ok, image = self._capture.read()
            if not ok:
                break
            now = time.monotonic()
            start = now if start is None else start
            stamp = now - start if self.live else index / self.fps
            yield Frame(self.name, index, stamp, image)
            index += 1
        if index == 0:
            raise located(self._where, "no frame could be decoded")
        if self.frame_count is not None and self.frame_count - index > max(COUNT_SLACK, self.frame_count // 100):
            raise located(self._where, f"truncated or unreadable: decoded {index} of the {self.frame_count} "
                                       "frames it declares")

    def close(self) -> None:
        self._capture.release()


def open_source(text: str, live: bool | None = None) -> FrameSource:
    """'webcam' / 'webcam:N' (camera N, live), a photo, a folder of photos, or a video file.

    `live` forces wall-clock timestamps on a capture (True) or file timestamps (False).
    """
    if text == "webcam" or text.startswith("webcam:"):
        number = text.partition(":")[2] or "0"
        if not number.isdigit():
            raise InterpretError(f"--input {text}: expected webcam or webcam:N with N a camera number")
        return CaptureSource(int(number), live=True if live is None else live)
    path = Path(text)
    if not path.exists():
        raise located(path, "not found")
    if path.is_dir():
        return FolderSource(path)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageSource(path)
    return CaptureSource(str(path), live=bool(live))


class Sampler:
    """Decides which frames are predicted: every frame (`every` None or 0), else one per `every` s."""

    def __init__(self, every: float | None, fps: float | None, live: bool):
        if every is not None and every < 0:
            raise InterpretError(f"--every must be >= 0 seconds, got {every}")
        self.every = every or None
        self.fps = None if live else fps
        self.k = 0

    def __call__(self, frame: Frame) -> bool:
        if self.every is None:
            return True
        if self.fps is not None:
            hit = frame.index == round(self.k * self.every * self.fps)
            if hit:
                while round(self.k * self.every * self.fps) <= frame.index:
                    self.k += 1
            return hit
        if frame.time_s + 1e-9 >= self.k * self.every:
            self.k = math.floor(frame.time_s / self.every + 1e-9) + 1
            return True
        return False
