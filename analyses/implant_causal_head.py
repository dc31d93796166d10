"""Can the emotion head be made to read the planted maps? A copy of an implanted run whose head is
refitted while the layer's other maps are dropped out, so that the causal check has planted maps
the decision uses.

usage: python analyses/implant_causal_head.py RUN OUT [--drop 0.5] [--epochs 3] [--lr 1e-3] [--keep last]
RUN is a run made by `interpret implant`. During the refit (`implant.refit_head`, AdamW) every map
of the planted layer but the planted ones is zeroed with probability `--drop` per image (and the
rest scaled by 1 / (1 - drop)); at evaluation nothing is dropped. `--drop 1` cuts the other maps
from the head for good: their weights in the head's first layer are zeroed and held at zero, so
the decision reads the planted maps alone and the causal check has a known answer (a map that is
not planted moves no logit). `--keep best` keeps the epoch
with the best validation accuracy (0 = the head as it was), `--keep last` the last one whatever
its accuracy (the point is a head that reads the planted maps). OUT is a new run (model, data, config and metrics; the
config records the refit under planted.implanted.causal_head). Then `interpret cache` and
`interpret validate` on OUT give the causal check's emotion-logit drops for the planted maps.
"""

import argparse
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from interpret import load_run
from interpret.errors import InterpretError, located
from interpret.implant import accuracy, cut_from_head, head_parameters, refit_head
from interpret.io import read_json, write_json
from interpret.layers import get_module
from interpret.planting import planted_maps
from interpret.runs import save_checkpoint, write_config


def others_zeroed_change(model, module, x: torch.Tensor, kept_maps) -> float:
    """Largest absolute change of any logit on `x` when `module`'s maps other than `kept_maps` are zeroed."""
    def zero_others(mod, args, output):
        keep = torch.zeros(output.shape[1], dtype=output.dtype)
        keep[kept_maps] = 1.0
        return output * keep[None, :, None, None]

    with torch.inference_mode():
        intact = model(x)
        handle = module.register_forward_hook(zero_others)
        try:
            cut = model(x)
        finally:
            handle.remove()
    return float((intact - cut).abs().max())


def main(run_dir: str, out: str, drop: float, epochs: int, lr: float, keep: str) -> dict:
    run = load_run(run_dir, device="cpu")
    planted = planted_maps(run.config)
    if not (run.config.get("planted") or {}).get("implanted"):
        raise located(Path(run_dir) / "config.json", "not a run made by `interpret implant`")
    if not 0.0 <= drop <= 1.0:
        raise InterpretError(f"--drop must be between 0 and 1, got {drop}")
    out = Path(out)
    if out.exists():
        raise located(out, "exists; choose a new folder")
    model, data = run.model.eval(), run.dataset
    layer, seed = run.config["planted"]["layer"], int(run.config["seed"])
    split = np.asarray(data.split).astype(str)
    train_rows = np.flatnonzero((split == "train") & (data.targets >= 0))
    val_rows = np.flatnonzero((split == "val") & (data.targets >= 0))
    test_rows = np.flatnonzero((split == "test") & (data.targets >= 0))
    before, _ = accuracy(model, data, test_rows)
    module = get_module(model, layer)
    generator = torch.Generator().manual_seed(seed)
    kept_maps = sorted(planted.values())

    def drop_others(mod, args, output):
        if not mod.training:
            return None
        scale = (torch.rand(output.shape[:2], generator=generator) >= drop).float() / (1.0 - drop)
        scale[:, kept_maps] = 1.0
        return output * scale[..., None, None]

    if drop == 1.0:
        handle = cut_from_head(model, layer, data.rows([0]), kept_maps)
    else:
        handle = module.register_forward_hook(drop_others)
    try:
        history, kept = refit_head(model, head_parameters(model, layer, data.rows([0])), data, train_rows, val_rows,
                                   epochs, seed, lr=lr, keep=keep)
    finally:
        handle.remove()
    after, _ = accuracy(model, data, test_rows)
    record = {"drop": drop, "epochs": epochs, "lr": lr, "keep": keep, "head_history": history, "head_epochs_kept": kept,
              "test_accuracy_before": before, "test_accuracy": after}
    if drop == 1.0:  # zeroing every other map moves no logit when the head reads the planted maps alone
        record["logit_change_others_zeroed"] = others_zeroed_change(model, module, data.rows(test_rows[:128]),
                                                                    kept_maps)
    staging = out.parent / f".{out.name}.causal-{os.getpid()}"  # the run appears whole or not at all
    try:
        shutil.copytree(run_dir, staging, ignore=shutil.ignore_patterns("activations", "validate", "report",
                                                                        "analyses", "deconv", "aumap", "sanity"))
        save_checkpoint(staging / "model.pt", model, {"arch": run.config["arch"], "classes": list(data.classes),
                                                      "implanted_from": run.config["planted"]["implanted"]["source"]})
        config = dict(run.config)
        refit = {k: record[k] for k in ("drop", "epochs", "lr", "keep")}
        implanted = {**config["planted"]["implanted"], "causal_head": refit}
        config["planted"] = {**config["planted"], "implanted": implanted}
        write_config(staging, config)
        fit = (read_json(Path(run_dir) / "metrics.json") or {}).get("implanted")
        write_json(staging / "metrics.json", {"test_accuracy": after, "val_accuracy": history[kept]["val_accuracy"],
                                              "implanted": fit, "causal_head": record})
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return record


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("out")
    parser.add_argument("--drop", type=float, default=0.5)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--keep", choices=("best", "last"), default="last")
    args = parser.parse_args()
    try:
        print(main(args.run, args.out, args.drop, args.epochs, args.lr, args.keep))
    except InterpretError as error:  # one line, no traceback
        raise SystemExit(f"error: {error}")
