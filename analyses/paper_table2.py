"""Paper Table 2: conv3 maps whose deconvolutions resemble AUs (the paper shows AU1, 16, 6, 26, 2, 27).

usage: python analyses/paper_table2.py RUN
Writes RUN/analyses/table2.png (each AU's best map: receptive-field patches over deconvolutions)
and RUN/analyses/table2.md.
"""

import sys
from pathlib import Path

from _shared import aumap_results, best_line, image_grid

from interpret import load_run
from interpret.deconv import run_deconv

PAPER_AUS = (1, 16, 6, 26, 2, 27)


def main(run_dir: str) -> None:
    run_dir = Path(run_dir)
    results = aumap_results(run_dir, PAPER_AUS)
    sheets = run_dir / "deconv" / "relu3"
    if not all((sheets / f"map_{r['best_map']:03d}.png").is_file() for r in results.values()):
        run_deconv(load_run(run_dir), layer="relu3", top=9, maps=",".join(str(r["best_map"]) for r in results.values()))
    out = run_dir / "analyses"
    image_grid([(sheets / f"map_{r['best_map']:03d}.png", f"{name}: map {r['best_map']}")
                for name, r in results.items()], out / "table2.png", columns=1)
    lines = ["| AU | best map | D | p (family) | AUROC | localization ratio |", "|---|---|---|---|---|---|"]
    for name, r in results.items():
        loc = (r.get("localization") or {}).get("ratio")
        lines.append(f"| {name} | {r['best_map']} | {r['distance'][r['best_map']]:.4g} | {r['p_family']:.3g} | "
                     f"{r['best_auroc']:.3f} | {'n/a' if loc is None else f'{loc:.2f}'} |")
    (out / "table2.md").write_text("\n".join(lines) + "\n")
    absent = [f"AU{a:02d}" for a in PAPER_AUS if f"AU{a:02d}" not in results]
    print("Paper (Zhu et al. Table 2): maps whose deconvolutions 'resemble' AU1, AU16, AU6, AU26, AU2, AU27,")
    print("chosen by eye; no statistic is given. Ours, chosen by the distance and tested:")
    for r in results.values():
        print("  " + best_line(r))
    if absent:
        print(f"  not labelled in this data: {', '.join(absent)}")
    print(f"wrote {out / 'table2.png'} and {out / 'table2.md'}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/demo")
