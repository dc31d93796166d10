"""Planting after training: can the trained features hold a detector per AU that joint planting misses?

usage: python analyses/plant_after_training.py --run RUN [--epochs 8] [--fresh 100] [--seed 0] [--no-augment]

Freezes a run's network up to pool2, fits one new conv3-shaped 5x5 filter per AU with the planting
loss (`interpret.planting.PlantedLoss`: batch-standardized BCE on the maxima before the ReLU, plus
the hinge) on the run's training images, and prints per epoch the filters' mean AUROC on those
images and on `--fresh` new synthetic identities (`interpret.truth`), and how many reach the
detector bar (0.75) there; writes RUN/analyses/plant_after_training.json. The filters are not put
into the network: an experiment for BENCHMARKS.md (issue 13), not a yardstick.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from interpret import load_run, stats
from interpret.data.transforms import augment
from interpret.facs import au_name
from interpret.io import write_json
from interpret.layers import layer_output
from interpret.planting import PlantedLoss
from interpret.truth import fresh_dataset
from interpret.verdict import DETECTOR_AUROC

BATCH = 16


def features(model, batches):
    with torch.inference_mode():
        return torch.cat([layer_output(model, "pool2", x) for x in batches])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--fresh", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-augment", action="store_true", help="fit on the stored crops (as evaluated)")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    run = load_run(args.run)
    data, model = run.dataset, run.model
    train_rows = np.flatnonzero(np.asarray(data.split).astype(str) == "train")
    presence = torch.from_numpy(np.asarray(data.au_presence, dtype=bool))
    codes = [au_name(c) for c in data.faceset.au_codes]
    raw = torch.from_numpy(np.asarray(data.faceset.images))
    fresh = fresh_dataset(run, args.fresh)
    fresh_presence = np.asarray(fresh.faceset.au_present, dtype=bool)
    fresh_features = features(model, (fresh.images(lo, min(lo + 128, len(fresh))) for lo in range(0, len(fresh), 128)))
    seen_features = features(model, (data.rows(torch.as_tensor(train_rows[lo:lo + 128]))
                                     for lo in range(0, len(train_rows), 128)))
    conv = torch.nn.Conv2d(seen_features.shape[1], len(codes), 5, padding=2)
    with torch.no_grad():  # start from the trained conv3's scale
        conv.weight.copy_(model.conv3.weight[:len(codes)])
        conv.bias.copy_(model.conv3.bias[:len(codes)])
    loss_of = PlantedLoss("conv", range(len(codes)), range(len(codes)), presence, pre_activation=True)
    optimizer = torch.optim.AdamW(conv.parameters(), lr=1e-3, weight_decay=0.01)
    generator = torch.Generator().manual_seed(args.seed)
    start, history = time.perf_counter(), []
    for epoch in range(args.epochs):
        order = torch.from_numpy(train_rows)[torch.randperm(len(train_rows))]
        for lo in range(0, len(order), BATCH):
            rows = order[lo:lo + BATCH]
            x = augment(raw[rows], generator) if not args.no_augment else data.rows(rows)
            with torch.inference_mode():
                feats = layer_output(model, "pool2", x)
            loss = loss_of({"conv": conv(feats.clone())}, rows)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            seen = F.relu(conv(seen_features)).amax(dim=(2, 3)).numpy()
            new = torch.cat([F.relu(conv(fresh_features[lo:lo + 256])).amax(dim=(2, 3))
                             for lo in range(0, len(fresh_features), 256)]).numpy()
        on_seen = [stats.auroc(seen[:, [k]], presence.numpy()[train_rows, k])[0] for k in range(len(codes))]
        on_fresh = [stats.auroc(new[:, [k]], fresh_presence[:, k])[0] for k in range(len(codes))]
        history.append({"epoch": epoch + 1, "train": float(np.nanmean(on_seen)), "fresh": float(np.nanmean(on_fresh)),
                        "detectors": int(sum(a >= DETECTOR_AUROC for a in on_fresh))})
        print(f"epoch {epoch + 1}: mean AUROC on training images {np.nanmean(on_seen):.3f}, on {args.fresh} fresh "
              f"identities {np.nanmean(on_fresh):.3f}, detectors there {sum(a >= DETECTOR_AUROC for a in on_fresh)} of "
              f"{len(codes)} ({time.perf_counter() - start:.0f} s)", flush=True)
    print("fresh AUROC per AU: " + " ".join(f"{c}:{a:.2f}" for c, a in zip(codes, on_fresh)))
    write_json(Path(args.run) / "analyses" / "plant_after_training.json",
               {"args": vars(args), "history": history, "fresh_auroc": dict(zip(codes, map(float, on_fresh)))})


if __name__ == "__main__":
    main()
