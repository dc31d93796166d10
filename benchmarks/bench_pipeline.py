"""Input-pipeline throughput: `transforms.augment` and `evaluate` against a bare tensor loop.

The bare loop indexes pre-cropped (N, 1, 96, 96) float faces and standardizes them, the least
any pipeline must do. Compare the augment figure with training img/s (bench_train.py): the
pipeline must be far faster than training so it never limits it. Prints markdown rows.

    python benchmarks/bench_pipeline.py [--device cpu|cuda] [--images 2048] [--batch 64]
"""

from __future__ import annotations

import argparse
import time

import torch

from interpret.data.transforms import augment, evaluate, standardize
from interpret.runs import resolve_device


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    device = resolve_device(args.device)
    n, batch = args.images, args.batch
    faces = torch.randint(0, 256, (n, 99, 99), dtype=torch.uint8, device=device)
    cropped = faces[:, None, 1:97, 1:97].float().contiguous()
    generator = torch.Generator(device=device).manual_seed(0)
    order = torch.randperm(n, generator=generator, device=device)

    def throughput(step) -> float:
        best = 0.0
        for _ in range(args.rounds):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            began = time.perf_counter()
            for start in range(0, n, batch):
                step(order[start:start + batch])
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            best = max(best, n / (time.perf_counter() - began))
        return best

    rows = {
        "bare: index + standardize (pre-cropped float)": throughput(lambda i: standardize(cropped[i])),
        "evaluate (uint8 -> centre crop, standardize)": throughput(lambda i: evaluate(faces[i])),
        "augment (uint8 -> rotate, flip, crop, standardize)": throughput(lambda i: augment(faces[i], generator)),
    }
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"| pipeline ({name}, batch {batch}) | img/s |")
    print("|---|---|")
    for label, value in rows.items():
        print(f"| {label} | {value:,.0f} |")


if __name__ == "__main__":
    main()
