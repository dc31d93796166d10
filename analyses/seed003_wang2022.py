"""Seed 003 (Wang 2022, five-class DCNN): its Table 3 beside a wang2022 run's per-class rates.

usage: python analyses/seed003_wang2022.py RUN      (RUN trained with `interpret train --arch wang2022`)
"""

import sys

from _systems import evaluation, side_by_side

from interpret.systems.scores import attainable

PAPER_CNN = {"anger": 95.2, "sadness": 94.9, "happy": 96.1, "fear": 97.2, "calm": 95.8}
PAPER_TEST_COUNTS = {"anger": 369, "sadness": 289, "happy": 198, "fear": 207, "calm": 758}


def main(run_dir: str) -> None:
    ours = evaluation(run_dir, tta="ten-crop")
    rows = []
    for name, rate in PAPER_CNN.items():
        ok = attainable(rate, PAPER_TEST_COUNTS[name])
        rows.append((f"{name} recognition rate", f"{rate}%", f"{100 * ours['recognition_rate'][name]:.1f}%",
                     f"n = {ours['per_class'][name]['support']}; paper's rate on its {PAPER_TEST_COUNTS[name]} test "
                     + ("images is attainable" if ok else "images is UNATTAINABLE (no k/n rounds to it)")))
    rows.append(("overall accuracy", "not given (95.73% weighted by its counts)", f"{100 * ours['accuracy']:.1f}%",
                 f"majority baseline {100 * ours['majority_baseline']['accuracy']:.1f}%; ten-crop averaged"))
    side_by_side(rows, f"Seed 003 (Table 3, CNN row) vs {run_dir} ({ours['split']} split, {ours['samples']} images)")


if __name__ == "__main__":
    main(*sys.argv[1:2])
