"""Paper Tables 4 and 5: the best conv3 map of every AU, beside the AU.

usage: python analyses/paper_tables4_5.py RUN
Writes RUN/analyses/tables4_5.md (best map, D, family-wise p, AUROC, stability, localization) and
RUN/analyses/tables4_5.png (each AU's best map deconvolutions beside its region mask).
"""

import sys
from pathlib import Path

from _shared import aumap_results, image_grid

from interpret import load_run


def main(run_dir: str) -> None:
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    codes = [int(a) for a in run.dataset.faceset.au_codes]
    results = aumap_results(run_dir, codes)
    rows = ["| AU | best map | D | p (family) | AUROC | stability | energy in region / area | verdict |",
            "|---|---|---|---|---|---|---|---|"]
    localized = 0
    for name, r in results.items():
        ratio = (r.get("localization") or {}).get("ratio")
        good = r["p_family"] < 0.05 and r["best_auroc"] > 0.5 and ratio is not None and ratio > 1
        localized += good
        rows.append(f"| {name} | {r['best_map']} | {r['distance'][r['best_map']]:.4g} | {r['p_family']:.3g} | "
                    f"{r['best_auroc']:.3f} | {r['stability'] if r.get('stability') is None else round(r['stability'], 2)} | "
                    f"{'n/a' if ratio is None else f'{ratio:.2f}'} | {'detector in region' if good else 'no'} |")
    out = run_dir / "analyses"
    out.mkdir(parents=True, exist_ok=True)
    (out / "tables4_5.md").write_text("\n".join(rows) + "\n")
    image_grid([(run_dir / "aumap" / f"{name}_best.png", name) for name in results], out / "tables4_5.png", columns=3)
    print("Paper (Zhu et al. Tables 4, 5): best map per AU shown beside the AU, judged by eye.")
    print("\n".join(rows))
    print(f"{localized} of {len(results)} AUs: best map significant (family-wise p < 0.05), firing more with "
          "the AU (AUROC > 0.5) and its deconvolution energy concentrated in the AU region (ratio > 1)")
    print(f"wrote {out / 'tables4_5.md'} and {out / 'tables4_5.png'}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/demo")
