"""Frame protocols: which frames of a sequence are used, and with which label.

- ``paper`` (Zhu et al.): the first frame of every sequence is neutral (no AUs); every later
  frame carries the sequence's emotion and its peak-frame AUs.
- ``khorrami`` (Khorrami et al. 2015): the first frame (neutral) and the last three frames only.
- ``frames``: still images (FER, JAFFE, folders): every image keeps its own label.
- ``auto``: ``paper`` for sequence data, ``frames`` for stills.

Sequences without an emotion label stay in the set with emotion UNLABELLED, so AU analyses
can use them; training skips them.
"""

from __future__ import annotations

import numpy as np

from interpret.data.faceset import ABSENT, UNLABELLED, FaceSet
from interpret.errors import InterpretError

PROTOCOLS = ("auto", "paper", "khorrami", "frames")


def frame_rank(fs: FaceSet) -> tuple[np.ndarray, np.ndarray]:
    """Per row: position within its sequence (0 = first) and position from the end (0 = last)."""
    order = np.lexsort((fs.frame, fs.sequence))
    seq_sorted = fs.sequence[order]
    starts = np.r_[0, np.flatnonzero(seq_sorted[1:] != seq_sorted[:-1]) + 1]
    lengths = np.diff(np.r_[starts, len(order)])
    first = np.repeat(starts, lengths)
    pos_sorted = np.arange(len(order)) - first
    from_end_sorted = np.repeat(lengths, lengths) - 1 - pos_sorted
    pos, from_end = np.empty_like(pos_sorted), np.empty_like(pos_sorted)
    pos[order], from_end[order] = pos_sorted, from_end_sorted
    return pos, from_end


def is_sequence_data(fs: FaceSet) -> bool:
    """Sequences come from the format (CK+, synthetic, video datasets), never from repeated names."""
    return not fs.stills and len(fs) > 0 and len(np.unique(fs.sequence)) < len(fs)


def apply_protocol(fs: FaceSet, protocol: str = "auto") -> FaceSet:
    """Select frames and resolve labels; returns a new FaceSet in the original row order."""
    if protocol not in PROTOCOLS:
        raise InterpretError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    sequences = is_sequence_data(fs)
    if protocol == "auto":
        protocol = "paper" if sequences else "frames"
    if protocol == "frames":
        return fs
    if not sequences:
        raise InterpretError(f"protocol {protocol!r} needs image sequences; this {fs.source} data has "
                             "one image per sequence (use --protocol frames)")
    if "neutral" not in fs.emotions:
        raise InterpretError(f"protocol {protocol!r} labels first frames neutral, but {fs.source} has no "
                             "neutral class")
    pos, from_end = frame_rank(fs)
    keep = np.ones(len(fs), bool) if protocol == "paper" else (pos == 0) | (from_end < 3)
    out = fs.select(keep)
    first = pos[keep] == 0
    emotion = out.emotion.copy()
    emotion[first & (emotion != UNLABELLED)] = fs.emotions.index("neutral")
    intensity = out.au_intensity.copy()
    intensity[first] = ABSENT
    out.emotion, out.au_intensity = emotion, intensity
    return out
