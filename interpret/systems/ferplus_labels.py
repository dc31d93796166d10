"""FER+ label modes as Microsoft's reference defines them (microsoft/FERPlus `src/ferplus.py`).

Each row of `fer2013new.csv` holds 10 votes over neutral, happiness, surprise, sadness, anger,
disgust, fear, contempt, unknown, not-a-face. `process_votes` is the reference `_process_data`:
votes of 1 are zeroed (outliers), then

- majority: the top class must hold more than half of the remaining votes;
- probability / crossentropy: the top classes, most-voted first (ties together), are taken until
  they cover 75% of the votes or 3 classes; an unknown / not-a-face among the top ends the scan
  (and is not kept if an emotion came before it); the row is dropped if the kept classes cover
  no more than half the votes or more than 3 were kept;
- multi_target: every class with at least 30% of the votes; dropped if they cover no more than half.

The result, normalised, is dropped when its argmax is unknown or not-a-face; otherwise its 8
emotion entries are renormalised (`emotion_distribution`). `training_target` then gives the
reference's per-mode target: majority / crossentropy the distribution, probability a one-hot
drawn from it (anew each time), multi_target (1 - 0.001) [t > 0] + 0.001. Validation and test
always use majority. Losses: cross-entropy against the target, and for multi_target
-log max_k(t_k p_k).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from interpret.errors import InterpretError, located

MODES = ("majority", "probability", "crossentropy", "multi_target")
HEADER = ["Usage", "Image name", "neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear",
          "contempt", "unknown", "NF"]
EMOTIONS = ("neutral", "happy", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
N_EMOTIONS = len(EMOTIONS)
MULTI_TARGET_EPSILON = 0.001


def process_votes(votes, mode: str) -> np.ndarray:
    """The reference `_process_data`: a normalised (10,) vector; the 'unknown' one-hot when dropped."""
    if mode not in MODES:
        raise InterpretError(f"FER+ label mode must be one of {', '.join(MODES)}, got {mode!r}")
    raw = [float(v) if float(v) > 1.0 else 0.0 for v in votes]
    size = len(raw)
    unknown = [0.0] * size
    unknown[-2] = 1.0
    total = sum(raw)
    emotion = [0.0] * size
    if mode == "majority":
        top = max(raw)
        if top > 0.5 * total:
            emotion[int(np.argmax(raw))] = top
        else:
            emotion = unknown
    elif mode in ("probability", "crossentropy"):
        covered, count, valid = 0.0, 0, True
        while covered < 0.75 * total and count < 3 and valid:
            top = max(raw)
            for i in range(size):
                if raw[i] == top:
                    emotion[i] = top
                    raw[i] = 0.0
                    covered += emotion[i]
                    count += 1
                    if i >= 8:  # unknown or not-a-face among the top votes
                        valid = False
                        if sum(emotion) > top:  # an emotion came before it: do not keep it
                            emotion[i] = 0.0
                            count -= 1
                        break
        if sum(emotion) <= 0.5 * total or count > 3:
            emotion = unknown
    else:
        for i in range(size):
            if raw[i] >= 0.3 * total:
                emotion[i] = raw[i]
        if sum(emotion) <= 0.5 * total:
            emotion = unknown
    emotion = np.asarray(emotion, dtype=float)
    return emotion / emotion.sum()


def emotion_distribution(votes, mode: str) -> np.ndarray | None:
    """The (8,) emotion distribution the reference trains on, or None when the row is dropped."""
    processed = process_votes(votes, mode)
    if int(np.argmax(processed)) >= N_EMOTIONS:
        return None
    kept = processed[:N_EMOTIONS]
    return kept / kept.sum()


def training_target(distribution: torch.Tensor, mode: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, 8) per-mode targets from (B, 8) distributions (see the module docstring)."""
    if mode in ("majority", "crossentropy"):
        return distribution
    if mode == "probability":
        pick = torch.multinomial(distribution, 1, generator=generator)[:, 0]
        return F.one_hot(pick, distribution.shape[1]).to(distribution.dtype)
    if mode == "multi_target":
        return (1 - MULTI_TARGET_EPSILON) * (distribution > 0).to(distribution.dtype) + MULTI_TARGET_EPSILON
    raise InterpretError(f"FER+ label mode must be one of {', '.join(MODES)}, got {mode!r}")


def loss(logits: torch.Tensor, target: torch.Tensor, mode: str) -> torch.Tensor:
    """The reference cost: cross-entropy -sum t log p, or for multi_target -log max_k t_k p_k."""
    if mode == "multi_target":
        return -(target * F.softmax(logits, 1)).amax(1).clamp_min(1e-12).log().mean()
    return -(target * F.log_softmax(logits, 1)).sum(1).mean()


def read_votes(path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(usage (N,), image names (N,), votes (N, 10) int) of every row of fer2013new.csv, in order."""
    path = Path(path)
    if not path.is_file():
        raise located(path, "no such file")
    usage, names, votes = [], [], []
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        try:
            header = [c.strip() for c in next(reader, [])]
            if header != HEADER:
                raise located(path, f"header {','.join(header)!r} is not {','.join(HEADER)!r}", 1)
            for row in reader:
                line = reader.line_num
                if len(row) != len(HEADER):
                    raise located(path, f"expected {len(HEADER)} fields, found {len(row)}", line)
                try:
                    counts = [int(v) for v in row[2:]]
                except ValueError:
                    raise located(path, "votes must be integers", line) from None
                if min(counts) < 0:
                    raise located(path, "negative vote count", line)
                usage.append(row[0].strip())
                names.append(row[1].strip())
                votes.append(counts)
        except (UnicodeDecodeError, csv.Error) as err:
            raise located(path, f"not a readable CSV text file ({err})", reader.line_num or 1) from None
    if not votes:
        raise located(path, "no data rows")
    return np.array(usage), np.array(names), np.array(votes, dtype=np.int64)


def label_counts(path, mode: str = "majority") -> dict[str, dict[str, int]]:
    """Per Usage: rows kept per top emotion, rows dropped by the mode, rows without an image name
    (dropped first, as the reference scripts do)."""
    usage, names, votes = read_votes(path)
    out: dict[str, dict[str, int]] = {}
    for use, name, row in zip(usage, names, votes):
        counts = out.setdefault(str(use), {**{e: 0 for e in EMOTIONS}, "dropped": 0, "empty_name": 0})
        if not name:
            counts["empty_name"] += 1
            continue
        distribution = emotion_distribution(row, mode)
        if distribution is None:
            counts["dropped"] += 1
        else:
            counts[EMOTIONS[int(np.argmax(distribution))]] += 1
    return out
