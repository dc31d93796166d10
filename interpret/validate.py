"""`interpret validate`: every mapping method on a run, its negative controls and (if planted) its truth.

For the run's analysed layer (`cache_arrays`, the one adapter to the activation cache) every
method of `interpret.methods` scores (AU x map); each winner gets a family-wise p from
sequence-level permutations and a BH q across AUs (`map_layer`); candidate maps get their
localization, co-occurrence check and ablation effect; `interpret.verdict` turns each AU's record
into one line, and on the synthetic default every "detector found" must replicate on new
identities (`replicate_found`). Negative controls (untrained weights, rotated channel basis, and
a run trained on shuffled labels if given) go through the same `map_layer` and replication: the
share of AUs whose winner is significant is each method's false-positive rate, the share found
the verdict's. A planted run (`interpret.planting`) adds each method's top-1 / top-5 recovery of
the planted maps. Everything lands in ``RUN/validate/``.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from interpret import methods, stats
from interpret.aumap import cooccurrence
from interpret.controls import random_rotation, rotate, untrained_model
from interpret.errors import InterpretError
from interpret.facs import au_name
from interpret.io import atomic_path, write_json, write_text
from interpret.layers import resolve_layer
from interpret.planting import planted_maps
from interpret.truth import (CHALLENGERS, FRESH_SUBJECTS, OUTDONE_SHARE, fresh_config, fresh_dataset,
                             fresh_truth, replicate)
from interpret.verdict import ALPHA, DETECTOR_AUROC, summary, verdict

log = logging.getLogger(__name__)

#: Random maps ablated per AU as the causal check's reference, and AU-present images used.
CAUSAL_RANDOM_MAPS = 8
CAUSAL_IMAGES = 12


def cache_arrays(run, layer, quantile: float = methods.IOU_QUANTILE) -> dict:
    """Per-image maxima and labels of `layer` (a name or declared number) from the run's activation
    cache, and each map's top-`quantile` threshold where the cache holds it (else None)."""
    from interpret.cache import open_cache

    cache = open_cache(run, resolve_layer(run.model, layer))
    keys = ("max", "aus", "au_codes", "subject", "sequence", "frame", "split")
    return {**{key: np.asarray(getattr(cache, key)) for key in keys}, "thresholds": cache.thresholds(quantile)}


# ---------------------------------------------------------------- streaming a layer


def scan_layer(model, layer, dataset, quantile: float = methods.IOU_QUANTILE, transform=None,
               iou: bool = True, batch_size: int = 32, cached: dict | None = None) -> dict:
    """Per-image maxima (N, C) of a layer's maps (after `transform`, e.g. a rotation) and, with
    `iou`, the NetDissect counts: pass 1 finds each map's top-quantile threshold, pass 2 counts
    (without, one pass and no thresholds).
    `cached`: `cache_arrays` of this model and layer; where it holds the thresholds, pass 1 is
    skipped (its maxima and thresholds are the cache's)."""
    transform = transform or (lambda act: act)
    n = len(dataset)

    def maps():
        for act in methods.stream_layer(model, layer, dataset.images, n, batch_size):
            yield transform(act.float().cpu())

    if cached is not None and cached.get("thresholds") is not None:
        found, thresholds = np.asarray(cached["max"], dtype=np.float64), cached["thresholds"]
    elif not iou:
        found, thresholds = np.concatenate([act.amax(dim=(2, 3)).numpy() for act in maps()]).astype(np.float64), None
    else:
        maxima = []

        def with_maxima():
            for act in maps():
                maxima.append(act.amax(dim=(2, 3)).numpy())
                yield act

        thresholds = methods.quantile_thresholds(with_maxima(), n, quantile)
        found = np.concatenate(maxima).astype(np.float64)
    out = {"max": found, "thresholds": thresholds, "counts": None,
           "quantile": quantile, "pixels": dataset.spec.size ** 2}
    fs = dataset.faceset
    if iou and fs.landmarks is not None:
        acc = methods.IoUAccumulator(thresholds)
        start = 0
        for act in maps():
            stop = start + len(act)
            acc.update(act, methods.region_masks(fs.landmarks[start:stop], fs.au_codes, fs.images.shape[-1],
                                                 dataset.spec))
            start = stop
        out["counts"] = acc.arrays()
    return out


# ---------------------------------------------------------------- all methods on one layer


