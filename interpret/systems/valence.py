"""Valence in nine SAM levels (seed 000, SEEDS.md §1.1 and §1.6).

Levels i = 1..9 (1 most negative, 5 neutral, 9 most positive) are the classes `L1`..`L9`.
A label is the mean of the raters' SAM scores rounded half up (`floor(mean + 0.5)`, never
Python's banker's `round`). The prediction is V = (E - 5) / 4 with E = sum_i i p_i (the fixed
reading of `mapminmax(E, -1, 1)`); `data-minmax` rescales a series of E to span [-1, 1] exactly,
as MATLAB's mapminmax does with the data's own min and max.

Users bring labels as a CSV (`read_valence_csv`): `path,level` or `path,r1,...,rK`. The synthetic
default gets a ground truth from what was planted (`synthetic_valence`).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import torch

from interpret.data.faceset import ABSENT, FaceSet
from interpret.errors import InterpretError, located

N_LEVELS = 9
LEVEL_NAMES = tuple(f"L{i}" for i in range(1, N_LEVELS + 1))
VALENCE_MAPS = ("fixed", "data-minmax")
RATERS = 10

#: Valence of a fully expressed emotion on [-1, 1] (our choice, SAM-like; not from a paper).
EMOTION_VALENCE = {"neutral": 0.0, "happy": 0.6, "surprise": 0.1, "contempt": -0.3, "anger": -0.5,
                   "disgust": -0.5, "fear": -0.5, "sadness": -0.5}
#: Valence added per planted AU at intensity E (scaled by intensity / 5; 'present, not coded' = 3).
AU_VALENCE = {6: 0.2, 12: 0.3, 4: -0.2, 9: -0.2, 15: -0.3, 20: -0.1}
#: Spread (SAM points) of one simulated rater around the true level.
RATER_SD = 0.75


def round_half_up(x):
    """floor(x + 0.5): 4.5 -> 5, 5.5 -> 6 (Python's round gives 4 and 6)."""
    return np.floor(np.asarray(x, dtype=float) + 0.5).astype(np.int64)


def aggregate_ratings(ratings) -> tuple[np.ndarray, int]:
    """(levels, ties): each row's mean rating rounded half up, and how many means ended in .5."""
    mean = np.asarray(ratings, dtype=float).mean(1)
    ties = int(np.sum(np.isclose(mean - np.floor(mean), 0.5)))
    return round_half_up(mean), ties


def expected_level(probs: torch.Tensor) -> torch.Tensor:
    """E = sum_i i p_i over levels i = 1..9, for (..., 9) probabilities."""
    levels = torch.arange(1, probs.shape[-1] + 1, dtype=probs.dtype, device=probs.device)
    return (probs * levels).sum(-1)


def valence(probs: torch.Tensor, mapping: str = "fixed") -> torch.Tensor:
    """Predicted valence V in [-1, 1] from (N, 9) level probabilities.

    fixed: V = (E - 1) / 8 * 2 - 1 = (E - 5) / 4. data-minmax: MATLAB mapminmax over this series,
    V = 2 (E - min E) / (max E - min E) - 1; undefined (an error) when every E is equal.
    """
    e = expected_level(probs)
    if mapping == "fixed":
        return (e - 5.0) / 4.0
    if mapping == "data-minmax":
        low, high = e.min(), e.max()
        if not bool(high > low):
            raise InterpretError("--valence-map data-minmax needs predictions that differ (one image or a "
                                 "constant series has no range); use --valence-map fixed")
        return 2.0 * (e - low) / (high - low) - 1.0
    raise InterpretError(f"--valence-map must be one of {', '.join(VALENCE_MAPS)}, got {mapping!r}")


def level_valence(levels) -> np.ndarray:
    """The valence of levels 1..9: (i - 5) / 4."""
    return (np.asarray(levels, dtype=float) - 5.0) / 4.0


def read_valence_csv(path) -> dict[str, int]:
    """{image path as written: level 1..9} from `path,level` or `path,r1,...,rK` rows.

    An optional header row starts with `path`. Raw ratings (any K >= 2, every row the same K,
    each within 1..9) are averaged and rounded half up. Errors name the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise located(path, "no such file")
    out: dict[str, int] = {}
    width = None
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        try:
            for row in reader:
                line = reader.line_num
                if not row or all(not c.strip() for c in row):
                    continue
                if line == 1 and row[0].strip().lower() == "path":
                    continue
                if len(row) < 2:
                    raise located(path, "expected path,level or path,r1,...,rK", line)
                if width is None:
                    width = len(row)
                elif len(row) != width:
                    raise located(path, f"{len(row)} fields, earlier rows have {width}", line)
                name = row[0].strip()
                if not name:
                    raise located(path, "empty image path", line)
                if name in out:
                    raise located(path, f"{name!r} is listed twice", line)
                try:
                    values = [float(v) for v in row[1:]]
                except ValueError:
                    bad = next(v for v in row[1:] if not _is_number(v))
                    raise located(path, f"{bad.strip()!r} is not a number", line) from None
                if any(not 1 <= v <= N_LEVELS for v in values):
                    raise located(path, f"ratings and levels must lie in 1..{N_LEVELS}", line)
                if len(values) == 1:
                    if values[0] != int(values[0]):
                        raise located(path, f"level {row[1].strip()!r} is not a whole number 1..9", line)
                    out[name] = int(values[0])
                else:
                    out[name] = int(round_half_up(np.mean(values)))
        except (UnicodeDecodeError, csv.Error) as err:
            raise located(path, f"not a readable CSV text file ({err})", reader.line_num or 1) from None
    if not out:
        raise located(path, "no valence rows")
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return math.isfinite(float(text))


def expression_amount(faceset: FaceSet) -> np.ndarray:
    """Per row, how far its expression has developed: frame position / (frames - 1) within its
    sequence (0 at the first frame, 1 at the apex); 1 for still images."""
    from interpret.data.protocols import frame_rank

    pos, from_end = frame_rank(faceset)
    length = pos + from_end
    return np.where(length > 0, pos / np.maximum(length, 1), 1.0)


def true_valence(faceset: FaceSet) -> np.ndarray:
    """The planted valence on [-1, 1] per row:

        v = amount * clip(EMOTION_VALENCE[emotion] + sum_AU AU_VALENCE[AU] * intensity / 5, -1, 1)

    with `amount` from `expression_amount`, unlabelled rows contributing only their AUs.
    """
    base = np.array([EMOTION_VALENCE.get(faceset.emotions[e], 0.0) if e >= 0 else 0.0 for e in faceset.emotion])
    for column, au in enumerate(faceset.au_codes):
        if int(au) in AU_VALENCE:
            level = faceset.au_intensity[:, column].astype(float)
            strength = np.where(level == ABSENT, 0.0, np.where(level == 0, 3.0, level) / 5.0)
            base = base + AU_VALENCE[int(au)] * strength
    return expression_amount(faceset) * np.clip(base, -1.0, 1.0)


def simulate_ratings(v: np.ndarray, seed: int, raters: int = RATERS) -> np.ndarray:
    """(N, raters) integer SAM scores: round half up of 5 + 4 v + N(0, RATER_SD^2), clipped to 1..9."""
    rng = np.random.default_rng([int(seed), 9])
    scores = 5.0 + 4.0 * np.asarray(v, dtype=float)[:, None] + rng.normal(0.0, RATER_SD, (len(v), raters))
    return np.clip(round_half_up(scores), 1, N_LEVELS)


def synthetic_valence(faceset: FaceSet, seed: int, raters: int = RATERS) -> np.ndarray:
    """Levels 1..9 per row as seed 000 labels them: simulated raters' mean, rounded half up."""
    levels, _ = aggregate_ratings(simulate_ratings(true_valence(faceset), seed, raters))
    return levels


def as_levels(faceset: FaceSet, levels) -> FaceSet:
    """The same rows with the nine valence levels as their classes (level - 1 = class index)."""
    out = faceset.select(np.arange(len(faceset)))
    out.emotion = np.asarray(levels, dtype=np.int64) - 1
    out.emotions = LEVEL_NAMES
    return out
