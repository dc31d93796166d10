"""Classification metrics for a run's test set: confusion matrix, per-class P/R/F1, baselines."""

from __future__ import annotations

import numpy as np


def confusion_matrix(targets: np.ndarray, predictions: np.ndarray, n_classes: int) -> np.ndarray:
    """(C, C) int counts; row = true class, column = predicted class."""
    counts = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(counts, (np.asarray(targets), np.asarray(predictions)), 1)
    return counts


def per_class(confusion: np.ndarray, classes) -> dict:
    """{name: {precision, recall, f1, support}}; a ratio with an empty denominator is 0."""
    tp = np.diag(confusion).astype(float)
    predicted, support = confusion.sum(0), confusion.sum(1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                   "support": int(support[i])} for i, name in enumerate(classes)}


def classification_report(targets: np.ndarray, predictions: np.ndarray, train_targets: np.ndarray,
                          classes) -> dict:
    """Accuracy, macro F1, per-class scores, confusion matrix, and the trivial baselines.

    `majority_baseline` is the test accuracy of always predicting the most frequent training
    class; `chance` is 1 / number of classes.
    """
    classes = list(classes)
    targets, predictions = np.asarray(targets), np.asarray(predictions)
    confusion = confusion_matrix(targets, predictions, len(classes))
    scores = per_class(confusion, classes)
    majority = int(np.bincount(np.asarray(train_targets), minlength=len(classes)).argmax())
    present = [s for s in scores.values() if s["support"] > 0]
    return {
        "accuracy": float((targets == predictions).mean()) if len(targets) else 0.0,
        "macro_f1": float(np.mean([s["f1"] for s in present])) if present else 0.0,
        "majority_baseline": {"class": classes[majority],
                              "accuracy": float((targets == majority).mean()) if len(targets) else 0.0},
        "chance": 1.0 / len(classes),
        "per_class": scores,
        "confusion_matrix": confusion.tolist(),
        "classes": classes,
    }


def subject_bootstrap_interval(correct: np.ndarray, subjects: np.ndarray, resamples: int = 2000,
                               level: float = 0.95, seed: int = 0) -> list[float]:
    """Percentile interval of accuracy when the test *subjects* are resampled with replacement
    (images of one person are not independent). [nan, nan] without test images."""
    from interpret.stats import cluster_bootstrap_weights

    correct = np.asarray(correct, dtype=float)
    if correct.size == 0:
        return [float("nan"), float("nan")]
    groups = np.unique(np.asarray(subjects), return_inverse=True)[1]
    weights = cluster_bootstrap_weights(groups, resamples, np.random.default_rng(seed))
    accuracy = (weights @ correct) / np.maximum(weights.sum(axis=1), 1)
    tail = (1 - level) / 2
    return [float(np.quantile(accuracy, tail)), float(np.quantile(accuracy, 1 - tail))]
