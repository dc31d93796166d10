"""Frames with per-frame AU labels (DISFA, BP4D, OpenFace / py-feat CSVs): read, cut, assemble.

Shared by the per-frame AU readers: decoding a video's frames with OpenCV, cutting each frame
(OpenCV's Haar face box, the whole frame, landmarks the source ships, or landmarks detected by
`interpret.landmarks`), and building the FaceSet. Unlike CK+, every frame carries its own AU
vector (AUs come and go within a sequence); `au_intensity` uses `UNKNOWN` where the source
leaves an AU open.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from interpret.data.crop import crop_face, detect_face
from interpret.data.faceset import ABSENT, FaceSet
from interpret.errors import InterpretError, located

CROPS = ("haar", "none")
LANDMARK_CHOICES = ("none", "auto", "mediapipe", "dlib")


def landmark_backend(landmarks: str) -> str | None:
    """'auto' -> 'mediapipe' (the default backend), 'none' -> None; others checked."""
    if landmarks not in LANDMARK_CHOICES:
        raise InterpretError(f"--landmarks must be one of {', '.join(LANDMARK_CHOICES)}, got {landmarks!r}")
    return None if landmarks == "none" else "mediapipe" if landmarks == "auto" else landmarks


def video_frames(path, wanted=None):
    """Yield (index from 0, grey frame) of a video in decoding order; only indices in `wanted` if given."""
    path = Path(path)
    if not path.is_file():
        raise located(path, "no such video")
    if wanted is not None and not wanted:
        return
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise located(path, "OpenCV cannot open this video")
    last = max(wanted) if wanted else None
    try:
        index = 0
        while last is None or index <= last:
            if wanted is not None and index not in wanted:
                if not capture.grab():
                    break
            else:
                ok, frame = capture.read()
                if not ok:
                    break
                yield index, frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            index += 1
    finally:
        capture.release()


class FrameCutter:
    """Cuts full frames to size x size face crops: `cut(grey, label, points=None)` -> (crop, landmarks) or None.

    `points` (68, 2), when the source ships landmarks, always win (landmark box). Otherwise a
    landmark backend (`landmarks` != 'none') detects them, cached beside `data_path`; else
    `crop` 'haar' (largest Haar face) or 'none' (whole frame). A frame without a face gives
    None and `reason` says why; `finish()` saves the landmark cache.
    """

    def __init__(self, data_path, size: int, crop: str = "haar", landmarks: str = "none"):
        if crop not in CROPS:
            raise InterpretError(f"crop must be one of {', '.join(CROPS)}, got {crop!r}")
        self.size, self.crop = int(size), crop
        self.backend = landmark_backend(landmarks)
        self.reason = ""
        self._marker = None
        if self.backend is not None:
            from interpret.landmarks import Landmarker

            self._marker = Landmarker(data_path, self.backend)

    @property
    def options(self) -> dict:
        return {"crop": "landmarks" if self.backend else self.crop, "landmarks": self.backend or "none"}

    def cut(self, grey: np.ndarray, label: str, points: np.ndarray | None = None):
        if points is None and self._marker is not None:
            points = self._marker(grey, label)
            if points is None:
                self.reason = f"no face found by {self.backend}"
                return None
        if points is not None:
            from interpret.landmarks import landmark_crop

            cut = landmark_crop(grey, points, self.size)
            self.reason = "landmarks span no area"
            return cut
        if self.crop == "haar":
            box = detect_face(grey)
            if box is None:
                self.reason = "no face found (Haar)"
                return None
            top, left, bottom, right = box
            grey = grey[top:bottom, left:right]
        return crop_face(grey, None, self.size)[0], None

    def finish(self) -> None:
        if self._marker is not None:
            self._marker.save()


class FrameRows:
    """Accumulates cut frames with their per-frame AU rows, then `faceset()`."""

    def __init__(self, au_codes, size: int):
        self.au_codes = np.asarray(sorted(int(a) for a in au_codes), dtype=np.int64)
        self.size = size
        self.images, self.marks, self.subject, self.sequence, self.frame, self.aus, self.paths = \
            ([] for _ in range(7))

    def add(self, cut, subject: str, sequence: str, frame: int, aus: dict[int, int], path: str) -> None:
        """`aus`: AU -> au_intensity code; AUs not given are ABSENT."""
        row = np.full(len(self.au_codes), ABSENT, dtype=np.int8)
        for i, au in enumerate(self.au_codes):
            row[i] = aus.get(int(au), ABSENT)
        self.images.append(cut[0])
        self.marks.append(cut[1])
        self.subject.append(subject)
        self.sequence.append(sequence)
        self.frame.append(int(frame))
        self.aus.append(row)
        self.paths.append(path)

    def faceset(self, source: str, skipped, label_options: dict) -> FaceSet:
        n = len(self.images)
        has_marks = n > 0 and all(m is not None for m in self.marks)
        return FaceSet(
            images=np.stack(self.images) if n else np.zeros((0, self.size, self.size), np.uint8),
            landmarks=np.stack(self.marks).astype(np.float32) if has_marks else None,
            subject=np.array(self.subject, dtype=str),
            sequence=np.array(self.sequence, dtype=str),
            frame=np.array(self.frame, dtype=np.int64),
            emotion=np.full(n, -1, dtype=np.int64),
            au_intensity=np.stack(self.aus) if n else np.zeros((0, len(self.au_codes)), np.int8),
            paths=np.array(self.paths, dtype=str),
            emotions=(),
            au_codes=self.au_codes,
            source=source,
            skipped=list(skipped),
            label_options=dict(label_options),
        )


def csv_rows(reader, path, width: int):
    """(line number, row) of a csv.reader's data rows, blank rows skipped; a row of another
    width than the header's `width` is a located error."""
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != width:
            raise located(path, f"{len(row)} fields, the header has {width}", reader.line_num)
        yield reader.line_num, row


def check_threshold(value, low: float, high: float, what: str) -> float:
    value = float(value)
    if not low <= value <= high:
        raise InterpretError(f"{what} must be in {low:g}..{high:g}, got {value:g}")
    return value


def check_step(step) -> int:
    if int(step) < 1:
        raise InterpretError(f"step must be at least 1 (every frame), got {step}")
    return int(step)
