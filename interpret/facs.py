"""FACS facts: AU names and regions, CK+ emotion codes, CK+ AU statistics per emotion.

Landmarks follow the 68-point iBUG order, 0-based (REFERENCE §5); "right" is the subject's
right, i.e. the image left.
"""

from __future__ import annotations

import re

import cv2
import numpy as np

from interpret.errors import InterpretError

#: CK+ emotion codes are the indices of this tuple.
CKPLUS_EMOTIONS = ("neutral", "anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise")

AU_NAMES = {
    1: "inner brow raiser", 2: "outer brow raiser", 4: "brow lowerer", 5: "upper lid raiser",
    6: "cheek raiser", 7: "lid tightener", 9: "nose wrinkler", 10: "upper lip raiser",
    11: "nasolabial deepener", 12: "lip corner puller", 13: "cheek puffer", 14: "dimpler",
    15: "lip corner depressor", 16: "lower lip depressor", 17: "chin raiser", 18: "lip puckerer",
    20: "lip stretcher", 21: "neck tightener", 22: "lip funneler", 23: "lip tightener",
    24: "lip pressor", 25: "lips part", 26: "jaw drop", 27: "mouth stretch", 28: "lip suck",
    29: "jaw thrust", 30: "jaw sideways", 31: "jaw clencher", 34: "cheek puff", 38: "nostril dilator",
    39: "nostril compressor", 43: "eyes closed", 44: "squint", 45: "blink", 54: "head down",
    61: "eyes turn left", 62: "eyes turn right", 63: "eyes up", 64: "eyes down",
}

#: AUs the synthetic generator plants (the issue's list, plus 14 which contempt needs).
SYNTHETIC_AUS = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 24, 25, 26, 27)

#: Landmarks spanning each AU's region (REFERENCE §5 table). Regions that extend beyond the
#: landmarks ("forehead above", "to nose-wing height") are grown by `_REGION_GROWTH`.
AU_REGION_LANDMARKS: dict[int, tuple[int, ...]] = {
    1: (19, 20, 21, 22, 23, 24),
    2: (17, 18, 19, 20, 23, 24, 25, 26),
    4: (17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27),
    5: (36, 37, 38, 39, 42, 43, 44, 45),
    6: (36, 40, 41, 31, 45, 46, 47, 35),
    7: tuple(range(36, 48)),
    9: tuple(range(27, 36)) + (21, 22),
    10: (31, 32, 33, 34, 35) + tuple(range(48, 55)) + tuple(range(60, 68)),
    11: (31, 35, 48, 54),
    12: (31, 48, 49, 59, 60, 2, 3, 35, 54, 53, 55, 64, 13, 14),
    14: (48, 49, 59, 60, 54, 53, 55, 64),
    15: (48, 49, 58, 59, 60, 67, 5, 6, 54, 53, 55, 56, 64, 65, 10, 11),
    16: (55, 56, 57, 58, 59),
    17: (48, 54) + tuple(range(55, 68)) + (6, 7, 8, 9, 10),
    20: tuple(range(48, 60)),
    23: tuple(range(48, 68)),
    24: tuple(range(48, 68)),
    25: (48, 54) + tuple(range(55, 68)),
    26: tuple(range(48, 60)) + tuple(range(3, 14)),
    27: tuple(range(48, 60)) + tuple(range(3, 14)),
}

# (up, down, sideways) growth of a region's landmark hull, in units of the inter-ocular distance.
_REGION_GROWTH = {
    1: (0.5, 0.3, 0.12), 2: (0.5, 0.3, 0.1), 4: (0.15, 0.1, 0.05), 5: (0.15, 0.06, 0.05),
    6: (0.05, 0.12, 0.2), 7: (0.06, 0.1, 0.05), 9: (0.05, 0.12, 0.1), 10: (0.03, 0.03, 0.1),
    11: (0.02, 0.02, 0.08), 12: (0.12, 0.08, 0.1), 14: (0.08, 0.08, 0.18), 15: (0.05, 0.1, 0.08),
    16: (0.0, 0.12, 0.05), 17: (0.03, 0.15, 0.08), 20: (0.1, 0.12, 0.22), 23: (0.18, 0.18, 0.08),
    24: (0.18, 0.18, 0.08), 25: (0.04, 0.06, 0.04), 26: (0.05, 0.3, 0.2), 27: (0.05, 0.3, 0.2),
}

