"""Benchmark the activation cache: throughput against a bare forward pass, and peak memory against N.

For each N a fresh process builds a run of N images (synthetic faces, repeated to reach N) and
times `build_cache` (with and without the full maps) against the bare forward pass to the layer
over the same batches (the least work a cache can do), then measures the memory the cache
build adds on top of what the process already holds (model and dataset): the peak of the
resident set size, sampled every 5 ms, minus its value before the build, and tracemalloc's peak
of Python/numpy allocations. Memory that did not grow with N is the streaming contract.

    python benchmarks/bench_cache.py [--sizes 500,1000,2000] [--layer relu3]

Measured (2026-11-21, shared 2-core AMD EPYC VM under a load average of about 10 from other
jobs, so the timings are noisy) by `PYTHONPATH=. python benchmarks/bench_cache.py --sizes 500,1000,2000`:

| N | bare forward s | cache s (ratio) | cache+maps s (ratio) | peak RSS added MB (max / +maps) | process peak RSS MB | tracemalloc peak MB (max / +maps) | file MB (max / +maps) |
|---|---|---|---|---|---|---|---|
| 500 | 18.95 | 19.55 (1.03x) | 21.75 (1.15x) | 664 / 668 | 1115 | 4.7 / 4.7 | 1.5 / 94.5 |
| 1000 | 35.24 | 31.42 (0.89x) | 51.09 (1.45x) | 668 / 667 | 1124 | 9.4 / 9.4 | 3.1 / 189.0 |
| 2000 | 69.77 | 63.41 (0.91x) | 68.26 (0.98x) | 654 / 672 | 1129 | 18.7 / 18.7 | 6.2 / 377.9 |

The added RSS (about 660 MB) is one batch of 128 through conv1 (its output and its ReLU's,
128 x 64 x 96 x 96 float32 each) and stays flat in N, with the maps too. What grows with N in
tracemalloc (about 9 KB per image) is the dataset fingerprint: `FaceSet.fingerprint` hashes
`images.tobytes()`, a transient copy of the uint8 images.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch

from common import PeakRSS, rss_bytes, untrained_run  # benchmarks/common.py


def make_run(folder: Path, n: int):
    """A run of n images (3 synthetic subjects' faces repeated) and an untrained zhu2019 model
    (the weights' values do not change the cache's cost)."""
    from interpret.synth import synthetic_faceset

    faces = synthetic_faceset(subjects=3, seed=0)
    faceset = faces.select(np.arange(n) % len(faces))
    return untrained_run(folder, faceset, "paper")


def measure(n: int, layer: str) -> dict:
    """One N, in this process: timings and memory (JSON on stdout)."""
    from interpret.cache import build_cache
    from interpret.layers import layer_output

    with tempfile.TemporaryDirectory() as tmp:
        run = make_run(Path(tmp), n)
        run.dataset.faceset.fingerprint()  # warm-up: page in the data

        def bare(stop=n):
            with torch.inference_mode():
                for start in range(0, stop, 128):
                    layer_output(run.model, layer, run.dataset.images(start, min(start + 128, stop))).amax((2, 3))

        bare(128)  # warm-up
        out = {"n": n}
        start, cpu = time.perf_counter(), time.process_time()
        bare()
        out["bare_s"], out["bare_cpu_s"] = time.perf_counter() - start, time.process_time() - cpu
        for maps in (False, True):
            key = "maps" if maps else "max"
            base = rss_bytes()
            tracemalloc.start()
            start, cpu = time.perf_counter(), time.process_time()
            with PeakRSS() as peak:
                path = build_cache(run, layer=layer, store_maps=maps)
            out[f"{key}_s"], out[f"{key}_cpu_s"] = time.perf_counter() - start, time.process_time() - cpu
            out[f"{key}_traced_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
            out[f"{key}_rss_mb"] = (peak.peak - base) / 2**20
            out[f"{key}_peak_mb"] = peak.peak / 2**20
            out[f"{key}_file_mb"] = path.stat().st_size / 2**20
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="500,1000,2000")
    parser.add_argument("--layer", default="relu3", help="module name or declared number")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(measure(args.child, args.layer)))
        return
    print(f"{args.layer}, batch 128, torch threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.1f}; memory = peak added by build_cache over the process before it")
    print("| N | bare forward s | cache s (ratio) | cache+maps s (ratio) | peak RSS added MB (max / +maps) "
          "| process peak RSS MB | tracemalloc peak MB (max / +maps) | file MB (max / +maps) |")
    print("|---|---|---|---|---|---|---|---|")
    for n in (int(s) for s in args.sizes.split(",")):
        command = [sys.executable, __file__, "--child", str(n), "--layer", str(args.layer)]
        r = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        print(f"| {n} | {r['bare_s']:.2f} | {r['max_s']:.2f} ({r['max_s'] / r['bare_s']:.2f}x) "
              f"| {r['maps_s']:.2f} ({r['maps_s'] / r['bare_s']:.2f}x) | {r['max_rss_mb']:.0f} / {r['maps_rss_mb']:.0f} | {r['maps_peak_mb']:.0f} "
              f"| {r['max_traced_mb']:.1f} / {r['maps_traced_mb']:.1f} | {r['max_file_mb']:.1f} / {r['maps_file_mb']:.1f} |")


if __name__ == "__main__":
    main()
