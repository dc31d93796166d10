"""One self-contained static HTML report of a run (`interpret report`).

`write_report` gathers what the run directory holds (config, metrics, history, deconvolution
sheets, au-map results, sanity check), renders ``index.html`` from the Jinja2 templates in
``interpret/templates`` (autoescape on; inline CSS and vanilla JS; no network) and copies every
image next to it (relative links). It builds the whole folder under a temporary name beside the
output and swaps it in only when complete, so a failed render leaves any previous report intact.
Missing pieces (no deconvolution, au-map or sanity yet) are stated in their section.
"""

from __future__ import annotations

import csv
import math
import os
import re
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import cv2
import h5py
import jinja2
import numpy as np
from matplotlib.figure import Figure

from interpret.errors import located
from interpret.facs import AU_NAMES, au_name
from interpret.io import default_mode, read_json, sha256_file
from interpret.runs import read_config, run_input

TEMPLATE = "report.html"
#: Accuracy at most this far above the majority baseline is flagged as not learned.
BASELINE_MARGIN = 0.02
#: Deconvolution sheets shown beside each AU (its best maps by distance).
AU_BEST_MAPS = 3
#: Widths (px) of what the page holds: gallery thumbnails, the sheet opened on click, the all-maps
#: overview; JPEG keeps a 256-map report within ~15 MB (the run keeps the lossless PNGs).
THUMB_WIDTH, FULL_WIDTH, OVERVIEW_WIDTH = 320, 1400, 1800
JPEG_QUALITY = 65


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("interpret", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = _num
    env.filters["fixed"] = lambda v: f"{round(float(v), 2) + 0.0:.2f}" if _finite(v) else "n/a"
    env.globals.update(rule_labels={"deconvnet": "deconvnet", "gradient": "gradient", "guided": "guided backprop"},
                       verdict_words={"similar": "stays similar (fails the check)", "partly": "changes partly",
                                      "changed": "changes (passes the check)"})
    env.filters["pct"] = lambda v: "n/a" if not _finite(v) else f"{100 * float(v):.1f}%"
    env.filters["pval"] = _pval
    return env


def _pval(value) -> str:
    """A p-value for display: '< 0.001' below 0.001 (a permutation p is never exactly that small)."""
    if not _finite(value):
        return "n/a"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _num(value, digits: int = 3) -> str:
    """A number for display: ints as is, floats to `digits` significant digits, else 'n/a'."""
    if isinstance(value, bool) or value is None:
        return "n/a" if value is None else str(value)
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}g}" if _finite(value) else "n/a"


