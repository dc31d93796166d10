"""Benchmark issue 11: start-up with RUN/dataset.h5, whole-command deconv vs captum, memory flat in N.

Parts (each prints a Markdown table for BENCHMARKS.md):

- `startup`: wall seconds of a fresh process that starts any command on the run (interpreter,
  imports, `load_run`), with RUN/dataset.h5 present (after) and removed (before: the data is
  regenerated from the config, as every command did), median of `--repeat`.
- `deconv`: whole-command `python -m interpret deconv --run RUN --layer 3 --top 9` (median of
  `--repeat`; cache already built, timed apart) against captum's `NeuronDeconvolution` called once per seed, on
  `--captum-seeds` of the job's seeds spread evenly and extrapolated to all of them; the command
  is also timed without dataset.h5 (the data regenerated, as before this issue).
- `memory`: for each N of `--sizes` (synthetic 48x48 stills upscaled to the run's 99x99, as the FER
  reader does), a fresh process times `build_cache` (relu3 maxima) and `run_au_map` (all planted AUs)
  and samples the peak resident set size each adds over the process before it. With `--keep DIR`
  each N's run (and its cache) lives in DIR/N and is reused: a later call times only au-map.

The run for `startup`/`deconv` is made by `--make-run RUN`: the demo's data (100 synthetic
subjects, Khorrami protocol, 10 folds) and an untrained zhu2019 (He init; weights change only
which maps are dead, not the work per seed).

    PYTHONPATH=. python benchmarks/bench_scale.py --make-run /tmp/demo_like
    PYTHONPATH=. python benchmarks/bench_scale.py --run /tmp/demo_like --part startup
    PYTHONPATH=. python benchmarks/bench_scale.py --run /tmp/demo_like --part deconv
    PYTHONPATH=. python benchmarks/bench_scale.py --part memory --sizes 1000,2000,4000,10000,35887 --permutations 100 --bootstrap 20
    PYTHONPATH=. python benchmarks/bench_scale.py --part memory --sizes 35887 --keep /tmp/scale_runs
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from common import PeakRSS, rss_bytes, untrained_run  # benchmarks/common.py


def env() -> dict:
    return dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))


def wall(command: list[str]) -> tuple[float, float]:
    """(wall, CPU) seconds of a child process; CPU (user + system) is robust to other load."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env(), capture_output=True)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def median(pairs) -> str:
    return " | ".join(f"{statistics.median(p[i] for p in pairs):.2f}" for i in (0, 1))


def make_run(folder: Path) -> None:
    from interpret.models import build_model
    from interpret.runs import run_faceset, save_checkpoint, write_config

    config = {"arch": "zhu2019", "classes": None, "data": {"spec": "synthetic", "subjects": 100, "seed": 0},
              "protocol": "khorrami", "size": 99, "split": {"kind": "kfold", "folds": 10, "fold": 0, "seed": 0},
              "seed": 0}
    faceset = run_faceset(config)
    config["classes"] = [faceset.emotions[i] for i in np.unique(faceset.emotion[faceset.emotion >= 0])]
    torch.manual_seed(0)
    save_checkpoint(folder / "model.pt", build_model("zhu2019", len(config["classes"])), {"arch": "zhu2019"})
    write_config(folder, config)


def startup(run: Path, repeat: int) -> None:
    data = run / "dataset.h5"
    probe = [sys.executable, "-c", f"from interpret.runs import load_run; load_run({str(run)!r})"]
    wall(probe)  # writes dataset.h5 if missing; warms the file cache
    after = [wall(probe) for _ in range(repeat)]
    before = []
    for _ in range(repeat):
        data.unlink()
        before.append(wall(probe))
    n = len(__import__("interpret").load_run(run).dataset)
    print(f"start-up of a command on {run} ({n} images), median of {repeat} fresh processes, "
          f"load average {os.getloadavg()[0]:.1f}")
    print("| | wall s | CPU s |\n|---|---|---|")
    print(f"| before: data regenerated from config.json | {median(before)} |")
    print(f"| after: RUN/dataset.h5 read | {median(after)} |")