def map_layer(maxima, presence, au_codes, sequence, frame, subject, counts=None, pixels: int = 0, n: int = 9,
              permutations: int = 1000, probe_permutations: int = 40, seed: int = 0,
              localize: dict[str, int] | None = None) -> list[dict]:
    """One record per usable AU: each method's scores, winner, top 5, family-wise p and BH q
    across AUs, and the localization and co-occurrence check of every method's winner. `counts`:
    the NetDissect counts of `scan_layer` on network inputs of `pixels` pixels (no IoU without);
    `localize` {AU: map} adds maps (e.g. planted ones) to those localized."""
    maxima = np.asarray(maxima, dtype=np.float64)
    presence = np.asarray(presence).astype(bool)
    au_codes = [int(c) for c in au_codes]
    usable = [a for a in range(len(au_codes)) if 0 < presence[:, a].sum() < len(presence)]
    pres = presence[:, usable]
    shared = methods.SharedMaxima(maxima)
    paper, directional = shared.distance_scores(pres, n)
    auroc = shared.auroc_scores(pres)
    effects = shared.partial_scores(presence)  # (all AUs, C), in SDs of each map's maxima
    probe = methods.probe_scores(maxima, pres, subject, seed=seed)
    scores = {"distance": paper, "directional": directional, "auroc": auroc, "partial": effects[usable],
              "probe": probe["coef"]}
    loc = None
    if counts is not None:
        inter, fired, area = counts
        loc = methods.iou_scores((inter[:, usable], fired, area[:, usable]), pres)
        scores["iou"] = loc["iou"]
    _, seq_index = np.unique(np.asarray(sequence).astype(str), return_inverse=True)
    n_seq = int(seq_index.max()) + 1
    counts_co, _ = cooccurrence(presence)
    records = []
    for i, a in enumerate(usable):
        code = au_codes[a]
        perms = stats.permutations(n_seq, permutations, np.random.default_rng([seed, code, 0]))
        null = methods.permutation_null(maxima, presence, sequence, frame, a, perms, n=n,
                                        iou_counts=counts, probe_permutations=probe_permutations, inputs=shared)
        record = {"au": au_name(code), "au_code": code, "n_present": int(pres[:, i].sum()),
                  "probe_cv_auroc": float(probe["cv_auroc"][i]), "distance_floor": shared.ranked.floor, "methods": {}}
        for name, table in scores.items():
            row = np.nan_to_num(table[i], nan=-np.inf)
            winner = int(np.argmax(row))
            record["methods"][name] = {
                "winner": winner, "score": float(table[i][winner]),
                "p_family": methods.family_p(table[i][winner], null.get(name, [])),
                "top5": [int(m) for m in np.argsort(-row, kind="stable")[:5]],
                "auroc": float(auroc[i, winner]),
                "scores": [float(v) for v in table[i]],
            }
        candidates = sorted({m["winner"] for m in record["methods"].values()})
        record["localization"] = {}
        if loc is not None:
            total = float(pres[:, i].sum()) * pixels
            for m in sorted(set(candidates) | ({(localize or {})[au_name(code)]} if au_name(code) in (localize or {}) else set())):
                share = loc["inside_share"][i, m]
                record["localization"][str(m)] = {
                    "iou": float(loc["iou"][i, m]),
                    "inside_share": None if not np.isfinite(share) else float(share),
                    "area_share": float(loc["mask_pixels"][i] / total) if total else None}
        record["confound"] = {str(m): _confound(maxima[:, m], effects[:, m], presence, a, au_codes, counts_co)
                              for m in candidates}
        records.append(record)
    for name in scores:
        q = stats.benjamini_hochberg([r["methods"][name]["p_family"] for r in records])
        for r, value in zip(records, q):
            r["methods"][name]["q"] = float(value)
    return records


def _confound(column, effect, presence, a, au_codes, counts_co, minimum: int = 5) -> dict | None:
    """The co-occurring AU B that best explains the map besides this one, and the map's AUROC for
    this AU without B and for B without this AU. B is chosen by the map's partial effects `effect`
    (A,) (`methods.partial_scores`), so that an AU which merely co-occurs with the real driver (a chain
    through a third AU) is not taken for it. Candidates: AUs seen with this one, with at least
    `minimum` images of this-without-B, B-without-this and neither. None when there is none."""
    A = presence[:, a]
    usable = [b for b in np.flatnonzero(counts_co[a] > 0) if b != a and min(
        (A & ~presence[:, b]).sum(), (presence[:, b] & ~A).sum(), (~A & ~presence[:, b]).sum()) >= minimum]
    if not usable:
        return None
    b = max(usable, key=lambda j: effect[j])
    B = presence[:, b]
    neither = ~A & ~B
    this = stats.auroc(column[A & ~B | neither, None], (A & ~B)[A & ~B | neither])[0]
    other = stats.auroc(column[B & ~A | neither, None], (B & ~A)[B & ~A | neither])[0]
    return {"other_au": au_name(au_codes[b]), "auroc_this_without_other": float(this),
            "auroc_other_without_this": float(other), "partial_effect_this": float(effect[a]),
            "partial_effect_other": float(effect[b])}


# ---------------------------------------------------------------- causal check


