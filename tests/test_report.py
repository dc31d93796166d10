"""The HTML report: renders from a run, every image exists, data is escaped, writes are atomic."""

from __future__ import annotations

import csv
import json
from html.parser import HTMLParser
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import interpret.report  # noqa: E402
from interpret.aumap import write_distances  # noqa: E402
from interpret.errors import InterpretError  # noqa: E402
from interpret.report import write_report  # noqa: E402
from interpret.runs import write_config  # noqa: E402

XSS = "<script>alert(1)</script>"
N_MAPS = 6
#: Distances per AU over the maps: AU01 peaks at map 1, AU04 at map 4 (and wins maps 3..5).
DISTANCES = {"AU01": [0.5, 3.0, 1.0, 0.2, 0.1, 0.3], "AU04": [0.1, 0.2, 0.3, 2.0, 4.0, 1.5]}


def _png(path: Path, seed: int = 0, shape=(30, 40)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    plt.imsave(path, np.random.default_rng(seed).random(shape), cmap="gray")


def make_run(root: Path, label: str = "happy", aumap: bool = True, sanity: bool = True) -> Path:
    """A run directory in the documented formats (config, metrics, history, PNGs, deconv, aumap, sanity)."""
    classes = ["neutral", label, "surprise"]
    write_config(root, {"arch": "zhu2019", "classes": classes, "data": {"spec": "synthetic", "subjects": 12, "seed": 0},
                        "protocol": "paper", "size": 99, "split": {"kind": "kfold", "folds": 4, "fold": 0, "seed": 0},
                        "recipe": {"name": "fast"}, "seed": 0, "device": "cpu", "epochs_run": 3})
    (root / "metrics.json").write_text(json.dumps({
        "test_accuracy": 0.8, "macro_f1": 0.75, "majority_baseline": {"class": label, "accuracy": 0.4},
        "chance": 1 / 3, "classes": classes, "confusion_matrix": [[3, 1, 0], [0, 4, 1], [0, 0, 1]],
        "per_class": {c: {"precision": 0.8, "recall": 0.7, "f1": 0.75, "support": 4} for c in classes},
        "best_epoch": 2, "protocol": "paper",
        "split": {"kind": "kfold", "subject_grouped": True, "description": "subject-grouped 4-fold",
                  "counts": {"train": {"images": 50, "subjects": 8}, "val": {"images": 10, "subjects": 2},
                             "test": {"images": 10, "subjects": 2}, "unlabelled_images_not_trained": 3}}}))
    with open(root / "history.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"])
        for epoch in (1, 2, 3):
            writer.writerow([epoch, 1.0 / epoch, 0.3 * epoch, 1.1 / epoch, 0.25 * epoch, 0.001, 1.5])
    _png(root / "curves.png", 1)
    _png(root / "confusion.png", 2)
    for m in range(N_MAPS):
        _png(root / "deconv" / "conv3" / f"map_{m:03d}.png", 10 + m, (60, 90))
    _png(root / "deconv" / "conv3_overview.png", 3)
    if aumap:
        results = []
        for code, (name, distance) in zip((1, 4), DISTANCES.items()):
            best = int(np.argmax(distance))
            res = {"au": name, "au_code": code, "n": 9, "layer": 3, "epsilon": 0.01, "distance": distance,
                   "best_map": best, "ranking": [{"map": int(i), "distance": distance[i]} for i in np.argsort(distance)[::-1]],
                   "permutations": 100, "p_family": 0.01 * code, "p_map": [0.5] * N_MAPS, "q_map": [0.6] * N_MAPS,
                   "auroc": [0.5] * N_MAPS, "best_auroc": 0.8, "stability": 0.7, "held_out_au": 2,
                   "distance_held_out": 1.2, "localization": {"energy_share": 0.4, "area_share": 0.1, "ratio": 4.0,
                                                              "rf_share": 0.3},
                   "n_present": 20, "n_absent": 50, "cooccurrence": {"counts": {"AU02": 10}}}
            (root / "aumap").mkdir(exist_ok=True)
            (root / "aumap" / f"{name}.json").write_text(json.dumps(res))
            _png(root / "aumap" / f"{name}_distance.png", 20 + code)
            _png(root / "aumap" / f"{name}_best.png", 30 + code)
            results.append(res)
        write_distances(root / "aumap" / "distances.csv", results)
    if sanity:
        stages = [{"name": n, "label": lab, "randomized": [], "can_change": n.startswith("conv")}
                  for n, lab in (("trained", "trained"), ("fc", "+ FC head"), ("conv3", "+ conv3"),
                                 ("conv2", "+ conv2"), ("conv1", "+ conv1"))]
        cell = {"ssim": 0.8, "spearman_abs": 0.7, "spearman_signed": 0.6, "edge_spearman": 0.1, "identical": False}
        (root / "sanity").mkdir()
        (root / "sanity" / "sanity.json").write_text(json.dumps({
            "layer": 3, "seed": 0, "n_seeds": 8, "rules": ["deconvnet", "gradient", "guided"], "stages": stages,
            "metrics": {r: {s["name"]: cell for s in stages} for r in ("deconvnet", "gradient", "guided")},
            "notes": ["a conv3 unit does not depend on out, fc"],
            "verdict": {"deconvnet": {"kind": "similar", "score": 0.75, "text": "the deconvnet projections stay similar"},
                        "gradient": {"kind": "changed", "score": 0.1, "text": "the gradient projections change"},
                        "guided": {"kind": "partly", "score": 0.4, "text": "the guided backprop projections change only partly"}},
            "aumap_check": {"alpha": 0.05, "n_aus": 2, "n_tested": 2, "survive_family": 2, "survive_bh": 2, "aus": []},
            "figures": {"cascade": "sanity/cascade.png", "similarity": "sanity/similarity.png"}}))
        _png(root / "sanity" / "cascade.png", 40)
        _png(root / "sanity" / "similarity.png", 41)
    return root


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


