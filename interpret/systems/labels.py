"""Label spaces a run can train on besides the data's own emotions (config key `labels`).

- absent / {"kind": "emotion"}: the data's emotion classes (every core run).
- {"kind": "valence", "seed": S, "raters": K}: nine SAM levels L1..L9. Synthetic data: simulated
  raters around the planted valence (`valence.synthetic_valence`). Other data:
  {"kind": "valence", "csv": PATH} reads a user's valence CSV and matches its paths to the images.
- {"kind": "five"}: seed 003's five classes (anger, sadness, happy, fear, calm = neutral).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from interpret.data.faceset import UNLABELLED, FaceSet
from interpret.errors import InterpretError, located
from interpret.systems import valence as val
from interpret.systems.wang2022 import five_classes

KINDS = ("emotion", "valence", "five")


def apply_labels(faceset: FaceSet, labels: dict | None) -> FaceSet:
    """The protocol-applied `faceset` relabelled as `labels` says (same rows, same order)."""
    kind = (labels or {}).get("kind", "emotion")
    if kind == "emotion":
        return faceset
    if kind == "five":
        return five_classes(faceset)
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
