"""The per-AU verdict on hand-built method results."""

from interpret.verdict import DETECTOR_AUROC, summary, verdict


def method(winner, q, auroc):
    return {"winner": winner, "p_family": q, "q": q, "auroc": auroc}


def record(methods, localization=None, confound=None, causal=None):
    return {"au": "AU12", "methods": methods, "localization": localization or {}, "confound": confound or {},
            "causal": causal or {}}


IN_REGION = {"7": {"inside_share": 0.6, "area_share": 0.15, "iou": 0.2}}


def test_agreeing_significant_localized_map_is_found():
    rec = record({"distance": method(7, 0.001, 0.9), "directional": method(7, 0.001, 0.9),
                  "auroc": method(7, 0.001, 0.9), "iou": method(3, 0.2, 0.6), "probe": method(7, 0.01, 0.9)},
                 IN_REGION, causal={"7": {"emotion_drop": 0.5, "random_drops": [0.1, 0.2], "exceeds_random": True}})
    out = verdict(rec)
    assert out["verdict"] == "found" and out["map"] == 7
    assert out["methods"] == ["directional", "auroc", "probe", "distance"]
    assert "map 7" in out["line"] and "region" in out["line"] and "exceeds all" in out["line"]


def test_map_that_fires_less_is_never_found_even_when_the_paper_is_sure():
    rec = record({"distance": method(7, 0.001, 0.2), "directional": method(9, 0.5, 0.55),
                  "auroc": method(9, 0.6, 0.55), "probe": method(9, 0.4, 0.55)},
                 {"7": {"inside_share": 0.9, "area_share": 0.1}})
    out = verdict(rec)
    assert out["verdict"] == "none" and out["map"] is None
    assert "LESS" in out["reason"] and "paper's best map: 7" in out["line"]


def test_one_method_alone_is_not_enough():
    rec = record({"distance": method(7, 0.3, 0.6), "directional": method(7, 0.3, 0.6),
                  "auroc": method(7, 0.01, 0.7), "probe": method(2, 0.4, 0.6)}, IN_REGION)
    out = verdict(rec)
    assert out["verdict"] == "none" and "only auroc" in out["reason"]


def test_map_tracking_a_cooccurring_au_is_confounded():
    rec = record({"directional": method(7, 0.001, 0.8), "auroc": method(7, 0.001, 0.8)}, IN_REGION,
                 confound={"7": {"other_au": "AU06", "auroc_this_without_other": 0.52,
                                 "auroc_other_without_this": 0.85}})
    out = verdict(rec)
    assert out["verdict"] == "confounded" and "AU06" in out["line"]
    rec["confound"]["7"]["auroc_other_without_this"] = 0.5  # the other AU alone does not drive it
    assert verdict(rec)["verdict"] == "found"


def test_detector_outside_its_region_is_not_found_but_unknown_localization_is():
    rec = record({"directional": method(7, 0.001, 0.8), "auroc": method(7, 0.001, 0.8)},
                 {"7": {"inside_share": 0.1, "area_share": 0.15}})
    out = verdict(rec)
    assert out["verdict"] == "none" and "outside its region" in out["reason"]
    rec["localization"] = {}
    out = verdict(rec)
    assert out["verdict"] == "found" and out["localized"] is None and "no landmarks" in out["line"]


def test_significant_agreeing_but_weak_map_is_a_correlate_not_a_detector():
    weak = {name: method(7, 0.001, 0.7) for name in ("directional", "auroc", "probe")}
    out = verdict(record(weak, IN_REGION))
    assert out["verdict"] == "none" and out["map"] == 7 and out["auroc"] == 0.7
    assert "weakly (AUROC 0.70" in out["reason"] and "not a detector" in out["line"]
    assert verdict(record(weak, IN_REGION), min_auroc=0.65)["verdict"] == "found"
    at_threshold = {name: method(7, 0.001, DETECTOR_AUROC) for name in ("directional", "auroc")}
    found = verdict(record(at_threshold, IN_REGION))
    assert found["verdict"] == "found" and f"AUROC {DETECTOR_AUROC:.2f}" in found["line"]


def test_summary_counts():
    found = verdict(record({"directional": method(7, 0.001, 0.8), "auroc": method(7, 0.001, 0.8)}, IN_REGION))
    none = verdict(record({"auroc": method(7, 0.5, 0.8)}))
    assert summary([found, none, none]) == "1 of 3 AUs: detector found; 0 confounded; 2 none"


def test_a_detector_must_replicate_on_new_faces_where_checked():
    strong = {name: method(7, 0.001, 0.9) for name in ("directional", "auroc", "probe")}
    rec = record(strong, IN_REGION)
    rec["replication"] = {"7": {"map": 7, "auroc": 0.6, "identities": 100, "images": 1800, "n_present": 90}}
    out = verdict(rec)
    assert out["verdict"] == "none" and out["map"] == 7 and out["replication"]["auroc"] == 0.6
    assert "but not on 100 new identities (AUROC 0.60): it does not replicate" in out["line"]
    rec["replication"]["7"]["auroc"] = DETECTOR_AUROC
    out = verdict(rec)
    assert out["verdict"] == "found" and "on 100 new identities AUROC 0.75" in out["line"]
    rec["replication"] = {"3": {"map": 3, "auroc": 0.1, "identities": 100, "images": 1800, "n_present": 90}}
    assert verdict(rec)["verdict"] == "found"  # another map's check says nothing of map 7


def test_the_causal_check_in_words():
    strong = {name: method(7, 0.001, 0.9) for name in ("directional", "auroc")}

    def line(drop, randoms, exceeds=False):
        causal = {"7": {"emotion_drop": drop, "random_drops": randoms, "exceeds_random": exceeds}}
        return verdict(record(strong, IN_REGION, causal=causal))["line"]

    assert "drops the emotion logit by 0.01 (random maps 0.2): less than a random map, the emotion head barely " \
           "reads it" in line(0.01, [0.1, 0.3])
    middling = line(0.25, [0.1, 0.3])
    assert "(random maps 0.2)" in middling and "barely" not in middling and "exceeds" not in middling
    assert "(random maps 0.2, exceeds all)" in line(0.5, [0.1, 0.3], exceeds=True)
