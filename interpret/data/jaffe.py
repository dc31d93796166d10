"""JAFFE: `KA.AN1.39.tiff` = subject KA, expression AN (photo 1 of it), image number 39."""

from __future__ import annotations

import re
from pathlib import Path

from interpret.data.faceset import FaceSet, stills_faceset
from interpret.data.folders import crop_haar, read_grey
from interpret.errors import located
from interpret.progress import progress_bar

JAFFE_NAME = re.compile(r"([A-Z]{2})\.([A-Z]{2})(\d+)\.(\d+)\.tiff?", re.IGNORECASE)
JAFFE_CODES = {"NE": "neutral", "AN": "anger", "DI": "disgust", "FE": "fear", "HA": "happy",
               "SA": "sadness", "SU": "surprise"}
JAFFE_EMOTIONS = ("neutral", "anger", "disgust", "fear", "happy", "sadness", "surprise")


def read_jaffe(root, size: int = 99, progress: bool = False) -> FaceSet:
    """Read the JAFFE images under `root` (searched recursively), face cut by OpenCV's Haar detector.

    Skipped with a reason, never an error: files whose names do not parse as JAFFE names
    (README, `.DS_Store`, ...), names with an unknown expression code, and images in which no
    face is found. An unreadable image that is named like a JAFFE image is an error, and so is
    a tree in which no file is named like one.
    """
    root = Path(root)
    if not root.is_dir():
        raise located(root, "no such folder")
    skipped: list[tuple[str, str]] = []
    entries = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        match = JAFFE_NAME.fullmatch(path.name)
        if match is None:
            skipped.append((str(path), "name is not a JAFFE name (e.g. KA.AN1.39.tiff)"))
        elif match.group(2).upper() not in JAFFE_CODES:
            skipped.append((str(path), f"unknown JAFFE expression code {match.group(2)!r}"))
        else:
            entries.append((path, match.group(1).upper(), JAFFE_CODES[match.group(2).upper()]))
    if not entries:
        raise located(root, "no JAFFE images (names like KA.AN1.39.tiff)")
    images, subject, sequence, emotion, paths = ([] for _ in range(5))
    for path, who, name in progress_bar(entries, enabled=progress, desc="JAFFE", unit="img"):
        crop = crop_haar(read_grey(path), size)
        if crop is None:
            skipped.append((str(path), "no face found"))
            continue
        images.append(crop)
        subject.append(who)
        sequence.append(path.name.rsplit(".", 1)[0])
        emotion.append(JAFFE_EMOTIONS.index(name))
        paths.append(str(path))
    return stills_faceset(images, subject, sequence, emotion, paths, JAFFE_EMOTIONS, "jaffe", size, skipped)
