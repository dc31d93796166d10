"""Training figures: learning curves and the test confusion matrix (matplotlib figures, no pyplot; atomic)."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from interpret.io import atomic_path


def _save(fig, path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def plot_curves(history: list[dict], best_epoch: int, path) -> None:
    """Loss and accuracy per epoch, train vs validation, with the kept (best) epoch marked."""
    epochs = [row["epoch"] for row in history]
    fig = Figure(figsize=(10, 3.8))
    axes = fig.subplots(1, 2)
    for ax, key, label in ((axes[0], "loss", "cross-entropy"), (axes[1], "acc", "accuracy")):
        ax.plot(epochs, [row[f"train_{key}"] for row in history], "o-", ms=3, label="train (augmented)")
        ax.plot(epochs, [row[f"val_{key}"] for row in history], "o-", ms=3, label="validation")
        ax.axvline(best_epoch, color="grey", ls=":", label=f"kept: epoch {best_epoch}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[1].set_ylim(0, 1)
    axes[1].legend(loc="lower right", fontsize=8)
    _save(fig, path)


def plot_confusion(confusion, classes, path, title: str) -> None:
    """Row-normalised confusion matrix (true class per row) with the raw counts written in."""
    counts = np.asarray(confusion)
    rows = counts.sum(1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
    n = len(classes)
    fig = Figure(figsize=(1.0 + 0.7 * n, 0.8 + 0.65 * n))
    ax = fig.subplots()
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if share[i, j] > 0.6 else "black")
    ax.set_xticks(range(n), classes, rotation=45, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    _save(fig, path)