def deconv(run: Path, seeds_timed: int, repeat: int) -> None:
    import warnings

    from captum.attr import NeuronDeconvolution

    from interpret.cache import open_cache
    from interpret.runs import load_run

    cli = [sys.executable, "-m", "interpret"]
    shutil.rmtree(run / "activations", ignore_errors=True)
    cache_s = wall([*cli, "cache", "--run", str(run), "--layer", "3", "--device", "cpu"])
    command = [*cli, "deconv", "--run", str(run), "--layer", "3", "--top", "9", "--device", "cpu"]
    runs = [wall(command) for _ in range(repeat)]
    job_s = tuple(statistics.median(r[i] for r in runs) for i in range(2))
    (run / "dataset.h5").unlink()
    job_regen_s = wall(command)  # rewrites dataset.h5 on the way

    loaded = load_run(run)
    cache = open_cache(loaded, 3)
    rows = np.flatnonzero(cache.split == "train")
    order = np.argsort(-cache.max[rows], axis=0, kind="stable")[:9]
    image_index = rows[order].T  # (maps, 9)
    maps = np.repeat(np.arange(cache.max.shape[1]), 9)
    flat_rows = image_index.ravel()
    positions = cache.positions(flat_rows, maps)
    pick = np.linspace(0, len(maps) - 1, seeds_timed).round().astype(int)
    model = loaded.model
    explainer = NeuronDeconvolution(model, model.relu3)
    start, cpu = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in pick:
            image = loaded.dataset.images(int(flat_rows[i]), int(flat_rows[i]) + 1).requires_grad_()
            explainer.attribute(image, neuron_selector=(int(maps[i]), *map(int, positions[i])))
    scale = len(maps) / len(pick)
    captum = ((time.perf_counter() - start) * scale, (time.process_time() - cpu) * scale)
    print(f"deconv on {run} ({len(loaded.dataset)} images, {len(maps)} seeds), load average "
          f"{os.getloadavg()[0]:.1f}")
    print("| step | wall s | CPU s |\n|---|---|---|")
    print(f"| `interpret cache --layer 3` (shared by both, apart) | {cache_s[0]:.2f} | {cache_s[1]:.2f} |")
    print(f"| `interpret deconv --layer 3 --top 9`, whole command, data regenerated (before) | "
          f"{job_regen_s[0]:.2f} | {job_regen_s[1]:.2f} |")
    print(f"| `interpret deconv --layer 3 --top 9`, whole command, dataset.h5 read (after; median of {repeat}) | "
          f"{job_s[0]:.2f} | {job_s[1]:.2f} |")
    print(f"| captum NeuronDeconvolution loop, {len(pick)} seeds timed, extrapolated to {len(maps)} | "
          f"{captum[0]:.1f} | {captum[1]:.1f} |")
    for label, job in (("after", job_s), ("before", job_regen_s)):
        print(f"| **speed-up** (captum loop / whole command), {label} | **{captum[0] / job[0]:.1f}x** | "
              f"**{captum[1] / job[1]:.1f}x** |")


