"""One verdict per AU from the mapping methods' results: detector found, confounded, or none.

`verdict(record)` is a pure function of one AU's record (as `interpret.validate.map_layer`
writes it):

- methods: {name: {winner, p_family, q, auroc}}: each method's winning map, its family-wise
  permutation p, the BH q across AUs, and the winner's AUROC for the AU (> 0.5: fires more);
- localization: {map: {inside_share, area_share, iou}}: share of the map's top-quantile pixels
  on AU-present images inside the AU's region, against the region's share of the pixels;
- confound: {map: {other_au, auroc_this_without_other, auroc_other_without_this}};
- causal: {map: {emotion_drop, random_drops, exceeds_random}};
- replication (optional): {map: {auroc, identities, images, n_present}}: the map's AUROC for the
  AU on new faces the network never saw (`interpret.truth.replicate`).

A map is a *candidate* when a method names it with q < alpha and it fires more with the AU
(the paper's distance votes only then; it is blind to the direction). The verdict is
"found" when at least `MIN_METHODS` methods name the same candidate, it fires more with the AU,
it does not track a co-occurring AU better than this one, it separates the AU's images well
enough to be called a detector (AUROC of its maxima at least `DETECTOR_AUROC`: with thousands
of images a map at AUROC 0.6 is significant, but it is a weak correlate, and random-weight maps
give many of those), and (with landmarks) its top pixels fall in the AU's region at least
`LOCALIZED_RATIO` times more often than area alone predicts, and, where it was checked on new
faces, it separates the AU there too (AUROC at least `DETECTOR_AUROC`: it replicates).
"confounded": the candidate separates a co-occurring AU (without this one) at least as well
as this AU (without the other); `record["confound"]` compares with the co-occurring AU that has
the largest partial effect on the map (`interpret.validate`). Otherwise "none", with the reason.
"""

from __future__ import annotations

#: Methods whose winner can vote, in display order.
VOTERS = ("directional", "auroc", "iou", "probe", "distance")
ALPHA = 0.05
MIN_METHODS = 2
LOCALIZED_RATIO = 1.5
#: What the toolkit calls a detector: its per-image maxima separate the AU at AUROC at least this
#: (the verdict's candidate over all images; a planted map over held-out subjects).
DETECTOR_AUROC = 0.75


def _fires_more(info: dict) -> bool:
    auroc = info.get("auroc")
    return auroc is not None and auroc == auroc and auroc > 0.5


def votes(record: dict, alpha: float = ALPHA) -> dict[int, list[str]]:
    """{map: [methods]} of the significant winners that fire more with the AU."""
    out: dict[int, list[str]] = {}
    for name in VOTERS:
        info = (record.get("methods") or {}).get(name)
        if not info or info.get("winner") is None:
            continue
        q = info.get("q", info.get("p_family"))
        if q is None or not q < alpha or not _fires_more(info):
            continue
        out.setdefault(int(info["winner"]), []).append(name)
    return out


def localization_of(record: dict, map_index: int) -> dict | None:
    """{inside_share, area_share, ratio, iou} of a map for the AU, None without landmarks."""
    loc = (record.get("localization") or {}).get(str(map_index))
    if not loc or loc.get("inside_share") is None or not loc.get("area_share"):
        return None
    return {**loc, "ratio": loc["inside_share"] / loc["area_share"]}


