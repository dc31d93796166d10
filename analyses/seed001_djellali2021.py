"""Seed 001 (Djellali & Deljanin 2021, FER CNN): its headline numbers beside a djellali2021 run's.

usage: python analyses/seed001_djellali2021.py RUN   (RUN trained with `interpret train --arch djellali2021`)
"""

import json
import sys
from pathlib import Path

from _systems import evaluation, pct, side_by_side


def main(run_dir: str) -> None:
    ours = evaluation(run_dir)
    config = json.loads((Path(run_dir) / "config.json").read_text())
    history = (Path(run_dir) / "history.csv").read_text().splitlines()
    last_train = float(history[-1].split(",")[2]) if len(history) > 1 else None
    data = config["data"]["spec"]
    side_by_side([
        ("training accuracy", "62%", pct(last_train), "IMPLAUSIBLE as printed: below test by 23 points; "
         "probably swapped with the test figure (SEEDS.md §2.6)"),
        ("test accuracy", "85%", pct(ours["accuracy"]),
         f"IMPLAUSIBLE for this 4-conv net on FER2013 (the identical public model: 63.2%); "
         f"majority baseline {pct(ours['majority_baseline']['accuracy'])}"),
        ("labels / data", "FER+ claimed, fer2013 7-class trained", f"{len(ours['classes'])} classes on {data}",
         "split " + config["split"]["kind"] + (" (PublicTest = val, PrivateTest = test)"
                                              if config["split"]["kind"] == "usage" else "")),
    ], f"Seed 001 vs {run_dir} ({ours['split']} split, {ours['samples']} images)")


if __name__ == "__main__":
    main(*sys.argv[1:2])