def stills_run(folder: Path, n: int):
    """A run of n synthetic 48x48 stills (20 subjects' frames, repeated with new subject ids),
    upscaled to 99x99; planted AUs kept; an untrained zhu2019."""
    import cv2

    from interpret.data.faceset import FaceSet
    from interpret.synth import synthetic_faceset

    base = synthetic_faceset(subjects=20, seed=0, size=48)
    big = np.stack([cv2.resize(im, (99, 99), interpolation=cv2.INTER_LINEAR) for im in base.images])
    pick = np.arange(n) % len(base)
    copy = (np.arange(n) // len(base)).astype(str)
    faceset = FaceSet(images=big[pick], landmarks=None,
                      subject=np.char.add(np.char.add(base.subject[pick], "-"), copy),
                      sequence=np.char.add(np.char.add(base.sequence[pick], "-"), copy),
                      frame=np.ones(n, np.int64), emotion=base.emotion[pick], au_intensity=base.au_intensity[pick],
                      paths=np.full(n, ""), emotions=base.emotions, au_codes=base.au_codes, source="synthetic")
    return untrained_run(folder, faceset, "frames")


def memory_child(n: int, permutations: int, bootstrap: int, keep: Path | None) -> dict:
    from interpret.aumap import run_au_map
    from interpret.cache import build_cache

    out = {"n": n}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) if keep is None else keep / str(n)
        folder.mkdir(parents=True, exist_ok=True)
        kept = any(folder.glob("activations/*.h5"))
        run = stills_run(folder, n)
        out["process_mb"] = rss_bytes() / 2**20
        jobs = [("aumap", lambda: run_au_map(run, layer=3, aus="all", permutations=permutations,
                                             bootstrap=bootstrap))]
        if not kept:
            jobs.insert(0, ("cache", lambda: build_cache(run, layer=3)))
        for name, job in jobs:
            base = rss_bytes()
            start, cpu = time.perf_counter(), time.process_time()
            with PeakRSS() as peak:
                job()
            out[f"{name}_s"], out[f"{name}_cpu_s"] = time.perf_counter() - start, time.process_time() - cpu
            out[f"{name}_added_mb"] = (peak.peak - base) / 2**20
            out[f"{name}_peak_mb"] = peak.peak / 2**20
    return out


def memory(sizes: list[int], permutations: int, bootstrap: int, keep: Path | None) -> None:
    print(f"cache (relu3 maxima) and au-map (all planted AUs, {permutations} permutations, {bootstrap} bootstraps) "
          f"on synthetic 48x48 stills, torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}")
    print("| N | process before MB | cache wall s / CPU s | cache CPU s per 1k | cache peak RSS added MB | "
          "au-map wall s / CPU s | au-map CPU s per 1k | au-map peak RSS added MB |")
    print("|---|---|---|---|---|---|---|---|")
    for n in sizes:
        command = [sys.executable, __file__, "--memory-child", str(n), "--permutations", str(permutations),
                   "--bootstrap", str(bootstrap)] + ([] if keep is None else ["--keep", str(keep)])
        result = subprocess.run(command, check=True, env=env(), capture_output=True, text=True)
        r = json.loads(result.stdout.strip().splitlines()[-1])
        cache = (f"{r['cache_s']:.1f} / {r['cache_cpu_s']:.1f} | {r['cache_cpu_s'] / n * 1000:.2f} | "
                 f"{r['cache_added_mb']:.0f}" if "cache_s" in r else "kept | - | -")
        print(f"| {n} | {r['process_mb']:.0f} | {cache} | {r['aumap_s']:.1f} / "
              f"{r['aumap_cpu_s']:.1f} | {r['aumap_cpu_s'] / n * 1000:.2f} | {r['aumap_added_mb']:.0f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--make-run", type=Path)
    parser.add_argument("--run", type=Path)
    parser.add_argument("--part", choices=("startup", "deconv", "memory"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--captum-seeds", type=int, default=64)
    parser.add_argument("--sizes", default="1000,5000,10000")
    parser.add_argument("--permutations", type=int, default=1000)
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--keep", type=Path, help="memory: keep each N's run and cache in KEEP/N and reuse them")
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child is not None:
        print(json.dumps(memory_child(args.memory_child, args.permutations, args.bootstrap, args.keep)))
    elif args.make_run is not None:
        make_run(args.make_run)
    elif args.part == "startup":
        startup(args.run, args.repeat)
    elif args.part == "deconv":
        deconv(args.run, args.captum_seeds, args.repeat)
    elif args.part == "memory":
        memory([int(s) for s in args.sizes.split(",")], args.permutations, args.bootstrap, args.keep)
    else:
        parser.error("give --make-run RUN, or --part")


if __name__ == "__main__":
    main()
