"""Seed 000's video protocol: RMSE between predicted valence V and continuous annotations.

Annotations: a CSV with header ``time_s,valence`` or ``time_s,valence,rater``, valence in [-1, 1];
the raters' values at one time_s are averaged. Predictions: `interpret predict`'s
``predictions.csv`` of a valence run (one video; its largest face, ``face`` 0, per frame).

Matching: each predicted frame takes the annotation with the nearest timestamp (a tie goes to the
earlier one); a frame whose nearest annotation is more than `max_gap` seconds away is unmatched.
With 1 Hz annotations and samples at whole seconds (seed 000: every 2 s) this is the annotation at
exactly that second. Frames without a face (or without a prediction yet) and unmatched frames are
left out of the RMSE and counted. RMSE per video; per subject, the mean of its videos' RMSE;
overall, mean and sample standard deviation (ddof 1) over subjects.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from interpret.errors import InterpretError, located

MAX_GAP = 1.0


def _number(path, line: int, text: str, what: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise located(path, f"{what} {text!r} is not a number", line) from None
    if not math.isfinite(value):
        raise located(path, f"{what} {text!r} is not finite", line)
    return value


def _rows(path) -> tuple[list[str], list[tuple[int, dict]]]:
    path = Path(path)
    if not path.is_file():
        raise located(path, "not found")
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            header = [h.strip() for h in (reader.fieldnames or [])]
            reader.fieldnames = header
            return header, [(reader.line_num, row) for row in reader]
    except (UnicodeDecodeError, csv.Error) as err:
        raise located(path, f"not a readable CSV ({type(err).__name__})") from None


def read_annotations(path) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique times and the raters' mean valence at each."""
    header, rows = _rows(path)
    if header[:2] != ["time_s", "valence"] or len(header) > 3 or (len(header) == 3 and header[2] != "rater"):
        raise located(path, f"header must be time_s,valence[,rater], got {','.join(header) or 'nothing'}", 1)
    sums: dict[float, list[float]] = {}
    for line, row in rows:
        time_s = _number(path, line, row["time_s"], "time_s")
        value = _number(path, line, row["valence"], "valence")
        if not -1.0 <= value <= 1.0:
            raise located(path, f"valence {value} is outside [-1, 1]", line)
        sums.setdefault(time_s, []).append(value)
    if not sums:
        raise located(path, "no annotation rows")
    times = np.array(sorted(sums))
    return times, np.array([np.mean(sums[t]) for t in times])


def read_predictions(path) -> tuple[str, np.ndarray, np.ndarray, int]:
    """(source, frame times, V per frame (nan: no face / no prediction), frames read)."""
    header, rows = _rows(path)
    for column in ("source", "frame", "time_s", "face", "status"):
        if column not in header:
            raise located(path, f"no {column!r} column: not an `interpret predict` predictions.csv", 1)
    if "V" not in header:
        raise located(path, "no 'V' column: these are not a valence run's predictions", 1)
    sources = {row["source"] for _, row in rows}
    if len(sources) > 1:
        raise located(path, f"holds {len(sources)} sources; evaluate one video per predictions file")
    frames: dict[int, tuple[float, float]] = {}
    for line, row in rows:
        if row["face"] not in ("", "0"):
            continue
        frame = int(_number(path, line, row["frame"], "frame"))
        value = _number(path, line, row["V"], "V") if row["V"] != "" else math.nan
        frames[frame] = (_number(path, line, row["time_s"], "time_s"), value)
    if not frames:
        raise located(path, "no prediction rows")
    order = sorted(frames)
    return (sources.pop(), np.array([frames[f][0] for f in order]), np.array([frames[f][1] for f in order]),
            len(order))


