"""Seed 002 (Wu & Pan 2019, CNN features + LSTM): its headline numbers beside a wu2019 run's.

usage: python analyses/seed002_wu2019.py RUN        (RUN trained with `interpret train --arch wu2019`)
"""

import sys

from _systems import evaluation, side_by_side


def prf(entry: dict, average: str) -> str:
    return "/".join(f"{entry[f'{average}_{m}']:.2f}" for m in ("precision", "recall", "f1"))


def main(run_dir: str) -> None:
    test, val = evaluation(run_dir, "test"), evaluation(run_dir, "val")
    seq, base = test["sequence"], test["no_cnn_baseline"]
    side_by_side([
        ("accuracy val / test, with CNN", "JAFFE 0.71/0.83, CK+ 0.95/0.39, both 0.91/0.44 (Table 5)",
         f"{val['sequence']['accuracy']:.2f}/{seq['accuracy']:.2f}",
         f"sequence mode {seq['settings']['mode']}, T = {seq['settings']['steps']}; CK+ val 0.95 vs test 0.39 "
         "is implausible for one random split"),
        ("P/R/F1 with CNN, 'Total' row", "JAFFE 0.93/0.88/0.89 (Table 2)", "macro " + prf(seq, "macro"),
         "IMPOSSIBLE as printed: Table 2's per-class rows average to 0.65/0.62/0.61 (macro)"),
        ("P/R/F1 with CNN, weighted", "not reported", "weighted " + prf(seq, "weighted"), "averages labelled"),
        ("P/R/F1 without CNN", "JAFFE 0.21/0.21/0.19, CK+ 0.16/0.27/0.19 (Tables 1, 3)",
         "macro " + prf(base, "macro"), f"no-CNN baseline (image rows as time steps), accuracy {base['accuracy']:.2f}"),
        ("majority baseline", "not reported", f"{test['majority_baseline']['accuracy']:.2f}", ""),
    ], f"Seed 002 vs {run_dir} (test: {seq['samples']} sequences)")


if __name__ == "__main__":
    main(*sys.argv[1:2])
