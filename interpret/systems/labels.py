"""Label spaces a run can train on besides the data's own emotions (config key `labels`).

- absent / {"kind": "emotion"}: the data's emotion classes (every core run).
- {"kind": "valence", "seed": S, "raters": K}: nine SAM levels L1..L9. Synthetic data: simulated
  raters around the planted valence (`valence.synthetic_valence`). Other data:
  {"kind": "valence", "csv": PATH} reads a user's valence CSV and matches its paths to the images.
- {"kind": "five"}: seed 003's five classes (anger, sadness, happy, fear, calm = neutral).
- {"kind": "ferplus", "mode": M}: FER+ data (fer2013.csv + fer2013new.csv) trained in one of
  Microsoft's label modes (`ferplus_labels`); validation and test keep the reader's majority labels.
  Deviation from the reference: the rows are those the FER+ reader keeps (its majority rule), so the
  soft modes re-weight the majority rows' targets but do not add the rows only they would keep.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from interpret.data.faceset import UNLABELLED, FaceSet
from interpret.errors import InterpretError, located
from interpret.systems import ferplus_labels as fp
from interpret.systems import valence as val
from interpret.systems.wang2022 import five_classes

KINDS = ("emotion", "valence", "five", "ferplus")


def apply_labels(faceset: FaceSet, labels: dict | None) -> FaceSet:
    """The protocol-applied `faceset` relabelled as `labels` says (same rows, same order)."""
    kind = (labels or {}).get("kind", "emotion")
    if kind == "emotion":
        return faceset
    if kind == "five":
        return five_classes(faceset)
    if kind == "ferplus":
        if faceset.source != "ferplus":
            raise InterpretError(f"--labels ferplus-{labels.get('mode')} needs FER+ data (a folder with fer2013.csv "
                                 f"and fer2013new.csv); this is {faceset.source} data")
        return faceset
    if kind == "valence":
        if labels.get("csv"):
            return val.as_levels(faceset, csv_levels(faceset, labels["csv"]))
        if faceset.source != "synthetic":
            raise InterpretError(f"valence labels for {faceset.source} data need a valence CSV "
                                 "(path,level or path,r1,...,rK): pass --valence-csv")
        return val.as_levels(faceset, val.synthetic_valence(faceset, labels.get("seed", 0),
                                                            labels.get("raters", val.RATERS)))
    raise InterpretError(f"unknown label kind {kind!r}; choose one of {', '.join(KINDS)}")


def csv_levels(faceset: FaceSet, csv_path) -> np.ndarray:
    """Level per row from a valence CSV whose paths are relative to the CSV's folder (or absolute);
    rows the CSV does not list are unlabelled (level 0 -> class -1)."""
    csv_path = Path(csv_path)
    table = val.read_valence_csv(csv_path)
    by_file = {str((csv_path.parent / name).resolve()): level for name, level in table.items()}
    levels = np.array([by_file.get(str(Path(p).resolve()) if p else "", UNLABELLED + 1) for p in faceset.paths])
    if not np.any(levels > 0):
        raise located(csv_path, f"none of its {len(table)} paths matches an image of the data")
    return levels


#: The source's partition names -> run split (FER2013 Usage; a folder tree's train/val/test).
USAGE_SPLIT = {"training": "train", "train": "train", "publictest": "val", "val": "val", "validation": "val",
               "privatetest": "test", "test": "test"}


def usage_split(faceset: FaceSet) -> np.ndarray:
    """'train' / 'val' / 'test' per row from the data's own partition (FER2013: Training,
    PublicTest = validation, PrivateTest = test, as seed 001 uses them)."""
    if faceset.partition is None:
        raise InterpretError(f"--split usage needs data with its own partition (FER2013's Usage column); "
                             f"this {faceset.source} data has none")
    parts = [USAGE_SPLIT.get(str(p).strip().lower()) for p in faceset.partition]
    unknown = sorted({str(p) for p, s in zip(faceset.partition, parts) if s is None})
    if unknown:
        raise InterpretError(f"--split usage: partition names {', '.join(unknown)} are not train/val/test "
                             f"(known: {', '.join(USAGE_SPLIT)})")
    return np.array(parts, dtype="<U5")


def ferplus_training(faceset: FaceSet, train_rows: np.ndarray, config: dict, penalty=None):
    """(rows kept, (n, classes) float32 targets, loss_fn) for training in FER+ mode `config["labels"]["mode"]`.

    Each row's votes (fer2013new.csv beside the fer2013.csv its path names, same line) give the
    mode's emotion distribution over the run's classes (renormalised; rows with no mass left, or
    dropped by the mode, are not trained on). The loss draws the mode's target each step
    (`ferplus_labels.training_target`; probability mode samples with torch's seeded generator)
    and adds `penalty(model)`, the architecture's, if any."""
    mode = config["labels"]["mode"]
    columns = [fp.EMOTIONS.index(c) for c in config["classes"]]
    votes_by_file: dict[Path, np.ndarray] = {}
    keep, targets = [], []
    for row in train_rows:
        where, _, line = str(faceset.paths[row]).rpartition(":")
        votes_path = Path(where).parent / "fer2013new.csv"
        if votes_path not in votes_by_file:
            votes_by_file[votes_path] = fp.read_votes(votes_path)[2]
        votes = votes_by_file[votes_path][int(line) - 2]
        distribution = fp.emotion_distribution(votes, mode)
        if distribution is None or distribution[columns].sum() == 0:
            continue
        keep.append(row)
        targets.append(distribution[columns] / distribution[columns].sum())
    if not keep:
        raise InterpretError(f"FER+ mode {mode}: no training row keeps a label")

    def loss_fn(logits, y, model):
        loss = fp.loss(logits.float(), fp.training_target(y, mode), mode)
        return loss if penalty is None else loss + penalty(model)

    return np.asarray(keep), np.asarray(targets, dtype=np.float32), loss_fn
