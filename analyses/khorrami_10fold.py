"""Khorrami et al. 2015: subject-grouped 10-fold accuracy on CK+ (first + last three frames).

usage: python analyses/khorrami_10fold.py --data DIR [--folds 10] [--epochs E] [--out runs/khorrami]
Trains khorrami2015 on each fold with the khorrami protocol and writes OUT/khorrami_10fold.md.
Published: about 95% on CK+ (8 classes; unverified secondary figure).
"""

import argparse
import json
from pathlib import Path

import numpy as np

from interpret.training import train

PUBLISHED = 0.95


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--folds", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--subjects", type=int, default=40, help="for --data synthetic")
    parser.add_argument("--out", default="runs/khorrami")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    out = Path(args.out)
    rows, accuracies = ["| fold | test images | accuracy | trivial baseline |", "|---|---|---|---|"], []
    for fold in range(args.folds):
        run = train(data=args.data, out=out / f"fold{fold}", arch="khorrami2015", recipe="fast", epochs=args.epochs,
                    folds=args.folds, fold=fold, split="kfold", protocol="khorrami", subjects=args.subjects,
                    seed=0, device=args.device)
        metrics = json.loads((Path(run) / "metrics.json").read_text())
        accuracies.append(metrics["test_accuracy"])
        rows.append(f"| {fold} | {metrics['split']['counts']['test']['images']} | {metrics['test_accuracy']:.3f} | "
                    f"{metrics['majority_baseline']['accuracy']:.3f} |")
    mean, sd = float(np.mean(accuracies)), float(np.std(accuracies, ddof=1)) if len(accuracies) > 1 else 0.0
    rows.append(f"| mean ± sd | | {mean:.3f} ± {sd:.3f} | |")
    (out / "khorrami_10fold.md").write_text("\n".join(rows) + "\n")
    print("\n".join(rows))
    print(f"Published (Khorrami et al. 2015, CK+, subject-grouped 10-fold): about {PUBLISHED:.0%}; "
          f"ours on {args.data}: {mean:.1%} ± {sd:.1%}")


if __name__ == "__main__":
    main()
