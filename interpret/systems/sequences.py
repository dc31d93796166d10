"""wu2019's second stage: the frozen frame CNN's 512-d features, cached, then the LSTM head over
sequences of them, and the "no CNN" baseline (the same head on image rows). Run by
`interpret train --arch wu2019` after the frame CNN has trained; written to the run as
`RUN/features.h5` (the per-frame features) and `RUN/sequence.pt` (both heads).
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import torch

from interpret.data.transforms import evaluate
from interpret.errors import InterpretError, located
from interpret.io import atomic_path
from interpret.models import input_spec
from interpret.runs import load_checkpoint, save_checkpoint
from interpret.systems.scores import class_report
from interpret.systems.wu2019 import (SEQUENCE_MODES, SequenceHead, WuFrameCNN, build_sequences, fit_head,
                                      head_predict, image_rows)

FEATURES_FILE = "features.h5"
HEADS_FILE = "sequence.pt"
DEFAULTS = {"mode": "single", "steps": 1, "stride": 1, "epochs": 60, "lr": 1e-3, "batch_size": 32}


def sequence_config(options: dict | None) -> dict:
    """The sequence stage's settings (`DEFAULTS` overridden by `options`), checked."""
    config = {**DEFAULTS, **{k: v for k, v in (options or {}).items() if v is not None}}
    unknown = set(config) - set(DEFAULTS)
    if unknown:
        raise InterpretError(f"unknown sequence options: {', '.join(sorted(unknown))}")
    if config["mode"] not in SEQUENCE_MODES:
        raise InterpretError(f"--sequence-mode must be one of {', '.join(SEQUENCE_MODES)}, got {config['mode']!r}")
    if config["mode"] == "single" and int(config["steps"]) != 1:
        raise InterpretError("--sequence-mode single uses one frame per sample: --seq-len must be 1")
    if int(config["steps"]) < 1 or int(config["stride"]) < 1:
        raise InterpretError("--seq-len and the stride must be at least 1")
    return config


@torch.no_grad()
def frame_features(model: WuFrameCNN, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """(N, 512) features of (N, S, S) uint8 faces through the frozen CNN (eval mode)."""
    model.eval()
    spec = input_spec("wu2019")
    out = [model.embed(evaluate(images[s:s + batch_size], spec)).float() for s in range(0, len(images), batch_size)]
    return torch.cat(out) if out else torch.zeros(0, model.fc.out_features)


def write_features(path: Path, features: np.ndarray, faceset) -> None:
    """The per-frame feature cache: features (N, 512), sequence and frame per row, data fingerprint."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        h5.create_dataset("features", data=features.astype(np.float32))
        h5.create_dataset("sequence", data=np.asarray(faceset.sequence, dtype=object), dtype=h5py.string_dtype())
        h5.create_dataset("frame", data=np.asarray(faceset.frame))
        h5.attrs["dataset"] = faceset.fingerprint()


def _samples(faceset, split, targets, part: str, config: dict):
    rows = np.flatnonzero(split == part)
    samples, labels = build_sequences(faceset.sequence[rows], faceset.frame[rows], targets[rows], config["mode"],
                                      int(config["steps"]), int(config["stride"]))
    return rows[samples] if len(samples) else samples, labels


def _fit_and_score(head, inputs, labels, config, seed):
    x_train, y_train = inputs["train"], torch.from_numpy(labels["train"])
    if not len(x_train):
        raise InterpretError("wu2019: no training sequences (sequences shorter than --seq-len?)")
    fit_head(head, x_train, y_train, int(config["epochs"]), int(config["batch_size"]), float(config["lr"]), seed)
    return {part: head_predict(head, inputs[part]).numpy() for part in ("val", "test")}


def finish_wu2019(model: WuFrameCNN, config: dict, out: Path, faceset, split, targets, device, progress=True) -> dict:
    """Freeze the CNN, cache features, train the sequence head and the no-CNN baseline; metrics."""
    cfg = config["sequence"]
    classes = config["classes"]
    seed = int(config["seed"])
    cpu_model = model.to("cpu").eval()
    pixels = torch.from_numpy(np.asarray(faceset.images))
    features = frame_features(cpu_model, pixels)
    write_features(Path(out) / FEATURES_FILE, features.numpy(), faceset)
    rows_input = image_rows(evaluate(pixels, input_spec("wu2019")))
    torch.manual_seed(seed)
    head = SequenceHead(len(classes), int(cfg["steps"]))
    baseline = SequenceHead(len(classes), rows_input.shape[1], in_features=rows_input.shape[2])
    samples, labels = {}, {}
    for part in ("train", "val", "test"):
        samples[part], labels[part] = _samples(faceset, split, targets, part, cfg)
    predicted = _fit_and_score(head, {p: features[samples[p]] for p in samples}, labels, cfg, seed)
    frame_rows = {p: np.flatnonzero((split == p) & (targets >= 0)) for p in ("train", "val", "test")}
    frame_labels = {p: targets[r] for p, r in frame_rows.items()}
    baseline_predicted = _fit_and_score(baseline, {p: rows_input[r] for p, r in frame_rows.items()}, frame_labels,
                                        cfg, seed)
    save_checkpoint(Path(out) / HEADS_FILE, head, {"classes": classes, "sequence": cfg,
                                                    "baseline_steps": int(rows_input.shape[1]),
                                                    "baseline_features": int(rows_input.shape[2])})
    _save_baseline(Path(out) / HEADS_FILE, baseline)
    train_labels = labels["train"]
    return {
        "sequence": {"settings": cfg, **class_report(labels["test"], predicted["test"], train_labels, classes),
                     "val_accuracy": float(np.mean(labels["val"] == predicted["val"])) if len(labels["val"]) else None},
        "no_cnn_baseline": {"description": "the same LSTM head on raw pixels, one image row per time step",
                            **class_report(frame_labels["test"], baseline_predicted["test"],
                                              frame_labels["train"], classes)},
    }


def _save_baseline(path: Path, baseline: SequenceHead) -> None:
    blob = torch.load(path, map_location="cpu", weights_only=True)
    blob["baseline"] = {k: v.detach().cpu().clone() for k, v in baseline.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)


def load_heads(run_path: Path, n_classes: int) -> tuple[SequenceHead, SequenceHead, dict]:
    """The trained sequence head and no-CNN baseline of a wu2019 run."""
    path = Path(run_path) / HEADS_FILE
    if not path.is_file():
        raise located(path, "missing: a wu2019 run writes it after training its frame CNN")
    blob = load_checkpoint(path)
    meta = blob["meta"]
    head = SequenceHead(n_classes, int(meta["sequence"]["steps"]))
    head.load_state_dict(blob["state_dict"])
    baseline = SequenceHead(n_classes, int(meta["baseline_steps"]), in_features=int(meta["baseline_features"]))
    baseline.load_state_dict(blob["baseline"])
    return head.eval(), baseline.eval(), meta
