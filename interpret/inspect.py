"""`interpret inspect`: what a dataset holds, as a dict and as a table."""

from __future__ import annotations

from collections import Counter

import numpy as np

from interpret.data import PER_FRAME_AU
from interpret.data.faceset import UNLABELLED, FaceSet
from interpret.data.protocols import apply_protocol, is_sequence_data
from interpret.errors import InterpretError
from interpret.facs import AU_NAMES


def summarize(faceset: FaceSet) -> dict:
    """Counts of a raw FaceSet (plain types, JSON-ready).

    `emotions` counts frames under the paper's protocol: for sequence data the first frame of
    each labelled sequence is neutral and the rest carry the sequence's emotion; for stills every
    image counts as its own label. `emotion_sequences` counts labelled sequences per emotion,
    `aus` the sequences whose peak frame has each AU.
    """
    fs = faceset
    first = np.unique(fs.sequence, return_index=True)[1] if len(fs) else np.zeros(0, np.int64)
    labelled = first[fs.emotion[first] != UNLABELLED]
    try:
        resolved = apply_protocol(fs, "auto")
        protocol = "paper" if is_sequence_data(fs) else "frames"
    except InterpretError:  # sequence data without a neutral class: count the raw labels
        resolved, protocol = fs, "frames"
    frame_counts = np.bincount(resolved.emotion[resolved.emotion != UNLABELLED], minlength=len(fs.emotions))
    seq_counts = np.bincount(fs.emotion[labelled], minlength=len(fs.emotions))
    au_counts = fs.au_present[first].sum(axis=0)
    summary = {
        "source": fs.source,
        "size": int(fs.images.shape[1]) if fs.images.ndim == 3 else None,
        "landmarks": fs.landmarks is not None,
        "subjects": int(len(np.unique(fs.subject))),
        "sequences": int(len(first)),
        "labelled_sequences": int(len(labelled)),
        "frames": int(len(fs)),
        "protocol": protocol,
        "emotions": {name: int(frame_counts[i]) for i, name in enumerate(fs.emotions)},
        "emotion_sequences": {name: int(seq_counts[i]) for i, name in enumerate(fs.emotions)},
        "aus": {name: int(au_counts[i]) for i, name in enumerate(fs.au_names)},
        "partitions": None,
        "skipped": [{"path": str(path), "reason": str(reason)} for path, reason in fs.skipped],
    }
    if fs.label_options:
        summary["labels"] = dict(fs.label_options)
    if fs.source in PER_FRAME_AU:  # AUs per frame: count sequences with the AU in any frame, and frames
        _, seq_index = np.unique(fs.sequence, return_inverse=True)
        for i, name in enumerate(fs.au_names):
            summary["aus"][name] = int(len(np.unique(seq_index[fs.au_present[:, i]])))
        summary["au_frames"] = {name: int(fs.au_present[:, i].sum()) for i, name in enumerate(fs.au_names)}
        summary["au_unknown_frames"] = {name: int((~fs.au_known[:, i]).sum()) for i, name in enumerate(fs.au_names)}
    if fs.partition is not None:
        names, counts = np.unique(fs.partition, return_counts=True)
        summary["partitions"] = {str(n) or "(none)": int(c) for n, c in zip(names, counts)}
    return summary


def render_summary(summary: dict, examples: int = 3) -> str:
    """The human-readable table of a `summarize` result; skipped files grouped by reason."""
    s = summary
    lines = [
        f"source      {s['source']}",
        f"subjects    {s['subjects']}",
        f"sequences   {s['sequences']} ({s['labelled_sequences']} with an emotion)",
        f"frames      {s['frames']} ({s['size']}x{s['size']} crops, "
        f"{'with' if s['landmarks'] else 'no'} landmarks)",
    ]
    if s.get("partitions"):
        lines.append("partitions  " + ", ".join(f"{k} {v}" for k, v in s["partitions"].items()))
    rule = "first frame neutral, later frames the sequence's emotion" if s["protocol"] == "paper" \
        else "each image its own label"
    lines += ["", f"emotion      frames  sequences   ({rule})"]
    for name, count in s["emotions"].items():
        lines.append(f"{name:<12} {count:>6}  {s['emotion_sequences'].get(name, 0):>9}")
    if s["aus"] and "au_frames" in s:
        lines += ["", "AU     sequences    frames   unknown  (per-frame labels: " +
                  s.get("labels", {}).get("presence", "") + ")"]
        for name, count in s["aus"].items():
            lines.append(f"{name:<6} {count:>9} {s['au_frames'][name]:>9} {s['au_unknown_frames'][name]:>9}  "
                         f"{AU_NAMES.get(int(name[2:]), '')}")
    elif s["aus"]:
        lines += ["", "AU     sequences  (peak frame has it)"]
        for name, count in s["aus"].items():
            lines.append(f"{name:<6} {count:>9}  {AU_NAMES.get(int(name[2:]), '')}")
    if s.get("labels"):
        lines.append("labels      " + ", ".join(f"{k}={v}" for k, v in s["labels"].items()))
    if s["skipped"]:
        by_reason = Counter(item["reason"] for item in s["skipped"])
        lines += ["", f"skipped {len(s['skipped'])} input(s):"]
        for reason, count in by_reason.most_common():
            paths = [item["path"] for item in s["skipped"] if item["reason"] == reason]
            more = f" (+{count - examples} more)" if count > examples else ""
            lines.append(f"  {count:>6}  {reason}: {', '.join(paths[:examples])}{more}")
    return "\n".join(lines)