def causal_check(model, layer, dataset, records, presence_all, au_codes, maxima, seed: int = 0,
                 images: int = CAUSAL_IMAGES, random_maps: int = CAUSAL_RANDOM_MAPS) -> None:
    """Add `causal` to each record: per method winner, the emotion-logit drop when it is zeroed
    (`methods.ablation_drops`) on up to `images` AU-present images (seeded), against `random_maps` random maps
    ablated on the same images; and the AU probe's logit drop, exact from the maxima (zeroing a
    map zeroes its maximum; the probe is linear in the standardized maxima)."""
    presence_all = np.asarray(presence_all).astype(bool)
    _, mean, std = methods.standardize(maxima)
    n_maps = maxima.shape[1]
    for record in records:
        a = [int(c) for c in au_codes].index(record["au_code"])
        rng = np.random.default_rng([seed, record["au_code"], 2])
        rows = np.flatnonzero(presence_all[:, a])
        rows = np.sort(rng.choice(rows, size=min(images, len(rows)), replace=False))
        candidates = sorted({m["winner"] for m in record["methods"].values()})
        others = np.setdiff1d(np.arange(n_maps), candidates)
        randoms = sorted(int(m) for m in rng.choice(others, size=min(random_maps, len(others)), replace=False))
        x = dataset.rows(rows).to(next(model.parameters()).device)
        drops, _ = methods.ablation_drops(model, layer, x, candidates + randoms)
        mean_drop = drops.mean(axis=1)
        random_drops = [float(d) for d in mean_drop[len(candidates):]]
        coef = np.asarray(record["methods"]["probe"]["scores"])
        probe_drop = coef * maxima[rows].mean(axis=0) / std
        record["causal"] = {
            str(m): {"emotion_drop": float(mean_drop[j]), "random_drops": random_drops,
                     "exceeds_random": bool(random_drops) and float(mean_drop[j]) > max(random_drops),
                     "probe_drop": float(probe_drop[m]),
                     "probe_drop_random": [float(probe_drop[r]) for r in randoms]}
            for j, m in enumerate(candidates)}
        record["causal_setup"] = {"images": len(rows), "random_maps": randoms,
                                  "emotion_drop": "intact top logit minus its ablated value, mean over images"}


# ---------------------------------------------------------------- summaries


def false_positive_rates(records, alpha: float = ALPHA) -> dict:
    """Per method, the share of AUs whose winner has family-wise p < alpha (and q < alpha)."""
    out = {}
    for name in methods.METHODS:
        rows = [r["methods"][name] for r in records if name in r["methods"]]
        if rows:
            out[name] = {"p": float(np.mean([m["p_family"] < alpha for m in rows])),
                         "q": float(np.mean([m["q"] < alpha for m in rows])), "aus": len(rows)}
    return out


def recovery(records, planted: dict[str, int]) -> dict:
    """Per method, the share of planted AUs whose planted map is its top-1 / in its top-5, and the ranks."""
    out = {}
    by_au = {r["au"]: r for r in records}
    aus = [au for au in planted if au in by_au]
    for name in methods.METHODS:
        ranks = {}
        for au in aus:
            info = by_au[au]["methods"].get(name)
            if info is None:
                continue
            scores = np.nan_to_num(np.asarray(info["scores"]), nan=-np.inf)
            ranks[au] = int((scores > scores[planted[au]]).sum()) + 1
        if ranks:
            out[name] = {"top1": float(np.mean([r == 1 for r in ranks.values()])),
                         "top5": float(np.mean([r <= 5 for r in ranks.values()])), "ranks": ranks}
    return out


def agreement(records) -> dict:
    """Pairwise: share of AUs where two methods name the same winner; mean Spearman of their scores."""
    names = [m for m in methods.METHODS if all(m in r["methods"] for r in records)]
    same, rho = {}, {}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            key = f"{a}|{b}"
            same[key] = float(np.mean([r["methods"][a]["winner"] == r["methods"][b]["winner"] for r in records]))
            values = [spearmanr(r["methods"][a]["scores"], r["methods"][b]["scores"]).statistic for r in records
                      if np.ptp(r["methods"][a]["scores"]) > 0 and np.ptp(r["methods"][b]["scores"]) > 0]
            rho[key] = float(np.nanmean(values)) if values else None
    return {"methods": names, "same_winner": same, "spearman": rho}


def planted_check(maxima, presence, au_codes, split, planted: dict[str, int]) -> dict:
    """Per planted AU, on held-out (validation + test) subjects: the AUROC of its planted map's
    maxima, the best AUROC of any other map (a natural detector the planted one must beat to be
    first), and whether the planted map is a detector (AUROC >= `DETECTOR_AUROC`); beside them
    the planted map's AUROC on the training images (low there too: the planting did not take), and
    `train_choice`: the map AUROC names on the training images alone, with its held-out AUROC (a
    recovery free of selection bias: `validate`'s methods choose on every image)."""
    return _detectors(split_aurocs(maxima, presence, au_codes, split, planted), planted)


def _detectors(table: dict[str, tuple], planted: dict[str, int]) -> dict:
    """`planted_check` from the planted AUs' `split_aurocs`."""
    out = {}
    for au, (aurocs, trained, n_present) in table.items():
        m = planted[au]
        others = np.delete(aurocs, m)
        out[au] = {"map": int(m), "auroc_held_out": float(aurocs[m]), "n_present_held_out": n_present,
                   "best_other_map": int(np.delete(np.arange(len(aurocs)), m)[np.nanargmax(others)]),
                   "best_other_auroc_held_out": float(np.nanmax(others)),
                   "auroc_train": None if trained is None else float(trained[m]),
                   "detector": bool(aurocs[m] >= DETECTOR_AUROC)}
        if trained is not None:  # AUROC's choice made without the held-out images, judged on them
            choice = int(np.nanargmax(trained))
            out[au]["train_choice"] = {"map": choice, "auroc_held_out": float(aurocs[choice])}
    return out


