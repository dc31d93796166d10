"""Shared fixtures: a tiny trained zhu2019 run, a run directory in the documented formats for the report,
and per-frame AU data (DISFA layout, synthetic face frames, videos)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from interpret.aumap import write_distances
from interpret.models import build_model
from interpret.runs import RunDataset, load_run, save_checkpoint, write_config

matplotlib.use("Agg")  # the test session plays the CLI's part: it picks the backend

#: Maps with a sheet in the report run.
N_MAPS = 6
#: Distances per AU over the maps: AU01 peaks at map 1, AU04 at map 4 (and wins maps 3..5).
DISTANCES = {"AU01": [0.5, 3.0, 1.0, 0.2, 0.1, 0.3], "AU04": [0.1, 0.2, 0.3, 2.0, 4.0, 1.5]}


def _png(path: Path, seed: int = 0, shape=(30, 40)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    plt.imsave(path, np.random.default_rng(seed).random(shape), cmap="gray")


def _report_run(root: Path, label: str = "happy", aumap: bool = True, sanity: bool = True) -> Path:
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
        _png(root / "deconv" / "relu3" / f"map_{m:03d}.png", 10 + m, (60, 90))
    _png(root / "deconv" / "relu3_overview.png", 3)
    if aumap:
        results = []
        for code, (name, distance) in zip((1, 4), DISTANCES.items()):
            best = int(np.argmax(distance))
            res = {"au": name, "au_code": code, "n": 9, "layer": "relu3", "epsilon": 0.01, "distance": distance,
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
                  for n, lab in (("trained", "trained"), ("head", "+ head"), ("conv3", "+ conv3"),
                                 ("conv2", "+ conv2"), ("conv1", "+ conv1"))]
        cell = {"ssim": 0.8, "spearman_abs": 0.7, "spearman_signed": 0.6, "edge_spearman": 0.1, "identical": False}
        (root / "sanity").mkdir()
        (root / "sanity" / "sanity.json").write_text(json.dumps({
            "layer": "relu3", "seed": 0, "n_seeds": 8, "rules": ["deconvnet", "gradient", "guided"], "stages": stages,
            "metrics": {r: {s["name"]: cell for s in stages} for r in ("deconvnet", "gradient", "guided")},
            "notes": ["a relu3 unit does not depend on out, fc"],
            "verdict": {"deconvnet": {"kind": "similar", "score": 0.75, "text": "the deconvnet projections stay similar"},
                        "gradient": {"kind": "changed", "score": 0.1, "text": "the gradient projections change"},
                        "guided": {"kind": "partly", "score": 0.4, "text": "the guided backprop projections change only partly"}},
            "aumap_check": {"alpha": 0.05, "n_aus": 2, "n_tested": 2, "survive_family": 2, "survive_bh": 2, "aus": []},
            "figures": {"cascade": "sanity/cascade.png", "similarity": "sanity/similarity.png"}}))
        _png(root / "sanity" / "cascade.png", 40)
        _png(root / "sanity" / "similarity.png", 41)
    return root


def _trained_run(path, steps: int = 3, seed: int = 0):
    """A run directory on 3 synthetic subjects with a zhu2019 model trained a few SGD steps."""
    config = {"arch": "zhu2019", "classes": None, "data": {"spec": "synthetic", "subjects": 3, "seed": 0, "frames": [3, 5]},
              "protocol": "paper", "size": 99, "split": {"kind": "kfold", "folds": 3, "fold": 0, "seed": 0},
              "seed": seed}
    from interpret.runs import class_targets, run_faceset

    faceset = run_faceset(config)
    config["classes"] = [faceset.emotions[i] for i in np.unique(faceset.emotion[faceset.emotion >= 0])]
    targets = torch.from_numpy(class_targets(faceset, config["classes"]))
    torch.manual_seed(seed)
    model = build_model("zhu2019", len(config["classes"]))
    images = RunDataset(faceset, np.full(len(faceset), "train"), config["classes"]).images(0, len(faceset))
    labelled = torch.nonzero(targets >= 0)[:, 0]
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    for step in range(steps):
        batch = labelled[torch.randperm(len(labelled), generator=torch.Generator().manual_seed(step))[:8]]
        loss = torch.nn.functional.cross_entropy(model(images[batch]), targets[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    save_checkpoint(path / "model.pt", model, {"arch": "zhu2019"})
    write_config(path, config)
    return load_run(path)



@pytest.fixture(scope="session")
def make_trained_run():
    """Factory: `make_trained_run(path, steps=3, seed=0)` -> a loaded `Run` (zhu2019, 3 synthetic subjects)."""
    return _trained_run


@pytest.fixture(scope="session")
def make_report_run():
    """Factory: `make_report_run(root, label=..., aumap=True, sanity=True)` -> a run folder for the report."""
    return _report_run


@pytest.fixture(scope="session")
def report_maps():
    """How many map sheets `make_report_run` writes."""
    return N_MAPS


# --- per-frame AU data (DISFA, BP4D, OpenFace / py-feat) -----------------------------------

@pytest.fixture(scope="session")
def disfa_tree(tmp_path_factory):
    """Three synthetic subjects in DISFA's layout, 40 labelled frames each (videos have 41)."""
    from interpret.synth.perframe import write_disfa

    return write_disfa(tmp_path_factory.mktemp("disfa") / "DISFA", subjects=3, frames=40, seed=3)


@pytest.fixture(scope="session")
def face_frames():
    """(frames (12, 176, 144) uint8, landmarks (12, 68, 2)): one synthetic identity whose mouth
    opens on every fourth frame."""
    from interpret.synth.render import FRAME, Scene, render
    from interpret.synth.shape import deform, sample_identity

    rng = np.random.default_rng(7)
    ident = sample_identity(rng, FRAME)
    frames, marks = [], []
    for i in range(12):
        amounts = {25: float(i % 4 == 3), 26: float(i % 4 == 3)}
        image, points = render(ident, deform(ident.shape, amounts), amounts, Scene(), rng)
        frames.append(image)
        marks.append(points)
    return np.stack(frames), np.stack(marks)


@pytest.fixture
def write_video():
    """write_video(path, frames): an MJPG .avi of grey frames (OpenCV's own encoder)."""

    def write(path, frames):
        h, w = frames[0].shape
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (w, h))
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
        writer.release()
        return path

    return write


# --- an untrained run of any registered architecture (predict) ------------------------------

EMOTIONS7 = ["anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise"]


@pytest.fixture(scope="session")
def make_untrained_run(tmp_path_factory):
    """Factory: a run directory holding an untrained (seeded) network and a complete config.

    `make_untrained_run(name, arch="zhu2019", classes=EMOTIONS7, **config_overrides)`; the data
    spec is 2 synthetic subjects (2 folds), so `load_run` and `build_cache` work on it quickly.
    """
    from interpret.models import build_model, input_spec
    from interpret.runs import save_checkpoint, write_config

    root = tmp_path_factory.mktemp("untrained_runs")

    def make(name: str, arch: str = "zhu2019", classes=EMOTIONS7, seed: int = 0, **overrides):
        path = root / name
        torch.manual_seed(seed)
        model = build_model(arch, len(classes))
        save_checkpoint(path / "model.pt", model, {"arch": arch})
        config = {"arch": arch, "classes": list(classes),
                  "data": {"spec": "synthetic", "subjects": 2, "seed": 0}, "protocol": "paper", "size": 99,
                  "input": input_spec(arch).to_dict(),
                  "split": {"kind": "kfold", "folds": 2, "fold": 0, "seed": 0}, "seed": seed}
        config.update(overrides)
        write_config(path, config)
        return path

    return make
