"""How close is `torchrun --nproc-per-node N -m interpret train` to one process at the same global batch and seed?

Trains the same configuration single-process with two seeds (the run-to-run spread) and with N
processes (gloo on CPU) via torchrun; prints final train loss, validation and test accuracy,
and the relative weight distance ||w_N - w_1|| / ||w_1 - w_init|| (both runs start from the same
weights, seed `--seed`).

    PYTHONPATH=$PWD python benchmarks/compare_ddp.py --subjects 20 --epochs 3 --nproc 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from interpret.models import build_model
from interpret.runs import load_checkpoint


def train_args(args, out: Path, seed: int) -> list[str]:
    return ["train", "--out", str(out), "--subjects", str(args.subjects), "--epochs", str(args.epochs),
            "--arch", args.arch, "--folds", str(args.folds), "--device", "cpu", "--seed", str(seed)]


def summary(run: Path) -> dict:
    metrics = json.loads((run / "metrics.json").read_text())
    last = (run / "history.csv").read_text().strip().splitlines()[-1].split(",")
    return {"final_train_loss": float(last[1]), "val_accuracy": metrics["val_accuracy"],
            "test_accuracy": metrics["test_accuracy"]}


def flat(state: dict) -> torch.Tensor:
    return torch.cat([v.flatten().double() for v in state.values()])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--arch", default="khorrami2015")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), OMP_NUM_THREADS="1")
    with tempfile.TemporaryDirectory() as tmp:
        runs, seconds = {}, {}
        jobs = {"single": [sys.executable, "-m", "interpret", *train_args(args, Path(tmp) / "single", args.seed)],
                "single_other_seed": [sys.executable, "-m", "interpret",
                                      *train_args(args, Path(tmp) / "other", args.seed + 1)],
                f"torchrun_{args.nproc}": [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node",
                                           str(args.nproc), "-m", "interpret",
                                           *train_args(args, Path(tmp) / "ddp", args.seed)]}
        for name, command in jobs.items():
            began = time.perf_counter()
            subprocess.run(command, env=env, check=True, capture_output=True)
            seconds[name] = round(time.perf_counter() - began, 1)
            runs[name] = Path(command[command.index("--out") + 1])
        torch.manual_seed(args.seed)
        start = flat(build_model(args.arch, len(json.loads((runs["single"] / "config.json").read_text())["classes"]))
                     .state_dict())
        weights = {name: flat(load_checkpoint(run / "model.pt")["state_dict"]) for name, run in runs.items()}
        ddp = f"torchrun_{args.nproc}"
        out = {name: {**summary(run), "seconds": seconds[name]} for name, run in runs.items()}
        out["relative_weight_distance_ddp_vs_single"] = float(
            (weights[ddp] - weights["single"]).norm() / (weights["single"] - start).norm())
        out["args"] = vars(args)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
