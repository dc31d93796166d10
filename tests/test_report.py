"""The HTML report: renders from a run, every image exists, data is escaped, writes are atomic."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

import interpret.report
from interpret.errors import InterpretError
from interpret.report import write_report

XSS = "<script>alert(1)</script>"


class _Page(HTMLParser):
    """Collects <img src>, every src/href, and the gallery cards' data-au."""

    def __init__(self):
        super().__init__()
        self.images, self.links, self.cards, self.scripts_with_src = [], [], {}, 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src"))
        for key in ("src", "href"):
            if attrs.get(key):
                self.links.append(attrs[key])
        if tag == "script" and "src" in attrs:
            self.scripts_with_src += 1
        if "map-card" in (attrs.get("class") or ""):
            self.cards[int(attrs["data-map"])] = attrs["data-au"]


def parse(index: Path) -> _Page:
    page = _Page()
    page.feed(index.read_text(encoding="utf-8"))
    return page


def test_report_renders_and_every_image_exists(report_maps, make_report_run, tmp_path):
    run = make_report_run(tmp_path / "run")
    index = write_report(run)
    assert index == run / "report" / "index.html"
    page = parse(index)
    assert len(set(page.images)) >= report_maps + 10  # sheets, overview, curves, confusion, heatmap, AU and sanity figures
    for src in page.images:
        assert not Path(src).is_absolute() and ".." not in src
        assert (index.parent / src).is_file(), src
    assert not any(link.startswith(("http:", "https:", "//")) for link in page.links)
    assert page.scripts_with_src == 0
    # each map's best AU is the argmax over AUs of its distance
    assert page.cards == {0: "AU01", 1: "AU01", 2: "AU01", 3: "AU04", 4: "AU04", 5: "AU04"}
    html = index.read_text()
    for text in ("80.0%", "majority baseline", "33.3%", "AU01: inner brow raiser", "best map of AU04",
                 "The deconvnet projections stay similar", "2 of 2 AUs have a family-wise p",
                 f"analysed layer relu3 ({report_maps} maps)", "input 96x96, 1 channel", "Map gallery: relu3",
                 "head, then conv3, then conv2"):
        assert text in html, text


def test_missing_pieces_are_stated_and_missing_runs_refused(make_report_run, tmp_path):
    run = make_report_run(tmp_path / "run", aumap=False, sanity=False)
    html = write_report(run, tmp_path / "out").read_text()
    assert "No AU distances yet" in html and "No sanity check yet" in html and "No AU results" in html
    assert 'data-au=""' in html
    with pytest.raises(InterpretError, match="run directory not found"):
        write_report(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InterpretError, match="config.json"):
        write_report(tmp_path / "empty")