def split_aurocs(maxima, presence, au_codes, split, aus) -> dict[str, tuple]:
    """{AU: (every map's AUROC on held-out (validation + test) images (C,), on the training images
    (C,) or None where they hold one class only, AU-present held-out images)} for the AUs of `aus`
    that the data has, with both classes held out."""
    split = np.asarray(split).astype(str)
    held, train = np.isin(split, ("val", "test")), split == "train"
    codes = [au_name(c) for c in au_codes]
    maxima, presence = np.asarray(maxima), np.asarray(presence).astype(bool)
    out = {}
    for au in aus:
        if au not in codes:
            continue
        labels, seen = presence[held, codes.index(au)], presence[train, codes.index(au)]
        if labels.all() or not labels.any():
            continue
        out[au] = (stats.auroc(maxima[held], labels),
                   stats.auroc(maxima[train], seen) if seen.any() and not seen.all() else None, int(labels.sum()))
    return out


def planted_summary(records, verdicts, maxima, presence, au_codes, split, planted: dict[str, int],
                    fresh: dict | None = None) -> dict:
    """Ground truth and each method's recovery of it: over every planted AU, over the planted maps
    verified as detectors (the yardstick's truth), and with `fresh` (`truth.fresh_truth`) over
    those no other map clearly outdoes. Verified on `fresh`'s new identities where given, else on
    the run's held-out subjects."""
    aurocs = split_aurocs(maxima, presence, au_codes, split, planted)
    detectors = _detectors(aurocs, planted)
    if fresh is not None:
        for au, f in fresh["aus"].items():
            entry = detectors.setdefault(au, {"map": planted[au], "auroc_held_out": None})
            entry.update(_fresh_fields(f, planted[au]))
        for au, entry in detectors.items():
            entry["detector"] = bool(au in fresh["aus"] and entry["auroc_fresh"] >= DETECTOR_AUROC)
    verified = {au: planted[au] for au, d in detectors.items() if d["detector"]}
    by_au = {v["au"]: v for v in verdicts}

    def verdict_share(aus):
        aus = [au for au in aus if au in by_au]
        return float(np.mean([by_au[au]["verdict"] == "found" and by_au[au]["map"] == planted[au] for au in aus])) \
            if aus else None

    found = [v for v in verdicts if v["verdict"] == "found" and v["au"] in planted]
    verified_recovery = recovery(records, verified)
    fresh_aurocs = {au: f["aurocs"] for au, f in fresh["aus"].items()} if fresh is not None else None
    sole = {au: m for au, m in verified.items() if detectors[au]["truth"] == "sole"} if fresh is not None else None
    sole_recovery = recovery(records, sole) if sole is not None else None
    out = {"maps": planted, "detector_auroc": DETECTOR_AUROC, "detectors": detectors, "verified": sorted(verified),
           "truth": (f"fresh: {fresh['subjects']} synthetic identities the network never saw ({fresh['images']} images)"
                     if fresh is not None else "held-out: the run's validation and test subjects"),
           "recovery": recovery(records, planted), "recovery_verified": verified_recovery,
           "best_method": best_method(verified_recovery, sole_recovery),
           "misses": misses(records, planted, verified, {au: aurocs[au][0] for au in verified if au in aurocs},
                            fresh_aurocs),
           "train_choice_recovery_verified": (float(np.mean([detectors[au].get("train_choice", {}).get("map") == m
                                                             for au, m in verified.items()])) if verified else None),
           "verdict_recovery": verdict_share(planted), "verdict_recovery_verified": verdict_share(verified),
           # a found map that is not the planted one may still be a natural detector: a lower bound
           "verdict_found_is_planted": (float(np.mean([v["map"] == planted[v["au"]] for v in found]))
                                        if found else None),
           "localization": {au: _planted_localization(records, au, m) for au, m in planted.items()},
           "causal_found": causal_of_found(records, found, planted)}
    if fresh is not None:
        out.update(unambiguous=sorted(sole), recovery_unambiguous=sole_recovery,
                   as_good_verified=as_good(records, verified, fresh["aus"]))
    return out


def causal_of_found(records, found, planted: dict[str, int]) -> dict | None:
    """The causal check on the "found" verdicts that name their AU's planted map: how many of
    these maps' ablations drop the emotion logit more than every random map's and more than their
    mean, and of those a random map matches or beats, how many are beaten only by random maps that
    are themselves planted (another AU's detector, which the head may read as much)."""
    by_au = {r["au"]: r for r in records}
    checked = [(by_au[v["au"]]["causal"][str(v["map"])], by_au[v["au"]]["causal_setup"]["random_maps"])
               for v in found if v["map"] == planted[v["au"]] and str(v["map"]) in by_au[v["au"]].get("causal", {})]
    if not checked:
        return None
    planted_maps = set(planted.values())
    beaten = [(c, randoms) for c, randoms in checked if not c["exceeds_random"]]
    return {"found": len(checked),
            "exceeds_all": len(checked) - len(beaten),
            "above_mean": int(sum(c["emotion_drop"] > np.mean(c["random_drops"]) for c, _ in checked)),
            "beaten_only_by_planted": sum(all(d < c["emotion_drop"] for m, d in zip(randoms, c["random_drops"])
                                              if m not in planted_maps) for c, randoms in beaten)}


