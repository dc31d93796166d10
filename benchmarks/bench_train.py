"""Training throughput: `interpret.training.train_epoch` against a bare PyTorch loop.

Both train the same zhu2019 model with the same optimizer (the fast recipe's AdamW), batch 64,
channels_last (bf16 autocast on CUDA). The bare loop reads random float tensors already in
memory; `train_epoch` gathers uint8 faces, augments them on the device and accumulates
loss/accuracy without host syncs. Rounds alternate between the two and the best of each is
kept, so background load hits both alike. Prints one markdown row.

    python benchmarks/bench_train.py [--device cpu|cuda] [--images 256] [--rounds 2] [--batch 64]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from interpret.models import build_model
from interpret.runs import resolve_device
from interpret.training import RECIPES, autocast, make_optimizer, train_epoch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_epoch(model, optimizer, x, y, batch_size: int) -> None:
    model.train()
    for start in range(0, len(x), batch_size):
        with autocast(x.device):
            logits = model(x[start:start + batch_size])
        loss = F.cross_entropy(logits.float(), y[start:start + batch_size])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=256, help="images per timed epoch")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    device = resolve_device(args.device)
    recipe = RECIPES["fast"]
    torch.manual_seed(0)
    model = build_model("zhu2019", 7).to(device, memory_format=torch.channels_last)
    optimizer = make_optimizer(model, recipe, device)
    for group in optimizer.param_groups:
        group["lr"] = 1e-4  # throughput only; keep the weights finite
    n, batch = args.images, args.batch
    faces = torch.randint(0, 256, (n, 99, 99), dtype=torch.uint8, device=device)
    labels = torch.randint(0, 7, (n,), device=device)
    x = torch.randn(n, 1, 96, 96, device=device).contiguous(memory_format=torch.channels_last)
    generator = torch.Generator(device=device).manual_seed(0)

    def timed(fn) -> float:
        synchronize(device)
        began = time.perf_counter()
        fn()
        synchronize(device)
        return n / (time.perf_counter() - began)

    ours = lambda: train_epoch(model, optimizer, faces, labels, generator, batch)  # noqa: E731
    bare = lambda: bare_epoch(model, optimizer, x, labels, batch)  # noqa: E731
    # warm-up: allocator, cuDNN autotuning, first-touch of optimizer state
    timed(lambda: train_epoch(model, optimizer, faces[:batch], labels[:batch], generator, batch))
    timed(lambda: bare_epoch(model, optimizer, x[:batch], labels[:batch], batch))
    best_ours = best_bare = 0.0
    for _ in range(args.rounds):
        best_bare = max(best_bare, timed(bare))
        best_ours = max(best_ours, timed(ours))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print("| device | images/epoch | batch | interpret train_epoch img/s | bare loop img/s | ratio |")
    print("|---|---|---|---|---|---|")
    print(f"| {name} | {n} | {batch} | {best_ours:.1f} | {best_bare:.1f} | {best_ours / best_bare:.2f} |")


if __name__ == "__main__":
    main()