def _read_history(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _to_float(text) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return float("nan")


def read_distances(path: Path, layer: str | None) -> tuple[list[str], np.ndarray]:
    """AU names and their (A, C) distances for `layer` from ``aumap/distances.csv`` (NaN: missing)."""
    if not path.is_file():
        return [], np.zeros((0, 0))
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = sorted((c for c in reader.fieldnames or [] if re.fullmatch(r"map_\d+", c)),
                         key=lambda c: int(c[4:]))
        rows = [r for r in reader if str(r.get("layer", layer)) == str(layer)]
    if not columns:
        raise located(path, "no map_N columns")
    return [r["au"] for r in rows], np.array([[_to_float(r[c]) for c in columns] for r in rows]).reshape(len(rows), -1)


class _Assets:
    """Copies images into the report folder and hands back their relative links."""

    def __init__(self, root: Path):
        self.root = root

    def copy(self, source: Path, name: str) -> str | None:
        if not source.is_file():
            return None
        target = self.root / "img" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        return f"img/{name}"

    def thumbnail(self, source: Path, name: str, width: int = THUMB_WIDTH) -> str | None:
        """A JPEG of `source` scaled down to `width` pixels (never up), for the page itself."""
        image = cv2.imread(str(source), cv2.IMREAD_COLOR) if source.is_file() else None
        if image is None:
            return None
        if image.shape[1] > width:
            height = max(1, round(image.shape[0] * width / image.shape[1]))
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        target = (self.root / "img" / name).with_suffix(".jpg")
        target.parent.mkdir(parents=True, exist_ok=True)
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise located(source, "could not encode a thumbnail")
        target.write_bytes(data.tobytes())
        return f"img/{Path(name).with_suffix('.jpg').as_posix()}"

    def figure(self, fig, name: str) -> str:
        target = self.root / "img" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(target, format="png", dpi=100, bbox_inches="tight")
        return f"img/{name}"


def _analysed_layer(run: Path) -> str | None:
    """The layer the latest au-map (else deconvolution file or sheets, else cache) step analysed; None when none ran."""
    for path in sorted((run / "aumap").glob("AU*.json"), key=lambda p: p.stat().st_mtime, reverse=True):
        data = read_json(path)
        if isinstance(data, dict) and data.get("layer") is not None:
            return str(data["layer"])
    for found in ((run / "deconv").glob("*.h5"), (p for p in (run / "deconv").glob("*") if p.is_dir()),
                  (run / "activations").glob("*.h5")):
        files = sorted(found, key=lambda p: p.stat().st_mtime)
        if files:
            return files[-1].stem
    return None


def _map_count(run: Path, layer: str | None, aumap: dict) -> int | None:
    """How many maps `layer` has: from its activation cache, else the width of the AU distances."""
    path = run / "activations" / f"{layer}.h5"
    if layer is not None and path.is_file():
        try:
            with h5py.File(path, "r") as h5:
                return int(h5["max"].shape[1])
        except (OSError, KeyError):
            pass
    return int(aumap["table"].shape[1]) if len(aumap["names"]) else None


def _overview(run: Path, config: dict, assets: _Assets) -> dict:
    metrics = read_json(run / "metrics.json")
    history = _read_history(run / "history.csv")
    classes = [str(c) for c in (metrics or {}).get("classes") or config.get("classes") or []]
    per_class = [{"name": name, **values} for name, values in ((metrics or {}).get("per_class") or {}).items()]
    confusion = (metrics or {}).get("confusion_matrix") or []
    split = (metrics or {}).get("split") or config.get("split") or {}
    counts = [{"part": part, **values} for part, values in (split.get("counts") or {}).items() if isinstance(values, dict)]
    accuracy = (metrics or {}).get("test_accuracy", (metrics or {}).get("accuracy"))
    majority = (metrics or {}).get("majority_baseline") or {}
    baseline_note = None
    if _finite(accuracy) and _finite(majority.get("accuracy")) and accuracy <= majority["accuracy"] + BASELINE_MARGIN:
        baseline_note = (f"The test accuracy ({100 * accuracy:.1f}%) does not beat always predicting "
                         f"'{majority.get('class')}' ({100 * majority['accuracy']:.1f}%) by more than "
                         f"{100 * BASELINE_MARGIN:.0f} points: the network has not learned the classes beyond their "
                         "frequency, so its maps need not encode expressions.")
    return {
        "config": config,
        "data": config.get("data") or {},
        "recipe": config.get("recipe") or {},
        "classes": classes,
        "metrics": metrics,
        "accuracy": accuracy,
        "majority": majority,
        "baseline_note": baseline_note,
        "chance": (metrics or {}).get("chance", 1 / len(classes) if classes else None),
        "per_class": per_class,
        "confusion": confusion,
        "split": split,
        "counts": counts,
        "unlabelled": (split.get("counts") or {}).get("unlabelled_images_not_trained"),
        "epochs": len(history),
        "curves": assets.copy(run / "curves.png", "curves.png"),
        "confusion_png": assets.copy(run / "confusion.png", "confusion.png"),
        "evaluations": _evaluations(run),
    }


def _evaluations(run: Path) -> list[dict]:
    """Rows of RUN/evaluation.json (`interpret evaluate`): one per split / test-time crop / valence map."""
    stored = read_json(run / "evaluation.json")
    entries = (stored or {}).get("evaluations") if isinstance(stored, dict) else None
    if not isinstance(entries, dict):
        return []
    return [{"key": key, "accuracy": e.get("accuracy"), "macro_f1": e.get("macro_f1"),
             "weighted_f1": e.get("weighted_f1"), "rmse": (e.get("valence") or {}).get("rmse"),
             "sequence": (e.get("sequence") or {}).get("accuracy"),
             "no_cnn": (e.get("no_cnn_baseline") or {}).get("accuracy")}
            for key, e in entries.items() if isinstance(e, dict)]


def _aumap(run: Path, layer: str | None, assets: _Assets, provenance: _Provenance) -> dict:
    folder = run / "aumap"
    results = []
    for path in sorted(folder.glob("AU*.json"), key=lambda p: int(re.sub(r"\D", "", p.stem) or 0)):
        data = read_json(path)
        if not isinstance(data, dict) or str(data.get("layer", layer)) != str(layer):
            continue
        if not provenance.fresh(data.get("model_sha256"), path, "au-map"):
            continue
        name = str(data.get("au", path.stem))
        stem = re.sub(r"[^A-Za-z0-9_-]", "_", path.stem)
        best = data.get("best_map")
        distance = data.get("distance") or []
        p_map, q_map = data.get("p_map") or [], data.get("q_map") or []
        ranking = data.get("ranking") or [{"map": i, "distance": distance[i]}
                                          for i in np.argsort(-np.asarray(distance))[:10].tolist()]
        results.append({
            **data,
            "au": name,
            "best_map": best,
            "anchor": stem,
            "description": AU_NAMES.get(data.get("au_code"), ""),
            "held_out_name": au_name(data["held_out_au"]) if isinstance(data.get("held_out_au"), int) else None,
            "best_distance": distance[best] if isinstance(best, int) and best < len(distance) else None,
            "best_p_map": p_map[best] if isinstance(best, int) and best < len(p_map) else None,
            "best_q_map": q_map[best] if isinstance(best, int) and best < len(q_map) else None,
            "ranking": ranking[:10],
            "top_maps": [int(r["map"]) for r in ranking[:AU_BEST_MAPS]],
            "distance_png": assets.copy(folder / f"{path.stem}_distance.png", f"aumap/{stem}_distance.png"),
            "best_png": assets.thumbnail(folder / f"{path.stem}_best.png", f"aumap/{stem}_best.jpg", FULL_WIDTH),
            "localization": data.get("localization") or {},
            "cooccurrence": data.get("cooccurrence") or {},
        })
    names, table = read_distances(folder / "distances.csv", layer)
    keep = [i for i, name in enumerate(names) if name in {r["au"] for r in results}]  # stale AUs stay out
    names, table = [names[i] for i in keep], table[keep] if len(names) else table
    heatmap = _heatmap(names, table, layer, assets) if len(names) else None
    return {"results": results, "names": names, "table": table, "heatmap": heatmap}


def _heatmap(names: list[str], table: np.ndarray, layer: str, assets: _Assets) -> str:
    """AU x map distance heatmap, each AU's row divided by its maximum; the best map circled."""
    peak = np.nanmax(np.where(np.isfinite(table), table, np.nan), axis=1, keepdims=True)
    share = np.divide(table, peak, out=np.zeros_like(table), where=np.isfinite(peak) & (peak > 0))
    fig = Figure(figsize=(min(16, 3 + 0.05 * table.shape[1]), 1.2 + 0.32 * len(names)))
    ax = fig.subplots()
    image = ax.imshow(share, aspect="auto", cmap="magma", vmin=0, vmax=1, interpolation="nearest")
    best = np.nanargmax(np.where(np.isfinite(table), table, -np.inf), axis=1)
    ax.scatter(best, np.arange(len(names)), s=30, facecolors="none", edgecolors="cyan", linewidths=1.2,
               label="best map")
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel(f"{layer} map")
    ax.legend(loc="upper right", fontsize=7, framealpha=0.8)
    fig.colorbar(image, ax=ax, fraction=0.03, pad=0.01, label="distance / AU's maximum")
    return assets.figure(fig, "heatmap.png")


def _verdicts(run: Path, assets: _Assets) -> dict | None:
    """The per-AU verdicts, recovery and controls of ``RUN/validate/validate.json`` (None before validate)."""
    result = read_json(run / "validate" / "validate.json")
    if not isinstance(result, dict) or not isinstance(result.get("verdicts"), list):
        return None
    labels = {}
    for v in result["verdicts"]:
        if v.get("verdict") == "found" and isinstance(v.get("map"), int):
            labels.setdefault(v["map"], []).append(v["au"])
    return {**result, "labels": labels, "figure": assets.copy(run / "validate" / "validate.png", "validate.png")}


def _gallery(run: Path, layer: str | None, aumap: dict, assets: _Assets) -> dict:
    folder = run / "deconv" / str(layer)
    sheets = {}
    for path in folder.glob("map_*.png") if layer is not None and folder.is_dir() else []:
        match = re.fullmatch(r"map_(\d+)\.png", path.name)
        if match:
            sheets[int(match.group(1))] = path
    names, table = aumap["names"], aumap["table"]
    detectors = {}
    for res in aumap["results"]:
        detectors.setdefault(res.get("best_map"), []).append(res["au"])
    items = []
    for index in sorted(sheets):
        item = {"map": index, "image": assets.thumbnail(sheets[index], f"maps/map_{index:03d}.jpg"),
                "full": assets.thumbnail(sheets[index], f"maps/full/map_{index:03d}.jpg", FULL_WIDTH),
                "au": None, "distance": None, "detector_of": detectors.get(index, [])}
        column = table[:, index] if len(names) and index < table.shape[1] else np.zeros(0)
        if column.size and np.nanmax(np.where(np.isfinite(column), column, -np.inf)) > 0:
            best = int(np.nanargmax(np.where(np.isfinite(column), column, -np.inf)))
            item["au"], item["distance"] = names[best], float(column[best])
        items.append(item)
    au_options = sorted({i["au"] for i in items if i["au"]}, key=lambda a: int(re.sub(r"\D", "", a) or 0))
    return {
        "items": items,
        "au_options": [{"au": a, "count": sum(i["au"] == a for i in items)} for a in au_options],
        "overview": assets.thumbnail(run / "deconv" / f"{layer}_overview.png", "deconv_overview.jpg",
                                     OVERVIEW_WIDTH),
        "sheets": {i["map"]: i["image"] for i in items},
        "full": {i["map"]: i["full"] for i in items},
    }


def _sanity(run: Path, layer: str | None, assets: _Assets) -> dict | None:
    result = read_json(run / "sanity" / "sanity.json")
    if not isinstance(result, dict):
        return None
    figures = result.get("figures") or {}
    rules = result.get("rules") or []
    table = [{"label": st.get("label", st.get("name")), "can_change": st.get("can_change", True),
              "cells": [(result.get("metrics") or {}).get(r, {}).get(st.get("name"), {}) for r in rules]}
             for st in result.get("stages") or []]
    return {
        **result,
        "table": table,
        "cascade_png": assets.copy(run / figures.get("cascade", "sanity/cascade.png"), "sanity/cascade.png"),
        "similarity_png": assets.copy(run / figures.get("similarity", "sanity/similarity.png"), "sanity/similarity.png"),
        "layer_matches": str(result.get("layer")) == str(layer),
        "stage_labels": ", then ".join(st.get("label", st.get("name", "")).lstrip("+ ")
                                       for st in (result.get("stages") or [])[1:]) or "no stage",
        "implications": _implications(result),
    }


def _implications(result: dict) -> list[str]:
    """What the deconvolution does and does not show about this network, from the sanity verdicts."""
    verdict = result.get("verdict") or {}
    deconv, gradient = verdict.get("deconvnet") or {}, verdict.get("gradient") or {}
    layer = result.get("layer")
    lines = []
    kind = deconv.get("kind")
    if kind == "similar":
        lines.append(f"The {layer} deconvolutions of this network survive the randomization of the weights "
                     "they are meant to explain: they show where in the image a unit fires and the image "
                     "structure (edges) there, not what the unit has learned. Read the gallery as localization, "
                     "not as a picture of learned features.")
    elif kind == "changed":
        lines.append(f"The {layer} deconvolutions of this network change when its weights are randomized: "
                     "they carry information about the learned filters, so the gallery patterns are partly "
                     "the network's, not only the image's.")
    elif kind == "partly":
        lines.append(f"The {layer} deconvolutions of this network change only partly under randomization: "
                     "part of each pattern is the learned filters, part is the input image and the architecture "
                     "(unpooling switches, the backward ReLU). Compare with the gradient column before "
                     "attributing a pattern to learning.")
    if deconv.get("score") is not None and gradient.get("score") is not None:
        more = "less" if deconv["score"] < gradient["score"] else "more"
        lines.append(f"After the full cascade the deconvnet stays {more} similar to its trained projection than the "
                     f"plain gradient does (score {deconv['score']:.2f} vs {gradient['score']:.2f}; score = mean of "
                     "SSIM and Spearman |.|; 1 = unchanged).")
    metrics = (result.get("metrics") or {}).get("deconvnet") or {}
    stages = [st.get("name") for st in result.get("stages") or []]
    if stages and "trained" in metrics and stages[-1] in metrics:
        trained, randomized = metrics["trained"].get("edge_spearman"), metrics[stages[-1]].get("edge_spearman")
        if _finite(trained) and _finite(randomized):
            more = "more" if randomized > trained else "less"
            lines.append(f"With random weights the deconvnet recovers {more} of the input's edges than with the "
                         f"trained ones (Spearman of |projection| with the edge magnitude {randomized:.2f} vs "
                         f"{trained:.2f}): image structure in a deconvolution is "
                         f"{'not evidence of learning' if more == 'more' else 'partly due to the trained filters'}.")
    lines.append("A deconvolution is one image's reconstruction of one activation. It does not show that a map "
                 "detects an AU: that claim rests on the distance ranking, its permutation p-value, AUROC, "
                 "stability over subjects and localization (the AU sections).")
    check = result.get("aumap_check")
    if check:
        lines.append(f"{check['survive_family']} of {check['n_tested']} AUs have a best map with family-wise "
                     f"p < {check['alpha']} ({check['survive_bh']} after Benjamini–Hochberg across AUs).")
    return lines


class _Provenance:
    """Which derived files were computed from the run's current model.pt.

    au-map, sanity and deconvolution outputs record the SHA-256 of the model they came from; one
    that records another (or none) describes a model this run no longer holds: the report leaves
    it out and says which step to run again. A run without model.pt cannot be checked.
    """

    def __init__(self, run: Path):
        model = run / "model.pt"
        self.current = sha256_file(model) if model.is_file() else None
        self.stale: list[str] = []

    def fresh(self, recorded, path: Path, step: str) -> bool:
        if self.current is None or recorded == self.current:
            return True
        self.stale.append(f"{path.parent.name}/{path.name} was computed from {'another' if recorded else 'an unrecorded'} "
                          f"model.pt: left out; run `interpret {step}` again")
        return False


def _deconv_sha(run: Path, layer) -> str | None:
    path = run / "deconv" / f"{layer}.h5"
    if not path.is_file():
        return None
    try:
        with h5py.File(path, "r") as h5:
            value = h5.attrs.get("model_sha256")
    except OSError:
        return None
    return value.decode() if isinstance(value, bytes) else value


def build_context(run: Path, config: dict, assets: _Assets) -> dict:
    """Everything the template shows, with images copied into the report folder."""
    layer = _analysed_layer(run)
    provenance = _Provenance(run)
    aumap = _aumap(run, layer, assets, provenance)
    deconv_file = run / "deconv" / f"{layer}.h5"
    sheets_fresh = not deconv_file.is_file() or provenance.fresh(_deconv_sha(run, layer), deconv_file, "deconv")
    gallery = _gallery(run, layer if sheets_fresh else None, aumap, assets)
    verdicts = _verdicts(run, assets)
    if verdicts is not None:  # a map carries an AU label only where a verdict gives it one
        for item in gallery["items"]:
            item["largest_distance_au"], item["au"] = item["au"], ", ".join(verdicts["labels"].get(item["map"], [])) or None
        found = sorted({au for aus in verdicts["labels"].values() for au in aus}, key=lambda a: int(re.sub(r"\D", "", a) or 0))
        gallery["au_options"] = [{"au": a, "count": sum(i["au"] == a for i in gallery["items"])} for a in found]
    overview = _overview(run, config, assets)
    sanity = _sanity(run, layer, assets)
    if sanity is not None and not provenance.fresh(sanity.get("model_sha256"), run / "sanity" / "sanity.json",
                                                   "sanity"):
        sanity = None
    if sanity and overview["baseline_note"]:
        sanity["implications"].insert(1, "This network's test accuracy does not beat the majority baseline: weights "
                                         "that matter for a projection need not be weights that learned expressions.")
    for res in aumap["results"]:
        res["top_sheets"] = [{"map": m, "image": gallery["sheets"].get(m), "full": gallery["full"].get(m)}
                             for m in res["top_maps"]]
    return {
        "title": f"interpret report: {run.name}",
        "run": str(run),
        "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "layer": layer,
        "layer_maps": _map_count(run, layer, aumap),
        "input_shape": "{size}x{size}, {channels} channel(s), {normalize}".format(**run_input(config).to_dict()),
        "overview": overview,
        "gallery": gallery,
        "has_distances": bool(aumap["names"]),
        # runs from before the key existed may or may not have AU labels: only an empty list says none
        "no_au_labels": config.get("au_codes") == [],
        "data_source": config["data"]["spec"],
        "aumap": {"results": aumap["results"], "heatmap": aumap["heatmap"], "n_aus": len(aumap["names"])},
        "sanity": sanity,
        "stale": provenance.stale,
        "verdicts": verdicts,
    }


def _replace_folder(built: Path, out: Path) -> None:
    """Swap the finished folder `built` in as `out`; an existing `out` is removed only afterwards."""
    if not out.exists():
        os.rename(built, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
    old.rmdir()
    os.rename(out, old)
    try:
        os.rename(built, out)
    except OSError:
        os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def write_report(run_path, out=None) -> Path:
    """Render the report of the run at `run_path` into `out` (default RUN/report); returns index.html."""
    run = Path(run_path)
    config = read_config(run)
    out = Path(out) if out is not None else run / "report"
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "index.html").is_file())):
        raise located(out, "exists and is not a report folder; refusing to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    built = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        context = build_context(run, config, _Assets(built))
        html = _environment().get_template(TEMPLATE).render(**context)
        (built / "index.html").write_text(html, encoding="utf-8")
        built.chmod(default_mode(directory=True))
        _replace_folder(built, out)
    except BaseException:
        shutil.rmtree(built, ignore_errors=True)
        raise
    return out / "index.html"
