"""Benchmark the AU-map permutation null: vectorised vs a naive per-permutation loop.

A synthetic activation cache of realistic size (CK+-like: sequences of 10–20 frames, the first
neutral, 18 AUs with CK+-like prevalences, 256 sparse ReLU maps) is scored for every AU with
1000 sequence-level permutations. The naive baseline (a Python loop over permutations, each
sorting every map's maxima of S and S^c) runs on a fraction of the permutations in the same
process and is extrapolated; wall and process-CPU seconds are both shown (the CPU figure is
robust to other load on the machine). Prints one markdown table row per cache size.

    python benchmarks/bench_aumap.py [--permutations 1000] [--naive 20] [--sizes 200,800]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from interpret import aumap, stats


def synthetic_cache(n_sequences: int, n_aus: int = 18, n_maps: int = 256, seed: int = 0):
    """(maxima (N, C), aus (N, A), sequence, frame, subject) shaped like a CK+ conv3 cache."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(4, 12, n_sequences)
    seq = np.repeat(np.arange(n_sequences), lengths)
    frame = np.concatenate([np.arange(1, k + 1) for k in lengths])
    prevalence = rng.uniform(0.05, 0.45, n_aus)
    seq_aus = rng.random((n_sequences, n_aus)) < prevalence
    aus = (seq_aus[seq] & (frame > 1)[:, None]).astype(np.uint8)
    maxima = np.maximum(0, rng.normal(-0.2, 1.0, size=(len(seq), n_maps))).astype(np.float32)
    maxima[:, :n_aus] += 1.5 * aus  # one planted detector per AU
    subject = (seq // 3).astype(str)
    return maxima, aus, seq.astype(str), frame, subject


def naive_null(maxima, seq_labels, seq_index, carrier, perms, n, eps):
    """The obvious loop: per permutation, split the images and sort each map's maxima."""
    out = np.empty((len(perms), maxima.shape[1]))
    for p, perm in enumerate(perms):
        labels = seq_labels[perm][seq_index] & carrier
        r = -np.sort(-maxima[labels], axis=0)[:n]
        q = -np.sort(-maxima[~labels], axis=0)[:n]
        k = min(len(r), len(q))
        out[p] = ((r[:k] - q[:k]) * (np.log(r[:k] + eps) - np.log(q[:k] + eps))).sum(axis=0)
    return out


def bench(n_sequences: int, permutations: int, naive_permutations: int, n: int = 9) -> str:
    maxima, aus, seq, frame, subject = synthetic_cache(n_sequences)
    codes = list(range(1, aus.shape[1] + 1))
    start, cpu = time.perf_counter(), time.process_time()
    aumap.au_statistics(maxima, aus, codes, seq, frame, subject, codes, n=n,
                        permutations=permutations, bootstrap=0, seed=0)
    vectorised, vectorised_cpu = time.perf_counter() - start, time.process_time() - cpu

    m64 = maxima.astype(np.float64)
    eps = aumap.epsilon_for(m64)
    seq_index, seq_aus, carrier = aumap.sequence_structure(seq, aus, frame)
    perms = stats.permutations(len(seq_aus), naive_permutations, np.random.default_rng(0))
    start, cpu = time.perf_counter(), time.process_time()
    for a in range(aus.shape[1]):
        naive_null(m64, seq_aus[:, a], seq_index, carrier, perms, n, eps)
    scale = permutations / naive_permutations
    naive, naive_cpu = (time.perf_counter() - start) * scale, (time.process_time() - cpu) * scale

    start = time.perf_counter()
    aumap.au_statistics(maxima, aus, codes, seq, frame, subject, codes, n=n,
                        permutations=0, bootstrap=200, seed=0)
    boot = time.perf_counter() - start
    return (f"| {len(seq)} | {n_sequences} | {aus.shape[1]} | {maxima.shape[1]} | {permutations} | "
            f"{vectorised:.1f} ({vectorised_cpu:.1f}) | "
            f"{naive:.1f} ({naive_cpu:.1f}; from {naive_permutations}) | "
            f"{naive / vectorised:.1f}x ({naive_cpu / vectorised_cpu:.1f}x) | "
            f"{boot:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--permutations", type=int, default=1000)
    parser.add_argument("--naive", type=int, default=20, help="permutations the naive loop runs")
    parser.add_argument("--sizes", default="200,800", help="numbers of sequences")
    args = parser.parse_args()
    print("| images | sequences | AUs | maps | permutations | vectorised s wall (CPU) "
          "| naive s wall (CPU), extrapolated | speed-up wall (CPU) | 200 subject bootstraps s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for size in args.sizes.split(","):
        print(bench(int(size), args.permutations, args.naive), flush=True)


if __name__ == "__main__":
    main()