def test_report_renders_and_every_image_exists(tmp_path):
    run = make_run(tmp_path / "run")
    index = write_report(run)
    assert index == run / "report" / "index.html"
    page = parse(index)
    assert len(set(page.images)) >= N_MAPS + 10  # sheets, overview, curves, confusion, heatmap, AU and sanity figures
    for src in page.images:
        assert not Path(src).is_absolute() and ".." not in src
        assert (index.parent / src).is_file(), src
    assert not any(link.startswith(("http:", "https:", "//")) for link in page.links)
    assert page.scripts_with_src == 0
    # each map's best AU is the argmax over AUs of its distance
    assert page.cards == {0: "AU01", 1: "AU01", 2: "AU01", 3: "AU04", 4: "AU04", 5: "AU04"}
    html = index.read_text()
    for text in ("80.0%", "majority baseline", "33.3%", "AU01: inner brow raiser", "best map of AU04",
                 "The deconvnet projections stay similar", "2 of 2 AUs have a family-wise p"):
        assert text in html, text


def test_missing_pieces_are_stated_and_missing_runs_refused(tmp_path):
    run = make_run(tmp_path / "run", aumap=False, sanity=False)
    html = write_report(run, tmp_path / "out").read_text()
    assert "No AU distances yet" in html and "No sanity check yet" in html and "No AU results" in html
    assert 'data-au=""' in html
    with pytest.raises(InterpretError, match="run directory not found"):
        write_report(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InterpretError, match="config.json"):
        write_report(tmp_path / "empty")


def test_data_and_paths_are_escaped(tmp_path):
    run = make_run(tmp_path / "<script>alert(1)<" / "script>", label=XSS)
    assert XSS in str(run)
    html = write_report(run, tmp_path / "out").read_text()
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_a_failed_render_leaves_the_previous_report_intact(tmp_path, monkeypatch):
    run = make_run(tmp_path / "run")
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


def test_a_rerender_replaces_the_report_and_foreign_folders_are_refused(tmp_path):
    run = make_run(tmp_path / "run")
    index = write_report(run)
    (run / "deconv" / "conv3" / "map_005.png").unlink()
    write_report(run)
    assert not (index.parent / "img" / "maps" / "map_005.png").exists()
    assert len(parse(index).cards) == N_MAPS - 1
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(InterpretError, match="not a report folder"):
        write_report(run, foreign)
    assert (foreign / "keep.txt").read_text() == "mine"


def test_verdicts_lead_the_report_and_alone_label_gallery_maps(tmp_path):
    from interpret.verdict import summary, verdict

    run = make_run(tmp_path / "run")
    method = {"winner": 4, "p_family": 0.001, "q": 0.002, "auroc": 0.9}
    found = verdict({"au": "AU04", "methods": {"directional": method, "auroc": method, "distance": method},
                     "localization": {"4": {"inside_share": 0.5, "area_share": 0.1, "iou": 0.2}}})
    none = verdict({"au": "AU01", "methods": {"distance": {"winner": 1, "p_family": 0.001, "q": 0.002, "auroc": 0.2}}})
    (run / "validate").mkdir()
    (run / "validate" / "validate.json").write_text(json.dumps({
        "summary": summary([none, found]), "verdicts": [none, found], "layer": "relu3", "alpha": 0.05,
        "quantile": 0.005, "false_positives": {"run": {}}}))
    index = write_report(run)
    html = index.read_text()
    assert html.index("1 of 2 AUs: detector found") < html.index('id="overview"')
    assert "AU04: detector found: map 4" in html and "fires LESS" in html
    assert parse(index).cards == {0: "", 1: "", 2: "", 3: "", 4: "AU04", 5: ""}  # AU01's paper map 1 is unlabelled
    assert "largest distance: AU01" in html and "Vertical stripes" in html
