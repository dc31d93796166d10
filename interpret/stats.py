"""Vectorised statistics for the AU map: ranks, weighted top-n, permutation p-values, FDR, bootstrap.

Everything works on plain numpy arrays; nothing loops in Python per permutation, resample or map.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def auroc(scores, labels) -> np.ndarray:
    """AUROC of each column of `scores` (N, C) for boolean `labels` (N,).

    P(score of a positive > score of a negative) + ½ P(tie), from average ranks (Mann–Whitney U).
    NaN where either class is empty.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return np.full(scores.shape[1:], np.nan)
    ranks = rankdata(scores, axis=0)
    return (ranks[labels].sum(axis=0) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def benjamini_hochberg(p) -> np.ndarray:
    """Benjamini–Hochberg q-values (step-up FDR adjusted p-values) of a 1-D array."""
    p = np.asarray(p, dtype=np.float64)
    m = p.size
    if m == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)
    q_sorted = np.minimum.accumulate(scaled[::-1])[::-1]
    q = np.empty(m)
    q[order] = np.minimum(q_sorted, 1.0)
    return q


def permutation_pvalues(observed, null) -> np.ndarray:
    """(1 + #{null >= observed}) / (1 + P) along the first axis of `null` (P, ...).

    A relative tolerance of 1e-10 counts numerically equal null values as ties (conservative).
    """
    observed = np.asarray(observed, dtype=np.float64)
    null = np.asarray(null, dtype=np.float64)
    hits = (null >= observed - 1e-10 * np.abs(observed)).sum(axis=0)
    return (1.0 + hits) / (1.0 + null.shape[0])


def permutations(n_items: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """(count, n_items) int array, each row an independent uniform permutation of range(n_items).

    Rows are drawn one after another from `rng`: two calls of count a and b give the rows of one of a + b."""
    rows = np.tile(np.arange(n_items), (count, 1))
    return rng.permuted(rows, axis=1, out=rows)


def cluster_bootstrap_weights(groups, count: int, rng: np.random.Generator) -> np.ndarray:
    """(count, N) multiplicities of N items when whole groups are resampled with replacement.

    `groups` (N,) are integer group ids 0..G-1 (e.g. subjects); each resample draws G groups.
    Resamples are drawn one after another from `rng`, as in `permutations`.
    """
    groups = np.asarray(groups)
    n_groups = int(groups.max()) + 1 if groups.size else 0
    draws = rng.integers(0, n_groups, size=(count, n_groups))
    offsets = (np.arange(count) * n_groups)[:, None]
    per_group = np.bincount((draws + offsets).ravel(), minlength=count * n_groups)
    return per_group.reshape(count, n_groups)[:, groups]


def top_n_weighted(sorted_values, weights, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The n largest members of weighted sets, read off a precomputed descending order.

    sorted_values (C, M): each row in descending order. weights (B, C, M) non-negative ints: how
    many copies of each position belong to set b (0/1 for a subset, multiplicities for a bootstrap).
    Returns top (B, C, n), the k-th largest member value, NaN where the set has fewer than k
    members among the M positions, and found (B, C), the members among the M positions.

    Vectorised: a cumulative sum gives each position's first copy index k0 = cs − w; every
    position with k0 + j < n (j < w) is scattered to slot k0 + j.
    """
    sorted_values = np.asarray(sorted_values)
    B, C, M = weights.shape
    w = weights.reshape(B * C, M)
    cs = np.cumsum(w, axis=1, dtype=np.int32)
    found = cs[:, -1].copy()
    first = cs
    first -= w  # in place: index of each position's first copy
    top = np.full((B * C, n), np.nan)
    rows, cols = np.nonzero((first < n) & (w > 0))
    copies, first = w[rows, cols], first[rows, cols]
    values = sorted_values[rows % C, cols]
    for j in range(int(copies.max(initial=0))):
        keep = (copies > j) & (first + j < n)
        top[rows[keep], first[keep] + j] = values[keep]
    return top.reshape(B, C, n), found.reshape(B, C)