def nearest(times: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Index into sorted `grid` of the value nearest each of `times` (ties: the earlier)."""
    right = np.clip(np.searchsorted(grid, times, side="left"), 0, len(grid) - 1)
    left = np.clip(right - 1, 0, len(grid) - 1)
    return np.where(np.abs(times - grid[left]) <= np.abs(grid[right] - times), left, right)


def evaluate_video(predictions, annotations, max_gap: float = MAX_GAP) -> dict:
    """RMSE of one video's V against its annotations, with the frames left out counted."""
    source, times, values, frames = read_predictions(predictions)
    grid, truth = read_annotations(annotations)
    has_value = ~np.isnan(values)
    index = nearest(times, grid)
    matched = has_value & (np.abs(grid[index] - times) <= max_gap)
    if not matched.any():
        raise located(predictions, f"no predicted frame lies within {max_gap} s of an annotation in {annotations}")
    error = values[matched] - truth[index[matched]]
    return {"video": source, "predictions": str(predictions), "annotations": str(annotations),
            "frames": frames, "frames_used": int(matched.sum()), "frames_without_face": int((~has_value).sum()),
            "frames_unmatched": int((has_value & ~matched).sum()), "rmse": float(np.sqrt(np.mean(error ** 2)))}


def evaluate_videos(predictions, annotations, subjects=None, max_gap: float = MAX_GAP) -> dict:
    """Per video, per subject and overall (mean and sd over subjects) RMSE; pairs match by position.

    Without `subjects`, each video is its own subject.
    """
    predictions, annotations = list(predictions), list(annotations)
    if not predictions or len(predictions) != len(annotations):
        raise InterpretError(f"give one --annotations per --predictions (got {len(predictions)} and "
                             f"{len(annotations)})")
    subjects = list(subjects) if subjects else None
    if subjects is not None and len(subjects) != len(predictions):
        raise InterpretError(f"give one --subject per --predictions (got {len(subjects)} and {len(predictions)})")
    videos = []
    for i, (pred, ann) in enumerate(zip(predictions, annotations)):
        result = evaluate_video(pred, ann, max_gap)
        result["subject"] = subjects[i] if subjects else result["video"]
        videos.append(result)
    per_subject: dict[str, list[float]] = {}
    for video in videos:
        per_subject.setdefault(video["subject"], []).append(video["rmse"])
    subject_rmse = {s: float(np.mean(v)) for s, v in per_subject.items()}
    values = np.array(list(subject_rmse.values()))
    return {
        "videos": videos,
        "subjects": [{"subject": s, "videos": len(per_subject[s]), "rmse": r} for s, r in subject_rmse.items()],
        "rmse_mean": float(values.mean()),
        "rmse_sd": float(values.std(ddof=1)) if len(values) > 1 else None,
        "frames_without_face": sum(v["frames_without_face"] for v in videos),
        "frames_unmatched": sum(v["frames_unmatched"] for v in videos),
        "matching": f"nearest annotation timestamp, at most {max_gap} s away; raters averaged",
    }


def format_results(results: dict) -> str:
    lines = [f"{'video':<28} {'subject':<12} {'frames':>6} {'used':>5} {'no face':>7} {'unmatched':>9} {'RMSE':>8}"]
    for v in results["videos"]:
        lines.append(f"{v['video'][:28]:<28} {str(v['subject'])[:12]:<12} {v['frames']:>6} {v['frames_used']:>5} "
                     f"{v['frames_without_face']:>7} {v['frames_unmatched']:>9} {v['rmse']:>8.4f}")
    lines.append("")
    for s in results["subjects"]:
        lines.append(f"subject {s['subject']}: RMSE {s['rmse']:.4f} over {s['videos']} video(s)")
    sd = results["rmse_sd"]
    lines.append(f"RMSE over {len(results['subjects'])} subject(s): {results['rmse_mean']:.4f}"
                 + (f" ± {sd:.4f} (sd)" if sd is not None else " (one subject: no sd)"))
    lines.append(f"frames without a face: {results['frames_without_face']}; unmatched: {results['frames_unmatched']} "
                 f"({results['matching']})")
    return "\n".join(lines)