# AUs whose region is two patches, one per side of the face.
_BILATERAL = (2, 5, 6, 7, 12, 14, 15)

#: Sequences (of each emotion) whose peak frame has the AU, CK+'s 327 labelled sequences
#: (REFERENCE §5). Keys: emotion name -> (number of sequences, {AU: count}).
CKPLUS_AU_COUNTS: dict[str, tuple[int, dict[int, int]]] = {
    "anger": (45, {4: 40, 17: 39, 23: 36, 24: 33, 7: 32, 6: 8, 14: 7, 5: 6}),
    "contempt": (18, {14: 17, 12: 5, 17: 5, 15: 4}),
    "disgust": (59, {9: 58, 17: 40, 4: 36, 7: 33, 6: 18, 25: 9, 10: 7, 24: 7}),
    "fear": (25, {20: 25, 25: 23, 1: 22, 4: 21, 5: 16, 2: 10, 7: 6, 14: 5}),
    "happy": (69, {12: 67, 25: 67, 6: 66, 7: 7}),
    "sadness": (28, {17: 27, 1: 26, 4: 23, 15: 23, 2: 7}),
    "surprise": (83, {25: 82, 1: 81, 2: 81, 27: 72, 5: 70, 26: 10}),
}


def au_name(code: int) -> str:
    """Ecosystem name of an AU code: 1 -> 'AU01'."""
    return f"AU{int(code):02d}"


def parse_au_list(text: str, available) -> list[int]:
    """Parse '1', 'AU01', '1,4,27' or 'all' into AU codes, checked against `available`."""
    available = [int(a) for a in available]
    if text.strip().lower() == "all":
        return available
    codes = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(?:au)?0*(\d+)\s*", part, flags=re.IGNORECASE)
        if not match:
            raise InterpretError(f"--au: cannot read {part!r}; use e.g. 1, AU01, 1,4,27 or all")
        code = int(match.group(1))
        if code not in available:
            names = ", ".join(au_name(a) for a in available)
            raise InterpretError(f"--au: {au_name(code)} is not labelled in this data (has {names})")
        codes.append(code)
    return codes


def region_mask(landmarks: np.ndarray, au: int, shape: tuple[int, int]) -> np.ndarray:
    """Boolean (H, W) mask of an AU's region: the grown convex hull of its landmarks.

    Left/right regions (brows, corners, cheeks) are split into one hull per side so the
    mask does not cover the space between them.
    """
    if au not in AU_REGION_LANDMARKS:
        raise InterpretError(f"no region is defined for {au_name(au)}")
    points = np.asarray(landmarks, dtype=np.float64)
    if points.shape != (68, 2):
        raise InterpretError(f"region_mask needs (68, 2) landmarks, got {points.shape}")
    iod = float(np.linalg.norm(points[36:42].mean(0) - points[42:48].mean(0))) or 1.0
    up, down, side = (g * iod for g in _REGION_GROWTH[au])
    idx = np.array(AU_REGION_LANDMARKS[au])
    mid_x = points[27:31, 0].mean()
    xs = points[idx, 0]
    if au in _BILATERAL:
        groups = [idx[xs < mid_x], idx[xs >= mid_x]]
    else:
        groups = [idx]
    mask = np.zeros(shape, dtype=np.uint8)
    for group in groups:
        if len(group) == 0:
            continue
        pts = points[group]
        grown = [pts]
        for dy, dx in ((-up, 0.0), (down, 0.0), (0.0, -side), (0.0, side)):
            grown.append(pts + np.array([dx, dy]))
        hull = cv2.convexHull(np.concatenate(grown).astype(np.float32))
        cv2.fillConvexPoly(mask, np.round(hull).astype(np.int32), 1)
    return mask.astype(bool)
