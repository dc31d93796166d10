"""The planted truth checked on fresh identities: synthetic subjects the network never saw.

A planted run's own held-out subjects are few (a tenth to a fifth of the run: on the demo's 40
identities, eight), too few to tell a planted map that detects its AU from one that does not,
and the AUs are rare among them. The synthetic generator makes as many new identities as asked
(`synthetic_faceset(first=n)`). On them `interpret validate` checks, per planted AU, whether the
planted map is a detector, and whether the best other maps separate the AU clearly better (then
naming one is no miss), as well (tied), or clearly worse (the planted map is the sole right
answer: the unambiguous truth). The same new faces check every "detector found" of a verdict
(`replicate`): a map that separates the AU on the run's images but not on faces it never saw is
not a detector.
"""

from __future__ import annotations

import numpy as np

from interpret import stats
from interpret.errors import InterpretError
from interpret.facs import au_name

#: New identities `interpret validate` draws for a planted run on the synthetic default.
FRESH_SUBJECTS = 100
#: Subject-level bootstrap resamples that compare a planted map with its challengers.
RESAMPLES = 200
#: The maps that best separate the AU on the fresh identities, tested against the planted map.
CHALLENGERS = 5
#: The planted map is the sole answer when its AUROC is higher than every challenger's in at least
#: this share of resamples, and a named map is clearly worse when it is lower that often. A
#: challenger outdoes the planted map when it is higher in at least `outdone_share(CHALLENGERS)`:
#: any one of several challengers may be higher by chance, so the share is Bonferroni-corrected.
OUTDONE_SHARE = 0.95


def outdone_share(challengers: int) -> float:
    """The share of resamples in which one of `challengers` maps must be higher to outdo the planted map."""
    return 1.0 - (1.0 - OUTDONE_SHARE) / max(int(challengers), 1)


def classify(maps: dict[int, dict], rivals: list[int]) -> tuple[str, list[int]]:
    """("outdone" | "sole" | "tied", the rivals that outdo the planted map) from each rival's
    `above` / `below` share of resamples (see `contest`)."""
    beaten = [c for c in rivals if maps[c]["above"] >= outdone_share(len(rivals))]
    sole = all(maps[c]["below"] >= OUTDONE_SHARE for c in rivals)
    return ("outdone" if beaten else "sole" if sole else "tied"), beaten


def fit_identities(config: dict) -> int:
    """New identities `interpret implant --fit-subjects` fitted a run's planted filters on: the
    generator's subjects right after the run's own, so fresh identities start after them."""
    return int(((config.get("planted") or {}).get("implanted") or {}).get("fit_subjects", 0))


def fresh_config(run, subjects: int = FRESH_SUBJECTS, first: int | None = None) -> dict:
    """The run's config with its data replaced by `subjects` synthetic identities from the
    generator's subject `first` (default: after the run's own and its planted filters' fit
    identities); a one-line error for a run not on the synthetic default or fewer than two."""
    data = run.config["data"]
    if data.get("spec") != "synthetic":
        raise InterpretError(f"{run.path}: fresh identities need a run on the synthetic default, its data is "
                             f"{data.get('spec')!r}; use --fresh 0 to check the planted maps on its held-out subjects")
    if int(subjects) < 2:
        raise InterpretError(f"--fresh must be 0 (the run's held-out subjects) or at least 2 identities, got {subjects}")
    first = int(data["subjects"]) + fit_identities(run.config) if first is None else int(first)
    return {**run.config, "data": {**data, "first": first, "subjects": int(subjects)}}


def fresh_dataset(run, subjects: int = FRESH_SUBJECTS, first: int | None = None, split: str = "test"):
    """`subjects` synthetic identities the run never saw (see `fresh_config`), cut like its data,
    every image in `split`."""
    from interpret.runs import RunDataset, run_faceset, run_input

    config = fresh_config(run, subjects, first)
    faceset = run_faceset(config)
    return RunDataset(faceset, np.full(len(faceset.subject), split), config["classes"], run_input(config))