def test_data_and_paths_are_escaped(make_report_run, tmp_path):
    run = make_report_run(tmp_path / "<script>alert(1)<" / "script>", label=XSS)
    assert XSS in str(run)
    html = write_report(run, tmp_path / "out").read_text()
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_a_failed_render_leaves_the_previous_report_intact(make_report_run, tmp_path, monkeypatch):
    run = make_report_run(tmp_path / "run")
    index = write_report(run)
    before = {p.relative_to(index.parent): p.read_bytes() for p in index.parent.rglob("*") if p.is_file()}

    def broken(*args, **kwargs):
        raise RuntimeError("render failed")

    monkeypatch.setattr(interpret.report, "_sanity", broken)  # fails after the images were copied
    with pytest.raises(RuntimeError, match="render failed"):
        write_report(run)
    after = {p.relative_to(index.parent): p.read_bytes() for p in index.parent.rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == []


def test_a_rerender_replaces_the_report_and_foreign_folders_are_refused(report_maps, make_report_run, tmp_path):
    run = make_report_run(tmp_path / "run")
    index = write_report(run)
    (run / "deconv" / "relu3" / "map_005.png").unlink()
    write_report(run)
    assert not (index.parent / "img" / "maps" / "map_005.png").exists()
    assert len(parse(index).cards) == report_maps - 1
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(InterpretError, match="not a report folder"):
        write_report(run, foreign)
    assert (foreign / "keep.txt").read_text() == "mine"


def test_verdicts_lead_the_report_and_alone_label_gallery_maps(make_report_run, tmp_path):
    from interpret.verdict import summary, verdict

    run = make_report_run(tmp_path / "run")
    method = {"winner": 4, "p_family": 0.001, "q": 0.002, "auroc": 0.9}
    found = verdict({"au": "AU04", "methods": {"directional": method, "auroc": method, "distance": method},
                     "localization": {"4": {"inside_share": 0.5, "area_share": 0.1, "iou": 0.2}},
                     "confound": {"4": {"other_au": "AU23", "auroc_this_without_other": 0.91,
                                        "auroc_other_without_this": 0.55, "partial_effect_this": 1.25,
                                        "partial_effect_other": 0.125}},
                     "replication": {"4": {"map": 4, "auroc": 0.88, "identities": 100, "images": 1804,
                                           "n_present": 95}}})
    none = verdict({"au": "AU01", "methods": {"distance": {"winner": 1, "p_family": 0.001, "q": 0.002, "auroc": 0.2}}})
    (run / "validate").mkdir()
    (run / "validate" / "validate.json").write_text(json.dumps({
        "summary": summary([none, found]), "verdicts": [none, found], "layer": "relu3", "alpha": 0.05,
        "detector_auroc": 0.75, "quantile": 0.005, "false_positives": {"run": {}},
        "control_verdicts": {"untrained": summary([found])}, "control_findings": {"untrained": [found]},
        "replication": {"identities": 100, "not_replicated": {"run": [], "untrained": ["AU12", "AU26"]}},
        "planted": {"maps": {"AU04": 7, "AU17": 4}, "verified": ["AU04", "AU17"], "detector_auroc": 0.75,
                    "recovery": {"auroc": {"top1": 0.5}}, "recovery_verified": {"auroc": {"top1": 0.5}},
                    "best_method": "auroc", "verdict_recovery_verified": 0.5, "verdict_found_is_planted": 0.0,
                    "train_choice_recovery_verified": 0.5, "aus": "independent: no two with phi > 0.2",
                    "misses": {"auroc": [{"au": "AU04", "winner": 4, "winner_planted_for": "AU17",
                                          "winner_auroc_held_out": 0.91, "planted_auroc_held_out": 0.84}]}}}))
    index = write_report(run)
    html = index.read_text()
    assert html.index("1 of 2 AUs: detector found") < html.index('id="overview"')
    assert "AU04: detector found: map 4" in html and "fires LESS" in html
    assert "co-occurring AU23" in html and "partial effect" in html and "1.25 for AU04" in html
    assert parse(index).cards == {0: "", 1: "", 2: "", 3: "", 4: "AU04", 5: ""}  # AU01's paper map 1 is unlabelled
    assert "largest distance: AU01" in html and "Vertical stripes" in html
    assert "AUROC &ge; 0.75" in html and "What the untrained control names (1)" in html
    assert "as well on 100 new synthetic identities the network never saw (it replicates)" in html
    assert "on 100 new identities AUROC 0.88" in html and "on 100 new identities (1804 images, 95 with AU04)" in html
    assert "but not on the new identities, so not called detectors: untrained: AU12, AU26." in html
    assert "training images alone (the methods choose on every image, the held-out ones included), names 50.0%" in html
    assert ("Planted run (the yardstick; AUs planted: independent: no two with phi &gt; 0.2, during training, beside the "
            "emotion loss)") in html
    assert "Where auroc, the best of them, misses: AU04 &rarr; map 4 (AU17's planted map), held-out AUROC 0.91" in html
    # checked on fresh identities: the truth says where, the unambiguous recovery leads, misses in fresh AUROC
    result = json.loads((run / "validate" / "validate.json").read_text())
    result["planted"].update(
        truth="fresh: 100 synthetic identities the network never saw (1804 images)", unambiguous=["AU17"],
        recovery_unambiguous={"auroc": {"top1": 1.0}}, as_good_verified={"auroc": 1.0},
        recovery={"auroc": {"top1": 0.5, "ranks": {"AU04": 3, "AU17": 1}}},
        detectors={"AU04": {"map": 7, "auroc_fresh": 0.77, "detector": True, "truth": "outdone",
                            "outdone_by": {"map": 4, "auroc": 0.87}, "best_other_map_fresh": 4,
                            "best_other_auroc_fresh": 0.87},
                   "AU17": {"map": 4, "auroc_fresh": 0.91, "detector": True, "truth": "sole", "outdone_by": None,
                            "best_other_map_fresh": 9, "best_other_auroc_fresh": 0.8}},
        misses={"auroc": [{"au": "AU04", "winner": 4, "winner_planted_for": "AU17", "winner_auroc_held_out": 0.91,
                           "planted_auroc_held_out": 0.84, "winner_auroc_fresh": 0.87, "planted_auroc_fresh": 0.77}]})
    (run / "validate" / "validate.json").write_text(json.dumps(result))
    html = write_report(run).read_text()
    assert "(AUROC &ge; 0.75 on fresh: 100 synthetic identities the network never saw (1804 images))" in html
    assert "For 1 of the verified AUs the planted map separates the AU better than each of the five best" in html
    assert "there, at top-1: auroc 100.0%" in html and "not clearly worse on the fresh identities (a detector found " \
        "where the planted map is tied or outdone), of the verified AUs: auroc 100.0%" in html
    assert "AU04 &rarr; map 4 (AU17's planted map), AUROC on the fresh identities 0.87 against the planted map's 0.77" in html
    assert "held-out AUROC is optimistic" not in html
    table = html[html.index("The planted truth per AU"):]
    assert "<td>AU04</td><td>7</td><td>0.77</td><td>outdone by map 4</td><td>4 (0.87)</td><td>3</td>" in table
    assert "<td>AU17</td><td>4</td><td>0.91</td><td>sole</td><td>9 (0.8)</td><td>1</td>" in table
    assert "The causal check on" not in html  # no found planted map checked: no line
    # the causal check on the found planted maps, and what the head lets it show
    for alone, says in ((False, "need not read the planted ones"), (True, "reads the planted maps alone")):
        result["planted"].update(causal_found={"found": 3, "exceeds_all": 1, "above_mean": 2,
                                               "beaten_only_by_planted": 1}, head_reads_planted_only=alone)
        (run / "validate" / "validate.json").write_text(json.dumps(result))
        html = write_report(run).read_text()
        assert ("The causal check on the 3 found planted maps: zeroing the map drops the emotion logit more than every "
                "random map's for 1, more than their mean for 2; of the 2 others, 1 only by random maps that are "
                "planted too.") in html
        assert says in html