def _fresh_fields(f: dict, m: int) -> dict:
    return {"auroc_fresh": float(f["aurocs"][m]), "n_present_fresh": f["n_present"],
            "best_other_map_fresh": f["best_other_map"], "best_other_auroc_fresh": float(f["aurocs"][f["best_other_map"]]),
            "truth": f["truth"], "outdone_by": f["outdone_by"],
            "challengers": [{"map": c, **v} for c, v in list(f["maps"].items())[:CHALLENGERS]]}


def as_good(records, verified: dict[str, int], fresh: dict) -> dict[str, float]:
    """Per method, the share of verified planted AUs for which it names the planted map or a map
    not clearly worse on the fresh identities (`fresh`: `truth.fresh_truth`'s "aus", its contest
    holding every method's winner): a detector found, if not the planted one."""
    by_au = {r["au"]: r for r in records}
    out = {}
    for name in methods.METHODS:
        hits = [int(info["winner"]) == m or fresh[au]["maps"][int(info["winner"])]["below"] < OUTDONE_SHARE
                for au, m in verified.items() if (info := by_au.get(au, {}).get("methods", {}).get(name)) is not None]
        if hits:
            out[name] = float(np.mean(hits))
    return out


def misses(records, planted: dict[str, int], verified: dict[str, int], held: dict[str, np.ndarray],
           fresh: dict[str, np.ndarray] | None = None) -> dict:
    """Per method, each verified planted AU whose planted map is not its winner: the winner, whose
    planted map it is (verified or not; None: a natural map), and the AUROC of the winner and of
    the planted map for the AU on held-out subjects (`held`: {AU: every map's held-out AUROC},
    `split_aurocs`; None where they lack the AU) and, with `fresh`, on the fresh identities.
    The methods chose the winner on every image, the held-out ones included, so its held-out
    AUROC is optimistic (not its fresh one); the planted map was fixed beforehand."""
    owner = {m: au for au, m in planted.items()}
    by_au = {r["au"]: r for r in records}
    out = {}
    for name in methods.METHODS:
        rows = []
        for au, m in verified.items():
            info = by_au.get(au, {}).get("methods", {}).get(name)
            if info is None or info["winner"] == m:
                continue
            w = int(info["winner"])
            row = {"au": au, "winner": w, "winner_planted_for": owner.get(w),
                   "winner_auroc_held_out": float(held[au][w]) if au in held else None,
                   "planted_auroc_held_out": float(held[au][m]) if au in held else None}
            if fresh is not None:
                row.update(winner_auroc_fresh=float(fresh[au][w]), planted_auroc_fresh=float(fresh[au][m]))
            rows.append(row)
        out[name] = rows
    return out


def best_method(verified_recovery: dict, unambiguous: dict | None = None) -> str | None:
    """The method with the highest top-1 recovery of the unambiguous truth where given, then of the
    verified planted maps (first on ties)."""
    first = unambiguous or {}
    return max(verified_recovery, key=lambda m: (first.get(m, {}).get("top1", 0.0), verified_recovery[m]["top1"])) \
        if verified_recovery else None


# ---------------------------------------------------------------- the command


