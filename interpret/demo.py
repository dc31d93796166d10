"""`interpret demo`: the whole pipeline on the embedded synthetic default, end to end.

The network is the paper's, unchanged (256 relu3 maps); the demo is kept within minutes on a
2-core CPU by the data size and the `fast` recipe, not by shrinking the model.
"""

from __future__ import annotations

import time
from pathlib import Path

from interpret.io import write_json

#: Synthetic identities, frame protocol and epoch budget of the demo, sized for <= 10 minutes on
#: 2 CPU cores. Khorrami's protocol (first + last three frames) drops the near-neutral early
#: frames that the paper's protocol labels with the emotion: cleaner labels and shorter epochs
#: (see BENCHMARKS.md for both protocols).
DEMO_SUBJECTS = 100
DEMO_PROTOCOL = "khorrami"
DEMO_EPOCHS = 8
DEMO_SEED = 0
#: `--quick`: a first look in about three minutes (the accuracy is not worth reading).
QUICK = {"subjects": 24, "epochs": 2, "folds": 6, "permutations": 200, "fresh": 12}
#: Measured wall time on a 2-core CPU (BENCHMARKS.md), printed before the demo starts.
EXPECTED = {False: "about 10 minutes", True: "about 3 minutes"}
#: Permutations of `interpret validate` in the demo (the probe's: a tenth of them).
DEMO_VALIDATE_PERMUTATIONS = 200
#: The implant's head refit: on the demo's network (and a 100-identity one) refitting kept no epoch,
#: the replaced maps costing no accuracy (BENCHMARKS.md, tenth session), so the demo saves its 20 s.
DEMO_HEAD_EPOCHS = 0
#: Fresh identities the planted run's truth is checked on (validate's default 100 costs ~12 s more).
DEMO_FRESH_SUBJECTS = 60


def run_demo(out, report_out=None, device: str = "auto", subjects: int = DEMO_SUBJECTS,
             epochs: int = DEMO_EPOCHS, folds: int = 10, protocol: str = DEMO_PROTOCOL,
             permutations: int = 1000, seed: int = DEMO_SEED, fresh: int = DEMO_FRESH_SUBJECTS,
             quick: bool = False) -> Path:
    """Synthesise, train, cache relu3, deconvolve all maps, map every planted AU, sanity-check,
    validate (verdict per AU), plant a detector per AU into a copy of the trained network
    (`interpret implant`) and validate that too (its truth, and every detector found, checked on
    `fresh` new identities), and write both reports; returns the plain run's report index.html.
    `quick` overrides the sizes with `QUICK`. Previous runs in `out` and `out`-planted are replaced."""
    from interpret.aumap import run_au_map
    from interpret.cache import run_cache
    from interpret.deconv import run_deconv
    from interpret.report import write_report
    from interpret.runs import load_run
    from interpret.sanity import run_sanity
    from interpret.implant import implant
    from interpret.training import train
    from interpret.validate import validate

    out = Path(out)
    if quick:
        subjects, epochs, folds, permutations, fresh = (
            QUICK[k] for k in ("subjects", "epochs", "folds", "permutations", "fresh"))
    print(f"[demo] {subjects} synthetic identities, {epochs} epochs: {EXPECTED[quick]} on a 2-core CPU "
          "(less with a GPU)", flush=True)
    timings: dict[str, float] = {}

    def timed(name, func, *args, **kwargs):
        start = time.perf_counter()
        print(f"[demo] {name} ...", flush=True)
        result = func(*args, **kwargs)
        timings[name] = round(time.perf_counter() - start, 2)
        return result

    timed("train", train, data="synthetic", out=out, arch="zhu2019", recipe="fast", epochs=epochs,
          folds=folds, fold=0, split="kfold", protocol=protocol, subjects=subjects, seed=seed, device=device,
          overwrite=True)
    run = timed("load", load_run, out, device=device)
    timed("cache", run_cache, run, layer="relu3")
    timed("deconv", run_deconv, run, layer="relu3", top=9, maps="all")
    timed("au-map", run_au_map, run, aus="all", layer="relu3", n=9, k=9, permutations=permutations, seed=seed)
    timed("sanity", run_sanity, run, layer="relu3", seed=seed)
    checks = dict(controls=(), permutations=min(permutations, DEMO_VALIDATE_PERMUTATIONS),
                  probe_permutations=min(permutations, DEMO_VALIDATE_PERMUTATIONS) // 10, seed=seed)
    plain = timed("validate", validate, run, layer="relu3", fresh=fresh, **checks)
    planted_out = out.parent / f"{out.name}-planted"
    timed("implant", implant, run, planted_out, layer="relu3", seed=seed, head_epochs=DEMO_HEAD_EPOCHS,
          overwrite=True)
    planted_run = timed("load planted", load_run, planted_out, device=device)
    planted = timed("validate planted", validate, planted_run, layer="relu3", fresh=fresh, **checks)
    timed("report planted", write_report, planted_out, None)
    index = timed("report", write_report, out, report_out)
    timings["total"] = round(sum(timings.values()), 2)
    write_json(out / "demo_timing.json", timings)
    print("[demo] seconds per step: " + ", ".join(f"{k} {v}" for k, v in timings.items()), flush=True)
    print(f"[demo] plain run: {plain['summary']}", flush=True)
    truth = planted["planted"]
    print(f"[demo] planted run ({planted_out}): {planted['summary']}; {len(truth['verified'])} of "
          f"{len(truth['maps'])} planted maps are detectors on {truth['truth']}; of them at top-1: " +
          (", ".join(f"{m} {r['top1']:.0%}" for m, r in truth["recovery_verified"].items()) or "none to score") +
          (f"; {len(truth['unambiguous'])} the sole right answer (clearly better than the five best other maps), "
           "at top-1: " + (", ".join(f"{m} {r['top1']:.0%}" for m, r in truth["recovery_unambiguous"].items())
                           or "none to score")
           if "unambiguous" in truth else ""), flush=True)
    return Path(index)
