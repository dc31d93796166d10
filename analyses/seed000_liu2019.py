"""Seed 000 (Liu et al. 2019, valence CNN): its headline numbers beside a liu2019 run's.

usage: python analyses/seed000_liu2019.py RUN        (RUN trained with `interpret train --arch liu2019`)
"""

import sys

from _systems import evaluation, pct, side_by_side


def main(run_dir: str) -> None:
    ours = evaluation(run_dir)
    v = ours["valence"]
    side_by_side([
        ("9-level test accuracy", "~0.7 (read from Fig. 7's text)", pct(ours["level_accuracy"]),
         f"majority baseline {pct(ours['majority_baseline']['accuracy'])}; UNVERIFIABLE: their 110 test images "
         "and labels are private"),
        ("valence RMSE", "0.0857 +- 0.0064 (videos, 10 subjects)", f"{v['rmse']:.4f} (images)",
         f"constant majority level {v['majority_rmse']:.4f}; UNVERIFIABLE: their videos and joystick "
         "annotations are private, and ours is per image, not per video"),
        ("valence MAE", "not reported", f"{v['mae']:.4f}", f"map {v['valence_map']}: V = (E - 5) / 4"),
    ], f"Seed 000 vs {run_dir} ({ours['split']} split, {ours['samples']} images)")


if __name__ == "__main__":
    main(*sys.argv[1:2])
