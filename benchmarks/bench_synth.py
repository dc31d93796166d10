"""Benchmark the synthetic data set: frames per second of generation and of the cropped FaceSet.

Runs in this process on one core (OpenCV threads pinned to 1); prints one line per stage, with
wall-clock and CPU-time rates (the latter is robust to other load on the machine).

    python benchmarks/bench_synth.py [--subjects 40] [--seed 0] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from interpret.synth import generate_sequences, synthetic_faceset  # noqa: E402
from interpret.synth.render import FRAME  # noqa: E402


def _best(fn, repeat: int) -> tuple[float, float, int]:
    """Best wall-clock and CPU seconds over `repeat` runs, and what `fn` counted."""
    wall, cpu, n = float("inf"), float("inf"), 0
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        n = fn()
        wall = min(wall, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - start_cpu)
    return wall, cpu, n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    gen, gen_cpu, n = _best(lambda: sum(len(s.frames) for s in generate_sequences(args.subjects, args.seed)),
                            args.repeat)
    print(f"generate_sequences({args.subjects}): {n} frames of {FRAME[0]}x{FRAME[1]}: "
          f"{n / gen:.0f} frames/s wall, {n / gen_cpu:.0f} frames per CPU-second")
    crop, crop_cpu, n = _best(lambda: len(synthetic_faceset(args.subjects, args.seed)), args.repeat)
    print(f"synthetic_faceset({args.subjects}) incl. 99x99 crops: {n} frames: "
          f"{n / crop:.0f} frames/s wall, {n / crop_cpu:.0f} frames per CPU-second")

if __name__ == "__main__":
    main()