def validate(run, layer="relu3", controls=("untrained", "rotation"), shuffled=None, baseline=None,
             n: int = 9, permutations: int = 1000, probe_permutations: int = 40,
             quantile: float = methods.IOU_QUANTILE, seed: int = 0, fresh: int | None = None) -> dict:
    """`interpret validate`: methods, verdicts, controls, recovery (planted runs), agreement -> RUN/validate/.

    shuffled: a run trained with `--shuffle-labels` (its cache is the shuffled-label control);
    baseline: a plain run whose emotion accuracy is reported beside this one's (default for a run
    made by `interpret implant`: its source); fresh: new synthetic identities (`interpret.truth`;
    None: `truth.FRESH_SUBJECTS` for a run on the synthetic default, else 0) on which a planted
    run's truth is checked (0: on its held-out subjects) and every "detector found", of the run
    and of each control, must replicate (`replicate_found`).
    """
    unknown = [name for name in controls if name not in ("untrained", "rotation")]
    if unknown:
        raise InterpretError(f"--controls: unknown control {unknown[0]!r} (untrained, rotation; a shuffled-label run "
                             "goes in --shuffled)")
    start = time.perf_counter()
    timings = {}
    out = Path(run.path) / "validate"
    arrays = cache_arrays(run, layer, quantile)
    fs = run.dataset.faceset
    if len(arrays["max"]) != len(fs.images):
        raise InterpretError(f"{run.path}: the activation cache has {len(arrays['max'])} images, the run's data "
                             f"{len(fs.images)}; rebuild the cache")
    identities = (FRESH_SUBJECTS if run.config["data"].get("spec") == "synthetic" else 0) if fresh is None else fresh
    fresh_sets = {}

    def fresh_set(source):
        """The fresh identities after `source`'s own (made once per run, when first asked)."""
        if identities and str(source.path) not in fresh_sets:
            fresh_sets[str(source.path)] = fresh_dataset(source, identities)
        return fresh_sets.get(str(source.path))

    for source in (run, shuffled) if identities else ():
        if source is not None:
            fresh_config(source, identities)  # a run that cannot have fresh identities fails before any work
    labels = {k: arrays[k] for k in ("sequence", "frame", "subject")}
    args = dict(n=n, permutations=permutations, probe_permutations=probe_permutations, seed=seed)
    scan = scan_layer(run.model, layer, run.dataset, quantile, cached=arrays)
    timings["scan"] = time.perf_counter() - start
    planted = planted_maps(run.config)
    implanted = (run.config.get("planted") or {}).get("implanted")
    records = map_layer(arrays["max"], arrays["aus"], arrays["au_codes"], counts=scan["counts"],
                        pixels=scan["pixels"], localize=planted, **labels, **args)
    timings["methods"] = time.perf_counter() - start - timings["scan"]
    causal_check(run.model, layer, run.dataset, records, arrays["aus"], arrays["au_codes"], arrays["max"], seed)
    fresh_maxima = None
    if planted and identities:
        began = time.perf_counter()
        fresh_maxima = scan_layer(run.model, layer, fresh_set(run), iou=False)["max"]
        timings["fresh"] = time.perf_counter() - began
    verdicts, not_replicated = replicate_found(records, lambda: fresh_set(run), run.model, layer, maxima=fresh_maxima)
    result = {"run": str(run.path), "layer": resolve_layer(run.model, layer), "quantile": quantile,
              "alpha": ALPHA, "detector_auroc": DETECTOR_AUROC, "permutations": permutations,
              "probe_permutations": probe_permutations,
              "probe_l1": methods.PROBE_L1, "summary": summary(verdicts), "verdicts": verdicts,
              "agreement": agreement(records), "false_positives": {"run": false_positive_rates(records)},
              "replication": {"identities": identities or None, "not_replicated": {"run": not_replicated}}}
    if planted:
        truth = None
        if identities:
            winners = {r["au"]: [info["winner"] for info in r["methods"].values()] for r in records}
            truth = fresh_truth(fresh_maxima, fresh_set(run).faceset, planted, winners, seed)
        result["planted"] = {**planted_summary(records, verdicts, arrays["max"], arrays["aus"], arrays["au_codes"],
                                               arrays["split"], planted, truth),
                             "aus": run.config["planted"].get("aus", "all"),
                             "implanted_from": (implanted or {}).get("source"),
                             "head_reads_planted_only": ((implanted or {}).get("causal_head") or {}).get("drop") == 1}
    control_records, control_verdicts = {}, {}
    for name in controls:
        began = time.perf_counter()
        if name == "untrained":
            model, transform = untrained_model(run), None
        else:
            model, transform = run.model, (lambda act, r=random_rotation(arrays["max"].shape[1], seed): rotate(act, r))
        scanned = scan_layer(model, layer, run.dataset, quantile, transform=transform)
        control_records[name] = map_layer(scanned["max"], arrays["aus"], arrays["au_codes"], counts=scanned["counts"],
                                          pixels=scanned["pixels"], **labels, **args)
        control_verdicts[name], result["replication"]["not_replicated"][name] = replicate_found(
            control_records[name], lambda: fresh_set(run), model, layer, transform=transform)
        timings[name] = time.perf_counter() - began
    if shuffled is not None:
        began = time.perf_counter()
        other = cache_arrays(shuffled, layer, quantile)
        scanned = scan_layer(shuffled.model, layer, shuffled.dataset, quantile, cached=other)
        control_records["shuffled"] = map_layer(other["max"], other["aus"], other["au_codes"], counts=scanned["counts"],
                                                pixels=scanned["pixels"], **{k: other[k] for k in labels}, **args)
        control_verdicts["shuffled"], result["replication"]["not_replicated"]["shuffled"] = replicate_found(
            control_records["shuffled"], lambda: fresh_set(shuffled), shuffled.model, layer)
        result["shuffled_run"] = str(shuffled.path)
        timings["shuffled"] = time.perf_counter() - began
    result["found_rate"] = {"run": _found_rate(verdicts)}
    for name, recs in control_records.items():
        result["false_positives"][name] = false_positive_rates(recs)
        result.setdefault("control_verdicts", {})[name] = summary(control_verdicts[name])
        # which AUs a control "finds", with the evidence: a random-weight map may really fire with an AU
        result.setdefault("control_findings", {})[name] = [v for v in control_verdicts[name] if v["verdict"] != "none"]
        result["found_rate"][name] = _found_rate(control_verdicts[name])
    result["accuracy"] = {"run": _accuracy(run.path)}
    if baseline is None and implanted:  # planted into a trained run: that run is the baseline
        baseline = implanted["source"]
    if baseline is not None:
        result["accuracy"]["baseline"] = _accuracy(baseline)
        result["baseline_run"] = str(baseline)
    timings["total"] = time.perf_counter() - start
    result["seconds"] = {k: round(v, 2) for k, v in timings.items()}
    write_outputs(out, result, records, control_records)
    return result


