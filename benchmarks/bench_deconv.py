"""Benchmark the deconvolution job against a per-seed captum loop, on one trained run.

The job is `interpret deconv --layer L --top K` (`run_deconv`: rank by the activation cache,
project all maps x K seeds in windowed batches, write the HDF5 file and the PNG sheets); the
activation cache both need is built first and timed apart. The reference is captum's
`NeuronDeconvolution(model, model.relu{L}).attribute(image, neuron_selector=(c, y, x))`, one
call per seed, run on `--captum-seeds` seeds spread evenly over the job's seeds and
extrapolated to all of them (stated in the row). Disagreement: max |ours - captum x activation|
over the checked seeds, absolute and relative to each projection's max |.|. Wall and
process-CPU seconds are both given (CPU time is robust to other load on the machine).

    python benchmarks/bench_deconv.py --run RUN [--layer relu3] [--top 9] [--captum-seeds 64] [--device cpu]

Measured (2026-11-21, shared 2-core AMD EPYC VM under a load average of about 7 from other
jobs, torch 2.13 CPU, 2 threads) on a run trained with
`python -m interpret train --data synthetic --subjects 16 --epochs 15 --recipe paper --device cpu`
(615 images, 0 dead conv3 maps, 2004 distinct windows among the 2304 seeds), by
`PYTHONPATH=. python benchmarks/bench_deconv.py --run RUN --layer 3 --top 9 --captum-seeds 64`:

| step | wall s | CPU s |
|---|---|---|
| activation cache (shared by both) | 12.23 | 11.85 |
| `deconv --layer 3 --top 9` job (rank, project, HDF5, PNGs) | 5.28 | 5.08 |
| captum NeuronDeconvolution loop, 64 seeds timed, x36.0 extrapolated to 2304 | 170.8 | 170.6 |
| **speed-up** (captum loop / job) | **32.4x** | **33.5x** |
| max abs disagreement on 64 seeds | 3.58e-07 | relative 3.0e-07 |
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

import h5py
import numpy as np
import torch


def timed(func, *args, **kwargs):
    start, cpu = time.perf_counter(), time.process_time()
    result = func(*args, **kwargs)
    return result, time.perf_counter() - start, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a trained run directory")
    parser.add_argument("--layer", default="relu3", help="module name or declared number")
    parser.add_argument("--top", type=int, default=9)
    parser.add_argument("--captum-seeds", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    from captum.attr import NeuronDeconvolution

    from interpret.cache import build_cache
    from interpret.deconv import run_deconv
    from interpret.layers import get_module
    from interpret.runs import load_run

    run = load_run(args.run, device=args.device)
    _, cache_wall, cache_cpu = timed(build_cache, run, layer=args.layer)
    result, job_wall, job_cpu = timed(run_deconv, run, layer=args.layer, top=args.top)
    path = result.path
    with h5py.File(path, "r") as h5:
        projection = h5["projection"][()].reshape(-1, *h5["projection"].shape[2:])
        image_index = h5["image_index"][()].ravel()
        position = h5["position"][()].reshape(-1, 2)
        activation = h5["activation"][()].ravel()
        maps = np.repeat(h5["maps"][()], h5["image_index"].shape[1])
    n_seeds = len(maps)
    chosen = np.linspace(0, n_seeds - 1, min(args.captum_seeds, n_seeds)).round().astype(int)
    images = run.dataset.images(0, len(run.dataset)).to(run.device)
    attr = NeuronDeconvolution(run.model, get_module(run.model, args.layer))
    warnings.simplefilter("ignore")
    attr.attribute(images[:1].clone(), neuron_selector=(0, 0, 0))  # warm-up
    reference = []
    start, cpu = time.perf_counter(), time.process_time()
    for i in chosen:
        seed = (int(maps[i]), int(position[i, 0]), int(position[i, 1]))
        image = images[int(image_index[i])][None].clone()
        reference.append(attr.attribute(image, neuron_selector=seed)[0].sum(0).detach().cpu().numpy())
    loop_wall = (time.perf_counter() - start) * n_seeds / len(chosen)
    loop_cpu = (time.process_time() - cpu) * n_seeds / len(chosen)
    reference = np.stack(reference) * activation[chosen, None, None]
    ours = projection[chosen]
    diff = np.abs(ours - reference).reshape(len(chosen), -1).max(1)
    scale = np.maximum(np.abs(ours), np.abs(reference)).reshape(len(chosen), -1).max(1)
    relative = np.max(diff / np.maximum(scale, 1e-30))

    print(f"run {args.run}: {len(run.dataset)} images, {result.layer} ({result.projection_path} path), {n_seeds} seeds "
          f"({n_seeds // args.top} maps x top {args.top}); device {run.device}; torch threads "
          f"{torch.get_num_threads()}; {platform.processor() or platform.machine()}; "
          f"load average {os.getloadavg()[0]:.1f}")
    print("| step | wall s | CPU s |")
    print("|---|---|---|")
    print(f"| activation cache (shared by both) | {cache_wall:.2f} | {cache_cpu:.2f} |")
    print(f"| `deconv --layer {args.layer} --top {args.top}` job (rank, project, HDF5, PNGs) "
          f"| {job_wall:.2f} | {job_cpu:.2f} |")
    print(f"| captum NeuronDeconvolution loop, {len(chosen)} seeds timed, x{n_seeds / len(chosen):.1f} "
          f"extrapolated to {n_seeds} | {loop_wall:.1f} | {loop_cpu:.1f} |")
    print(f"| **speed-up** (captum loop / job) | **{loop_wall / job_wall:.1f}x** | **{loop_cpu / job_cpu:.1f}x** |")
    print(f"| max abs disagreement on {len(chosen)} seeds | {diff.max():.2e} | relative {relative:.1e} |")


if __name__ == "__main__":
    main()
