"""Helpers shared by the analysis recipes: load a run's AU-map results, computing what is missing."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from interpret import load_run  # noqa: E402
from interpret.aumap import run_au_map  # noqa: E402
from interpret.facs import au_name  # noqa: E402
from interpret.io import atomic_path  # noqa: E402


def aumap_results(run_dir, codes, permutations: int = 1000) -> dict:
    """{'AU01': result} for the AUs of `codes` the run's data labels; runs `run_au_map` on relu3 (the
    paper's conv3) for missing ones."""
    run = load_run(run_dir)
    labelled = set(int(a) for a in run.dataset.faceset.au_codes[run.dataset.au_presence.any(0)])
    wanted = [c for c in codes if c in labelled]
    folder = Path(run_dir) / "aumap"
    missing = [c for c in wanted if not (folder / f"{au_name(c)}.json").is_file()]
    if missing:
        run_au_map(run, layer="relu3", aus=",".join(map(str, missing)), permutations=permutations)
    return {au_name(c): json.loads((folder / f"{au_name(c)}.json").read_text()) for c in wanted}


def save_figure(fig, path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def image_grid(paths_and_titles, path, columns: int = 2) -> None:
    """Stack existing PNGs with titles into one figure."""
    rows = -(-len(paths_and_titles) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(6 * columns, 3.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (png, title) in zip(axes.flat, paths_and_titles):
        ax.imshow(plt.imread(png), cmap="gray")
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def best_line(res: dict) -> str:
    loc = res.get("localization") or {}
    ratio = "n/a" if loc.get("ratio") is None else f"{loc['ratio']:.2f}"
    return (f"{res['au']}: map {res['best_map']} (1-based {res['best_map'] + 1}), D={res['distance'][res['best_map']]:.4g}, "
            f"p_family={res['p_family']:.3g}, AUROC={res['best_auroc']:.3f}, "
            f"stability={res['stability'] if res.get('stability') is None else round(res['stability'], 2)}, "
            f"localization ratio={ratio}")