def replicate_found(records, fresh, model, layer, transform=None, maxima=None) -> tuple[list[dict], list[str]]:
    """The verdicts of `records`, each "detector found" checked on the new identities `fresh()`
    makes (a `truth.fresh_dataset`, asked for only if something was found; None: no check). The
    found map's AUROC there goes into its record's `replication` (the verdict stays a pure
    function of the record), and a map below `DETECTOR_AUROC` on the new faces is no detector.
    `maxima`: the layer's maxima on those identities where already computed, else the layer (after
    `transform`) is scanned. Returns (verdicts, the AUs found before the check and not after)."""
    verdicts = [verdict(r) for r in records]
    found = {v["au"]: v["map"] for v in verdicts if v["verdict"] == "found"}
    dataset = fresh() if found else None
    if dataset is None:
        return verdicts, []
    if maxima is None:
        maxima = scan_layer(model, layer, dataset, transform=transform, iou=False)["max"]
    checked = replicate(maxima, dataset.faceset, found)
    for r in records:
        if r["au"] in checked:
            r["replication"] = {str(found[r["au"]]): checked[r["au"]]}
    verdicts = [verdict(r) for r in records]
    return verdicts, [v["au"] for v in verdicts if v["au"] in found and v["verdict"] != "found"]


def _planted_localization(records, au: str, m: int) -> dict | None:
    for r in records:
        if r["au"] == au:
            from interpret.verdict import localization_of

            return localization_of(r, m) if str(m) in r["localization"] else None
    return None


def _found_rate(verdicts) -> float | None:
    """Share of AUs whose verdict is "found": under a negative control, the verdict's false-positive rate."""
    return float(np.mean([v["verdict"] == "found" for v in verdicts])) if verdicts else None


def _accuracy(path) -> float | None:
    import json

    metrics = Path(path) / "metrics.json"
    if not metrics.is_file():
        return None
    return json.loads(metrics.read_text()).get("test_accuracy")


def write_outputs(out: Path, result: dict, records, control_records) -> None:
    """RUN/validate/: validate.json, methods.json (per-AU records), CSV tables and figures."""
    write_json(out / "methods.json", {"run": records, **control_records})
    write_json(out / "validate.json", result)
    write_text(out / "verdicts.csv", _csv(["au", "verdict", "map", "methods", "paper_map", "line"],
                                          [[v["au"], v["verdict"], v["map"], " ".join(v["methods"]), v["paper_map"],
                                            v["line"]] for v in result["verdicts"]]))
    rows = []
    for name in methods.METHODS:
        row = [name]
        for key in result["false_positives"]:
            row.append(result["false_positives"][key].get(name, {}).get("p"))
        rows.append(row)
    write_text(out / "false_positives.csv", _csv(["method"] + list(result["false_positives"]), rows))
    agree = result["agreement"]
    write_text(out / "agreement.csv", _csv(["pair", "same_winner", "spearman"],
                                           [[k, agree["same_winner"][k], agree["spearman"][k]]
                                            for k in agree["same_winner"]]))
    if "planted" in result:
        rec, ver = result["planted"]["recovery"], result["planted"]["recovery_verified"]
        sole = result["planted"].get("recovery_unambiguous", {})
        write_text(out / "recovery.csv", _csv(
            ["method", "top1", "top5", "top1_verified", "top5_verified", "top1_unambiguous", "top5_unambiguous"],
            [[m, rec[m]["top1"], rec[m]["top5"], ver.get(m, {}).get("top1"), ver.get(m, {}).get("top5"),
              sole.get(m, {}).get("top1"), sole.get(m, {}).get("top5")] for m in rec]))
    plot_validate(out / "validate.png", result)


def _csv(header, rows) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if v is None else (f"{v:.6g}" if isinstance(v, float) else v) for v in row])
    return buffer.getvalue()


