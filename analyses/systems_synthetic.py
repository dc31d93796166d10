"""The four seed systems on the synthetic default: held-out accuracy (liu2019: also valence RMSE)
against the majority baseline, and how many planted AUs the best maps of the last conv layer recover.

usage: python analyses/systems_synthetic.py OUT [--subjects 20] [--epochs 6] [--permutations 200]
                                             [--protocol auto|khorrami] [--recipe paper|fast]

Trains OUT/<arch> for each system (subject-grouped 5-fold, fold 0; `--recipe fast` falls back to
`paper` for a system without one; a run that already has
metrics.json is reused), evaluates it (`interpret evaluate`; wang2022 with ten-crop) and runs
`au-map --au all` on its last conv layer. "Recovered": the AU's best map (by the paper's distance)
is significant family-wise (p < 0.05), fires more with the AU (AUROC > 0.5) and localizes in the
AU's region (ratio > 1). Prints one markdown table.
"""

import argparse
import json
from pathlib import Path

from interpret import load_run
from interpret.aumap import run_au_map
from interpret.systems.evaluation import evaluate_run
from interpret.systems.specs import SPECS
from interpret.training import train

SYSTEMS = {"liu2019": 4, "djellali2021": 4, "wu2019": 7, "wang2022": 5}  # arch: last conv layer


def recovered(results: dict) -> tuple[int, int]:
    hits = sum(1 for r in results.values()
               if r["p_family"] < 0.05 and r["best_auroc"] > 0.5 and ((r.get("localization") or {}).get("ratio") or 0) > 1)
    return hits, len(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--subjects", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--permutations", type=int, default=200)
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--protocol", default="auto")
    parser.add_argument("--recipe", default="paper")
    args = parser.parse_args()
    print("| system | recipe, protocol, epochs | test images | accuracy | majority baseline | valence RMSE (majority) "
          "| planted AUs recovered (last conv) |")
    print("|---|---|---|---|---|---|---|")
    for arch in args.systems.split(","):
        run_dir = Path(args.out) / arch
        if not (run_dir / "metrics.json").is_file():
            recipe = args.recipe if args.recipe in SPECS[arch].recipes else "paper"
            train(data="synthetic", out=run_dir, arch=arch, recipe=recipe, epochs=args.epochs, subjects=args.subjects,
                  folds=5, protocol=args.protocol, device="cpu", progress=False, sequence={"epochs": 20} if arch == "wu2019" else None)
        entry = evaluate_run(run_dir, tta="ten-crop" if arch == "wang2022" else "none")
        results = run_au_map(load_run(run_dir), layer=SYSTEMS[arch], aus="all", permutations=args.permutations,
                             bootstrap=0).results
        hits, total = recovered(results)
        config = json.loads((run_dir / "config.json").read_text())
        rmse = (f"{entry['valence']['rmse']:.3f} ({entry['valence']['majority_rmse']:.3f})"
                if "valence" in entry else "–")
        seq = f"; sequences {entry['sequence']['accuracy']:.3f}, no-CNN {entry['no_cnn_baseline']['accuracy']:.3f}" \
            if "sequence" in entry else ""
        print(f"| {arch} | {config['recipe']['name']}, {config['protocol']}, {config['epochs_run']} | {entry['samples']} | "
              f"{entry['accuracy']:.3f}{seq} | {entry['majority_baseline']['accuracy']:.3f} | {rmse} | "
              f"{hits} of {total} |", flush=True)


if __name__ == "__main__":
    main()
