"""`interpret compare`: runs on the same classes side by side, as seed 003's Table 3 (per-class
recognition rates, i.e. recall, in %) plus overall accuracy, macro recall and (valence runs)
RMSE; written as `compare.csv`, `compare.md` and a grouped bar plot `compare.png`."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from interpret.errors import InterpretError
from interpret.io import atomic_path, write_text
from interpret.systems.evaluation import latest_evaluation


def compare_runs(runs, out) -> Path:
    """Write the comparison of `runs` (their latest evaluations) to folder `out`; returns it."""
    runs = [Path(r) for r in runs]
    if len(runs) < 2:
        raise InterpretError("compare needs at least two runs")
    entries = [latest_evaluation(r) for r in runs]
    classes = entries[0]["classes"]
    for run, entry in zip(runs[1:], entries[1:]):
        if entry["classes"] != classes:
            raise InterpretError(f"{run}: classes {', '.join(entry['classes'])} differ from {runs[0]}'s "
                                 f"{', '.join(classes)}; compare needs runs on the same classes")
    names = _labels(runs)
    header = ["run", "arch", "split", "tta", *classes, "overall", "macro recall"]
    rows = []
    for name, entry in zip(names, entries):
        rates = [100 * entry["recognition_rate"][c] for c in classes]
        rows.append([name, entry["arch"], entry["split"], entry["tta"], *rates, 100 * entry["accuracy"],
                     100 * entry["macro_recall"]])
    has_valence = all("valence" in e for e in entries)
    if has_valence:
        header.append("valence RMSE")
        for row, entry in zip(rows, entries):
            row.append(entry["valence"]["rmse"])
    out = Path(out)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([[_fmt(v) for v in row] for row in rows])
    write_text(out / "compare.csv", buffer.getvalue())
    lines = ["Per-class recognition rate (recall, %), overall accuracy and macro recall (%) of each run "
             "on its evaluated split.", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    write_text(out / "compare.md", "\n".join(lines) + "\n")
    _plot(out / "compare.png", names, classes, rows)
    return out


def _labels(runs) -> list[str]:
    names = [r.name for r in runs]
    return names if len(set(names)) == len(names) else [str(r) for r in runs]


def _fmt(value) -> str:
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def _plot(path: Path, names, classes, rows) -> None:
    from matplotlib.figure import Figure  # no pyplot, no backend switch: the figure renders itself

    groups = [*classes, "overall"]
    figure = Figure(figsize=(max(6, 1.1 * len(groups) * max(1, len(names)) / 2), 4))
    axes = figure.add_subplot()
    width = 0.8 / len(names)
    for i, (name, row) in enumerate(zip(names, rows)):
        values = row[4:4 + len(classes)] + [row[4 + len(classes)]]
        axes.bar([g + i * width for g in range(len(groups))], values, width, label=name)
    axes.set_xticks([g + 0.4 - width / 2 for g in range(len(groups))], groups)
    axes.set_ylabel("recognition rate (%)")
    axes.set_ylim(0, 100)
    axes.legend(fontsize=8)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
