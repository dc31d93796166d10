"""Paper Figures 5 and 6: the AU distance over the 256 conv3 maps for AU1, AU4, AU11 and AU27.

usage: python analyses/paper_figures5_6.py RUN
Writes RUN/analyses/figures5_6.png. The paper names map 113 (1-based) for AU1; map numbers are
arbitrary across trainings, so what can be compared is whether one map stands out.
"""

import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from _shared import aumap_results, best_line, save_figure

PAPER_AUS = (1, 4, 11, 27)


def main(run_dir: str) -> None:
    run_dir = Path(run_dir)
    results = aumap_results(run_dir, PAPER_AUS)
    if not results:
        sys.exit(f"{run_dir}: none of AU1, AU4, AU11, AU27 is labelled in this data")
    fig, axes = plt.subplots(len(results), 1, figsize=(8, 2.4 * len(results)), squeeze=False)
    print("Paper (Zhu et al. Figs. 5, 6): one map peaks per AU; AU1 -> map 113 (1-based). Ours:")
    for ax, (name, r) in zip(axes[:, 0], results.items()):
        d = np.asarray(r["distance"])
        best = r["best_map"]
        second = np.sort(d)[-2]
        ax.bar(np.arange(len(d)), d, width=1.0, color="0.5")
        ax.bar([best], [d[best]], width=1.5, color="crimson")
        if r.get("null_max_95") is not None:
            ax.axhline(r["null_max_95"], color="k", ls="--", lw=0.8, label="95% of permutation max")
            ax.legend(fontsize=7, loc="upper right")
        ax.set_title(f"{name}: best map {best}, D={d[best]:.3g}, next {second:.3g}, p_family={r['p_family']:.3g}",
                     fontsize=9)
        ax.set_xlabel("relu3 map (the paper's conv3)")
        ax.set_ylabel("D")
        print(f"  {best_line(r)}; best/second = {d[best] / second:.2f}" if second > 0 else f"  {best_line(r)}")
    missing = [f"AU{a:02d}" for a in PAPER_AUS if f"AU{a:02d}" not in results]
    if missing:
        print(f"  not labelled in this data: {', '.join(missing)}")
    fig.tight_layout()
    save_figure(fig, run_dir / "analyses" / "figures5_6.png")
    print(f"wrote {run_dir / 'analyses' / 'figures5_6.png'}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/demo")