def plot_validate(path, result: dict) -> None:
    """Bars: false-positive rate per method and network; planted recovery (top-1, top-5) if any."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 2 if "planted" in result else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 3.4), squeeze=False)
    fp = result["false_positives"]
    names = list(methods.METHODS)
    width = 0.8 / max(1, len(fp))
    ax = axes[0, 0]
    for j, (key, rates) in enumerate(fp.items()):
        ax.bar(np.arange(len(names)) + j * width, [rates.get(m, {}).get("p", np.nan) for m in names], width,
               label=key)
    ax.axhline(result["alpha"], color="k", ls="--", lw=1)
    ax.set_xticks(np.arange(len(names)) + width * (len(fp) - 1) / 2, names, fontsize=8)
    ax.set_ylabel(f"share of AUs with winner p < {result['alpha']}")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7, frameon=False)
    ax.set_title("significant winners: run vs negative controls", fontsize=9)
    if panels == 2:
        planted = result["planted"]
        rec, ver = planted["recovery"], planted["recovery_verified"]
        ax = axes[0, 1]
        ms = list(rec)
        bars = [(rec, "top1", "top-1, all planted"), (rec, "top5", "top-5, all planted"),
                (ver, "top1", f"top-1, {len(planted['verified'])} verified"),
                (ver, "top5", f"top-5, {len(planted['verified'])} verified")]
        if "recovery_unambiguous" in planted:
            bars.append((planted["recovery_unambiguous"], "top1", f"top-1, {len(planted['unambiguous'])} unambiguous"))
        width = 0.8 / len(bars)
        for j, (table, key, label) in enumerate(bars):
            ax.bar(np.arange(len(ms)) + (j - (len(bars) - 1) / 2) * width, [table.get(m, {}).get(key, np.nan) for m in ms],
                   width, label=label, hatch="//" if table is ver else None)
        ax.axhline(0.9, color="k", ls="--", lw=1)
        ax.set_xticks(np.arange(len(ms)), ms, fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("share of planted AUs recovered")
        ax.legend(fontsize=7, frameon=False)
        ax.set_title("planted detectors recovered", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def format_validate(result: dict) -> str:
    """Plain text for the CLI: verdict lines, then recovery, false positives and agreement."""
    lines = [result["summary"]] + [v["line"] for v in result["verdicts"]]
    replication = result.get("replication") or {}
    if replication.get("identities"):
        lines.append(f"detectors found are checked on {replication['identities']} new synthetic identities (where "
                     "they show the AU); found on these images but not replicated there: " + ("; ".join(
                         f"{name}: {', '.join(aus)}" for name, aus in replication["not_replicated"].items() if aus)
                         or "none"))
    if "planted" in result:
        planted = result["planted"]
        fresh = "unambiguous" in planted
        lines.append(f"planted maps that are detectors (AUROC >= {planted['detector_auroc']:g} on {planted['truth']}): "
                     f"{len(planted['verified'])} of {len(planted['maps'])} (AUs planted: {planted.get('aus', 'all')}; "
                     + (f"into the trained run {planted['implanted_from']})" if planted.get("implanted_from")
                        else "during training)"))
        if fresh:
            verified = [(au, d) for au, d in planted["detectors"].items() if d["detector"]]
            lines.append(f"of them, the planted map separates the AU clearly better than any other map (the "
                         f"unambiguous truth): {len(planted['unambiguous'])}; tied: "
                         + (", ".join(au for au, d in verified if d["truth"] == "tied") or "none") + "; outdone: "
                         + (", ".join(f"{au} by map {d['outdone_by']['map']} ({d['outdone_by']['auroc']:.2f} vs "
                                      f"{d['auroc_fresh']:.2f})" for au, d in verified if d["outdone_by"]) or "none"))
        for key, label in (("recovery", "all planted"), ("recovery_verified", "verified detectors"),
                           ("recovery_unambiguous", "the unambiguous truth")):
            if planted.get(key):
                lines.append(f"recovery of {label} (top-1 / top-5): " + ", ".join(
                    f"{m} {r['top1']:.2f}/{r['top5']:.2f}" for m, r in planted[key].items()))
        if planted.get("as_good_verified"):
            lines.append("names the planted map or one not clearly worse on the fresh identities, of the verified: "
                         + ", ".join(f"{m} {v:.2f}" for m, v in planted["as_good_verified"].items()))
        best = planted["best_method"]
        if best is not None and planted["misses"][best]:
            where = "fresh identities" if fresh else "held-out subjects, chosen on all images"
            lines.append(f"{best}'s misses (AUROC on {where}: the map named vs the planted map): " + ", ".join(
                f"{r['au']} -> map {r['winner']}" + (f" ({r['winner_planted_for']}'s planted)"
                                                     if r["winner_planted_for"] else "")
                + (f" {r['winner_auroc_fresh']:.2f} vs {r['planted_auroc_fresh']:.2f}" if fresh else
                   f" {r['winner_auroc_held_out']:.2f} vs {r['planted_auroc_held_out']:.2f}")
                for r in planted["misses"][best]))
        if planted.get("train_choice_recovery_verified") is not None:
            lines.append(f"AUROC's choice made on the training images alone names the planted map first for "
                         f"{planted['train_choice_recovery_verified']:.2f} of the verified AUs")
        if planted.get("verdict_recovery_verified") is not None:
            lines.append(f"the verdict names the planted map for {planted['verdict_recovery_verified']:.2f} of the "
                         "verified AUs")
        if planted.get("verdict_found_is_planted") is not None:
            lines.append(f"{planted['verdict_found_is_planted']:.2f} of the verdict's \"found\" name the AU's "
                         "planted map")
        causal = planted.get("causal_found")
        if causal:
            lines.append(f"causal check on the {causal['found']} found planted maps: zeroing the map drops the emotion "
                         f"logit more than every random map's for {causal['exceeds_all']}, more than their mean for "
                         f"{causal['above_mean']}; of the {causal['found'] - causal['exceeds_all']} others, "
                         f"{causal['beaten_only_by_planted']} only by random maps that are planted too "
                         + ("(the head reads the planted maps alone)" if planted.get("head_reads_planted_only")
                            else "(the head was trained on every map: it need not read the planted ones)"))
    for key, rates in result["false_positives"].items():
        lines.append(f"significant winners ({key}): " + ", ".join(f"{m} {r['p']:.2f}" for m, r in rates.items()))
    for name, findings in (result.get("control_findings") or {}).items():
        lines.extend(f"  {name} control: {v['line']}" for v in findings)
    lines.append("share of AUs with a detector found: " + ", ".join(
        f"{k} {v:.2f}" for k, v in result["found_rate"].items() if v is not None))
    acc = result["accuracy"]
    lines.append("test accuracy: " + ", ".join(f"{k} {v:.3f}" for k, v in acc.items() if v is not None))
    return "\n".join(lines)
