"""Scores the seed systems report: per-class P/R/F1 with macro and weighted averages (labelled
as such), per-class recognition rates (recall, seed 003's Table 3), valence errors (seed 000)."""

from __future__ import annotations

import numpy as np

from interpret.metrics import classification_report
from interpret.systems.valence import level_valence


def class_report(targets, predictions, train_targets, classes) -> dict:
    """`metrics.classification_report` plus `macro_*` (unweighted mean over classes present in
    the targets) and `weighted_*` (weighted by support) precision, recall and F1, and the
    per-class recognition rate (= recall) as `recognition_rate`."""
    classes = list(classes)
    report = classification_report(np.asarray(targets), np.asarray(predictions), np.asarray(train_targets), classes)
    support = np.array([report["per_class"][c]["support"] for c in classes], float)
    weights = support / support.sum() if support.sum() else support
    for name in ("precision", "recall", "f1"):
        values = np.array([report["per_class"][c][name] for c in classes])
        report[f"macro_{name}"] = float(values[support > 0].mean()) if np.any(support > 0) else 0.0
        report[f"weighted_{name}"] = float((values * weights).sum())
    report["recognition_rate"] = {c: report["per_class"][c]["recall"] for c in classes}
    report["samples"] = int(len(targets))
    return report


def valence_report(levels_true, v_pred, levels_train, mapping: str) -> dict:
    """MAE and RMSE of predicted valence against the labels' valence (level - 5) / 4, beside the
    constant prediction of the most frequent training level's valence."""
    v_true = level_valence(levels_true)
    v_pred = np.asarray(v_pred, dtype=float)
    majority = int(np.bincount(np.asarray(levels_train)).argmax())
    constant = np.full_like(v_true, level_valence(majority))
    return {
        "valence_map": mapping,
        "mae": float(np.abs(v_pred - v_true).mean()),
        "rmse": float(np.sqrt(((v_pred - v_true) ** 2).mean())),
        "majority_level": majority,
        "majority_rmse": float(np.sqrt(((constant - v_true) ** 2).mean())),
    }


def attainable(rate_percent: float, count: int, decimals: int = 1) -> bool:
    """Whether some k of `count` images gives `rate_percent` when rounded to `decimals` places
    (SEEDS.md §4.6: 95.2% of 369 is not: 351/369 = 95.12%, 352/369 = 95.39%)."""
    step = 10.0 ** -decimals
    k = round(rate_percent / 100 * count)
    return any(0 <= j <= count and abs(100 * j / count - rate_percent) <= step / 2 + 1e-9 for j in (k - 1, k, k + 1))
