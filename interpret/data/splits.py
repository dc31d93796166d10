"""Splits: subject-grouped k-fold (the default) and the paper's subject-overlapping split."""

from __future__ import annotations

import numpy as np

from interpret.errors import InterpretError

SPLITS = ("kfold", "paper")


def subject_folds(subjects: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold number per row; every subject in exactly one fold, folds balanced by row count.

    Subjects are shuffled with `seed`, then each goes (largest first) to the fold with the fewest rows.
    """
    names, counts = np.unique(subjects, return_counts=True)
    if len(names) < folds:
        raise InterpretError(f"{folds} subject-grouped folds need at least {folds} subjects; data has {len(names)}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(names))
    order = order[np.argsort(-counts[order], kind="stable")]
    load = np.zeros(folds, np.int64)
    fold_of = np.empty(len(names), np.int64)
    for i in order:
        fold_of[i] = int(np.argmin(load))
        load[fold_of[i]] += counts[i]
    return fold_of[np.searchsorted(names, subjects)]


def assign_split(subjects: np.ndarray, kind: str = "kfold", folds: int = 10, fold: int = 0,
                 seed: int = 0, val_folds: int = 1, n_test: int = 200) -> np.ndarray:
    """'train' / 'val' / 'test' per row.

    kfold: fold `fold` is the test set, the next `val_folds` folds (cyclically) hold the
    validation subjects for early stopping; no subject is in two parts.
    paper: `n_test` random rows are the test set and 10% of the rest validation, subjects
    overlap between parts (the paper's protocol; it leaks identities and near-duplicate frames).
    """
    n = len(subjects)
    split = np.full(n, "train", dtype="<U5")
    if kind == "kfold":
        if not 0 <= fold < folds:
            raise InterpretError(f"--fold must be in 0..{folds - 1}, got {fold}")
        fold_of = subject_folds(subjects, folds, seed)
        split[np.isin(fold_of, [(fold + 1 + v) % folds for v in range(val_folds)])] = "val"
        split[fold_of == fold] = "test"
    elif kind == "paper":
        if n_test >= n:
            raise InterpretError(f"paper split wants {n_test} test images but the data has {n}")
        order = np.random.default_rng(seed).permutation(n)
        split[order[:n_test]] = "test"
        split[order[n_test:n_test + max(1, (n - n_test) // 10)]] = "val"
    else:
        raise InterpretError(f"unknown split {kind!r}; choose one of {', '.join(SPLITS)}")
    return split
