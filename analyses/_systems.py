"""Helpers of the seed-system recipes: a run's evaluation and the side-by-side printout."""

from __future__ import annotations

from interpret.systems.evaluation import evaluate_run


def evaluation(run_dir, split: str = "test", tta: str = "none") -> dict:
    """The run's own metrics on `split` (written to RUN/evaluation.json as a side effect)."""
    return evaluate_run(run_dir, split=split, tta=tta)


def side_by_side(rows, title: str) -> None:
    """Print (quantity, paper, ours, note) rows as an aligned table."""
    print(title)
    header = ("quantity", "paper", "ours", "note")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        print("  " + "  ".join(str(v).ljust(w) for v, w in zip(row, widths)))


def pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"