def verdict(record: dict, alpha: float = ALPHA, min_methods: int = MIN_METHODS,
            localized_ratio: float = LOCALIZED_RATIO, min_auroc: float = DETECTOR_AUROC) -> dict:
    """The AU's verdict: {au, verdict, map, methods, auroc, localization, localized, causal, confound, reason, line}."""
    au = record["au"]
    ballot = votes(record, alpha)
    paper = (record.get("methods") or {}).get("distance") or {}
    out = {"au": au, "verdict": "none", "map": None, "methods": [], "auroc": None, "localization": None,
           "localized": None, "causal": None, "confound": None, "replication": None, "paper_map": paper.get("winner"),
           "reason": ""}
    if not ballot:
        less = paper.get("winner") is not None and (paper.get("q") or 1) < alpha and not _fires_more(paper)
        out["reason"] = ("the paper's best map is significant but fires LESS with the AU; no method names a map "
                         "that fires more" if less else "no method names a significant map that fires more with the AU")
        return _with_line(out)
    order = {name: i for i, name in enumerate(VOTERS)}
    best = max(ballot, key=lambda m: (len(ballot[m]), -min(order[n] for n in ballot[m])))
    methods = ballot[best]
    out.update(map=best, methods=methods, auroc=float(record["methods"][methods[0]]["auroc"]))
    loc = localization_of(record, best)
    out["localization"] = loc
    out["localized"] = None if loc is None else loc["ratio"] >= localized_ratio
    out["causal"] = (record.get("causal") or {}).get(str(best))
    replication = out["replication"] = (record.get("replication") or {}).get(str(best))
    confound = (record.get("confound") or {}).get(str(best))
    out["confound"] = confound
    if len(methods) < min_methods:
        out["reason"] = f"only {methods[0]} names map {best}; the other methods disagree"
    elif confound and confound.get("auroc_other_without_this") is not None and \
            confound["auroc_other_without_this"] >= (confound.get("auroc_this_without_other") or 0.0):
        out["verdict"] = "confounded"
        out["reason"] = (f"map {best} tracks {confound['other_au']}: AUROC {confound['auroc_other_without_this']:.2f} "
                         f"for {confound['other_au']} without {au} vs "
                         f"{confound['auroc_this_without_other'] or 0:.2f} for {au} without {confound['other_au']}")
    elif out["auroc"] < min_auroc:
        out["reason"] = (f"map {best} fires more with the AU but weakly (AUROC {out['auroc']:.2f}, a detector needs "
                         f"{min_auroc:g}): a correlate, not a detector")
    elif out["localized"] is False:
        out["reason"] = (f"map {best} fires more with the AU but outside its region "
                         f"({loc['ratio']:.2f}x the area share, needs {localized_ratio:g}x)")
    elif replication is not None and replication["auroc"] < min_auroc:
        out["reason"] = (f"map {best} separates the AU on these images (AUROC {out['auroc']:.2f}) but not on "
                         f"{replication['identities']} new identities (AUROC {replication['auroc']:.2f}): "
                         "it does not replicate")
    else:
        out["verdict"] = "found"
        out["reason"] = "named by " + ", ".join(methods)
    return _with_line(out)


def _with_line(out: dict) -> dict:
    """Attach the one-line text the report and CLI print."""
    au, kind = out["au"], out["verdict"]
    paper = f"; the paper's best map: {out['paper_map']}" if out.get("paper_map") is not None else ""
    if kind == "found":
        loc = out["localization"]
        where = (f", in the AU's region ({loc['ratio']:.1f}x its area share)" if loc
                 else ", localization unknown (no landmarks)")
        replication = out.get("replication")
        replicated = (f"; on {replication['identities']} new identities AUROC {replication['auroc']:.2f}"
                      if replication else "")
        out["line"] = (f"{au}: detector found: map {out['map']} (by {', '.join(out['methods'])}; AUROC "
                       f"{out['auroc']:.2f}){where}{replicated}{_effect(out.get('causal'))}{paper}")
    elif kind == "confounded":
        out["line"] = f"{au}: confounded: {out['reason']}{paper}"
    else:
        out["line"] = f"{au}: none: {out['reason']}{paper}"
    return out


def _effect(causal: dict | None) -> str:
    """The causal check in words: the emotion logit's drop when the map is zeroed, against random maps."""
    if not causal or not causal.get("random_drops"):
        return ""
    mean_random = sum(causal["random_drops"]) / len(causal["random_drops"])
    drop = causal["emotion_drop"]
    text = f"; ablating it drops the emotion logit by {drop:.3g} (random maps {mean_random:.3g}"
    if causal.get("exceeds_random"):
        return text + ", exceeds all)"
    if drop < mean_random:
        return text + "): less than a random map, the emotion head barely reads it"
    return text + ")"


def summary(verdicts: list[dict]) -> str:
    """'k of n AUs: detector found in region; c confounded; r none'."""
    n = len(verdicts)
    found = sum(v["verdict"] == "found" for v in verdicts)
    confounded = sum(v["verdict"] == "confounded" for v in verdicts)
    return f"{found} of {n} AUs: detector found; {confounded} confounded; {n - found - confounded} none"