def contest(maxima, labels, subject, planted_map: int, named=(), seed: int = 0, resamples: int = RESAMPLES) -> dict:
    """The planted map against the `CHALLENGERS` maps that best separate `labels` and the maps in
    `named` (e.g. the methods' winners), in `resamples` subject-level bootstrap resamples.

    {"aurocs": every map's AUROC (C,), "best_other_map", "maps": {map: {auroc, above, below}}
    (above / below: the share of resamples where its AUROC is higher / lower than the planted
    map's), "truth" (`classify`), "outdone_by": the best challenger that outdoes it, or None}. A
    named map is "not clearly worse" unless its `below` >= `OUTDONE_SHARE`."""
    maxima, labels = np.asarray(maxima, dtype=np.float64), np.asarray(labels, dtype=bool)
    aurocs = stats.auroc(maxima, labels)
    ranked = [int(c) for c in np.argsort(-np.nan_to_num(aurocs, nan=-np.inf), kind="stable") if c != planted_map]
    rivals = ranked[:CHALLENGERS]
    others = rivals + sorted({int(m) for m in named} - set(rivals) - {int(planted_map)})
    columns = maxima[:, [planted_map, *others]]
    _, groups = np.unique(np.asarray(subject).astype(str), return_inverse=True)
    weights = stats.cluster_bootstrap_weights(groups, resamples, np.random.default_rng([int(seed), 0xF7E5]))
    above, below, usable = np.zeros(len(others)), np.zeros(len(others)), 0
    for w in weights:
        rows = np.repeat(np.arange(len(labels)), w)
        resampled = stats.auroc(columns[rows], labels[rows])
        if np.isnan(resampled[0]):  # a resample with one class only
            continue
        above += resampled[1:] > resampled[0]
        below += resampled[1:] < resampled[0]
        usable += 1
    above, below = above / max(usable, 1), below / max(usable, 1)
    maps = {c: {"auroc": float(aurocs[c]), "above": float(a), "below": float(b)}
            for c, a, b in zip(others, above, below)}
    truth, beaten = classify(maps, rivals)
    return {"aurocs": aurocs, "best_other_map": rivals[0], "maps": maps, "truth": truth,
            "outdone_by": {"map": beaten[0], **maps[beaten[0]]} if beaten else None}


def _labelled(faceset, aus):
    """(AU, its presence per image) for each of `aus` that the faces hold in some images but not all."""
    presence, codes = np.asarray(faceset.au_present, dtype=bool), [au_name(c) for c in faceset.au_codes]
    for au in aus:
        labels = presence[:, codes.index(au)] if au in codes else None
        if labels is not None and labels.any() and not labels.all():
            yield au, labels


def fresh_truth(maxima, faceset, planted: dict[str, int], named: dict[str, list] | None = None,
                seed: int = 0) -> dict:
    """Per planted AU the fresh identities (`faceset`, their layer `maxima` (N, C)) hold with and
    without it: its `contest` (with the maps `named[AU]`) and the count of images with the AU; with
    the fresh set's size."""
    out = {au: {**contest(maxima, labels, faceset.subject, int(planted[au]), (named or {}).get(au, ()), seed),
                "n_present": int(labels.sum())} for au, labels in _labelled(faceset, planted)}
    return {"subjects": int(len(np.unique(faceset.subject))), "images": int(len(faceset.subject)), "aus": out}


def replicate(maxima, faceset, maps: dict[str, int]) -> dict[str, dict]:
    """{AU: {map, auroc, n_present, identities, images}}: the AUROC with which each map's maxima
    (`maxima` (N, C) on the fresh `faceset`) separate its AU on the new faces; AUs the new faces
    hold in all images or in none are left out."""
    identities, images = int(len(np.unique(faceset.subject))), int(len(faceset.subject))
    return {au: {"map": int(maps[au]), "auroc": float(stats.auroc(np.asarray(maxima)[:, [int(maps[au])]], labels)[0]),
                 "n_present": int(labels.sum()), "identities": identities, "images": images}
            for au, labels in _labelled(faceset, maps)}
