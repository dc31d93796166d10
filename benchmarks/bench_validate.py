"""Benchmark all mapping methods with their permutation null (`interpret.validate.map_layer`).

A synthetic CK+-sized activation cache (18 AUs x 256 maps, sequences of 4–11 frames) with
NetDissect counts of realistic shape is scored by every method (paper and directional
distance, AUROC, partial effect, IoU, sparse probe) with 1000 sequence-level permutations (probe: 40 refits);
the baseline, in the same process, is the paper's distance alone with the same null
(`aumap.au_statistics`, no bootstrap). Wall and process-CPU seconds are printed (CPU is robust to
other load on the machine); the goal is all methods in < 60 s after the cache exists.

    python benchmarks/bench_validate.py [--sequences 170] [--permutations 1000] [--probe 40]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from interpret import aumap
from interpret.validate import map_layer


def synthetic(n_sequences: int, n_aus: int = 18, n_maps: int = 256, seed: int = 0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(4, 12, n_sequences)
    seq = np.repeat(np.arange(n_sequences), lengths)
    frame = np.concatenate([np.arange(1, k + 1) for k in lengths])
    seq_aus = rng.random((n_sequences, n_aus)) < rng.uniform(0.05, 0.45, n_aus)
    aus = (seq_aus[seq] & (frame > 1)[:, None]).astype(np.uint8)
    maxima = np.maximum(0, rng.normal(-0.2, 1.0, size=(len(seq), n_maps)))
    maxima[:, :n_aus] += 1.5 * aus
    pixels = 96 * 96
    area = rng.uniform(0.05, 0.2, (len(seq), n_aus)) * pixels
    fired = rng.poisson(0.005 * pixels, (len(seq), n_maps)).astype(np.float64)
    inter = np.minimum(fired[:, None, :], area[:, :, None]) * rng.uniform(0, 0.3, (len(seq), n_aus, n_maps))
    return maxima, aus, seq.astype(str), frame, (seq // 3).astype(str), (inter, fired, area), pixels


def timed(func):
    wall, cpu = time.perf_counter(), time.process_time()
    func()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=170)
    parser.add_argument("--permutations", type=int, default=1000)
    parser.add_argument("--probe", type=int, default=40)
    args = parser.parse_args()
    maxima, aus, seq, frame, subject, counts, pixels = synthetic(args.sequences)
    codes = list(range(1, aus.shape[1] + 1))
    base = timed(lambda: aumap.au_statistics(maxima, aus, codes, seq, frame, subject, codes,
                                             permutations=args.permutations, bootstrap=0))
    full = timed(lambda: map_layer(maxima, aus, codes, seq, frame, subject, counts=counts, pixels=pixels,
                                   permutations=args.permutations, probe_permutations=args.probe))
    print(f"| {len(maxima)} images x {maxima.shape[1]} maps x {aus.shape[1]} AUs, {args.permutations} permutations "
          f"(probe {args.probe}) | paper distance alone: {base[0]:.1f} s wall / {base[1]:.1f} s CPU | "
          f"every method: {full[0]:.1f} s wall / {full[1]:.1f} s CPU | ratio {full[1] / base[1]:.2f} (CPU) |")


if __name__ == "__main__":
    main()
