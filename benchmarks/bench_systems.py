"""Seed systems' training throughput: `train_epoch` with each system's pipeline against a bare loop.

For liu2019, djellali2021, wu2019 (its frame CNN) and wang2022: the same model, the same Adam at
the paper recipe's batch size. `train_epoch` gathers uint8 99x99 faces, applies the system's
training transform (resize to 48, normalise; wang2022 one of ten crops, RGB) and its loss
(liu2019 adds the L2 penalty); the bare loop feeds ready float tensors of the network's input
shape to plain cross-entropy. Rounds alternate, the best of each is kept. Prints markdown rows.

    python benchmarks/bench_systems.py [--images 256] [--rounds 2] [--systems liu2019,wang2022]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from interpret.models import build_model, input_spec
from interpret.systems.specs import SPECS, train_transform
from interpret.training import make_optimizer, train_epoch

CLASSES = {"liu2019": 9, "djellali2021": 7, "wu2019": 7, "wang2022": 5}


def bare_epoch(model, optimizer, x, y, batch_size: int) -> None:
    model.train()
    for start in range(0, len(x), batch_size):
        loss = F.cross_entropy(model(x[start:start + batch_size]), y[start:start + batch_size])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def measure(arch: str, n: int, rounds: int) -> tuple[float, float]:
    """(pipeline images/s, bare images/s), best of `rounds` each."""
    system = SPECS[arch]
    recipe = system.recipe("paper")
    spec = input_spec(arch)
    torch.manual_seed(0)
    model = build_model(arch, CLASSES[arch]).to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, recipe, torch.device("cpu"))
    faces = torch.randint(0, 256, (n, 99, 99), dtype=torch.uint8)
    labels = torch.randint(0, CLASSES[arch], (n,))
    x = torch.rand(n, spec.channels, spec.size, spec.size).contiguous(memory_format=torch.channels_last)
    generator = torch.Generator().manual_seed(0)
    transform = train_transform(recipe, spec)
    best_pipeline = best_bare = float("inf")
    bare_epoch(model, optimizer, x[:recipe.batch_size], labels[:recipe.batch_size], recipe.batch_size)  # warm-up
    for _ in range(rounds):
        began = time.perf_counter()
        train_epoch(model, optimizer, faces, labels, generator, recipe.batch_size, transform=transform,
                    loss_fn=system.loss)
        best_pipeline = min(best_pipeline, time.perf_counter() - began)
        began = time.perf_counter()
        bare_epoch(model, optimizer, x, labels, recipe.batch_size)
        best_bare = min(best_bare, time.perf_counter() - began)
    return n / best_pipeline, n / best_bare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256, help="images per timed epoch")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--systems", default=",".join(CLASSES))
    args = parser.parse_args()
    print(f"| system | batch | train_epoch images/s | bare loop images/s | ratio | threads |")
    print("|---|---|---|---|---|---|")
    for arch in args.systems.split(","):
        pipeline, bare = measure(arch, args.images, args.rounds)
        batch = SPECS[arch].recipe("paper").batch_size
        print(f"| {arch} | {batch} | {pipeline:.0f} | {bare:.0f} | {pipeline / bare:.2f} | {torch.get_num_threads()} |",
              flush=True)


if __name__ == "__main__":
    main()
