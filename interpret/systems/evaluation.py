"""`interpret evaluate`: a run's own metrics on one split, written to `RUN/evaluation.json`.

Every run: accuracy, per-class P/R/F1 with macro and weighted averages, per-class recognition
rates, confusion matrix, majority baseline. Valence runs (liu2019) add MAE/RMSE of the predicted
valence V and the argmax level's accuracy; wu2019 adds its sequence head and no-CNN baseline.
`evaluation.json` keeps one entry per `split/tta/valence-map` and names the latest.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from interpret.errors import InterpretError, located
from interpret.io import write_json
from interpret.runs import load_run
from interpret.systems import valence as val
from interpret.systems.scores import class_report, valence_report
from interpret.systems.specs import TTA, infer
from interpret.training import predict

EVALUATION = "evaluation.json"
SPLITS = ("train", "val", "test")


def evaluate_run(run_path, split: str = "test", tta: str = "none", valence_map: str = "fixed",
                 device: str = "cpu") -> dict:
    """Score run `run_path` on `split`; returns the entry it wrote to RUN/evaluation.json."""
    if split not in SPLITS:
        raise InterpretError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    if tta not in TTA:
        raise InterpretError(f"--tta must be one of {', '.join(TTA)}, got {tta!r}")
    if valence_map not in val.VALENCE_MAPS:
        raise InterpretError(f"--valence-map must be one of {', '.join(val.VALENCE_MAPS)}, got {valence_map!r}")
    run = load_run(run_path, device=device)
    data, classes = run.dataset, list(run.config["classes"])
    targets = data.targets
    rows = np.flatnonzero((data.split == split) & (targets >= 0))
    train_rows = np.flatnonzero((data.split == "train") & (targets >= 0))
    if not len(rows):
        raise InterpretError(f"{run.path}: the {split} split holds no labelled images")
    pixels = torch.from_numpy(data.faceset.images[rows]).to(run.device)
    logits = predict(run.model, pixels, forward=lambda net, batch: infer(net, batch, data.spec, tta))
    probs = torch.softmax(logits, 1).cpu()
    predicted = probs.argmax(1).numpy()
    entry = {"arch": run.config["arch"], "split": split, "tta": tta, "classes": classes,
             **class_report(targets[rows], predicted, targets[train_rows], classes)}
    if (run.config.get("labels") or {}).get("kind") == "valence":
        entry["level_accuracy"] = entry["accuracy"]
        entry["valence"] = valence_report(targets[rows] + 1, val.valence(probs, valence_map).numpy(),
                                          targets[train_rows] + 1, valence_map)
    if run.config["arch"] == "wu2019":
        entry.update(_wu_sequences(run, split))
    key = f"{split}/tta={tta}" + (f"/valence={valence_map}" if "valence" in entry else "")
    path = Path(run.path) / EVALUATION
    stored = read_evaluation(path) if path.is_file() else {"evaluations": {}}
    stored["evaluations"][key] = entry
    stored["latest"] = key
    write_json(path, stored)
    return entry


def read_evaluation(path) -> dict:
    path = Path(path)
    try:
        stored = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise located(path, f"malformed JSON ({err.msg})", err.lineno) from None
    if not isinstance(stored, dict) or not isinstance(stored.get("evaluations"), dict):
        raise located(path, "not an interpret evaluation file (no 'evaluations')")
    return stored


def _wu_sequences(run, split: str) -> dict:
    from interpret.data.transforms import evaluate
    from interpret.systems.sequences import _samples, frame_features, load_heads
    from interpret.systems.wu2019 import head_predict, image_rows

    data, classes = run.dataset, list(run.config["classes"])
    head, baseline, meta = load_heads(run.path, len(classes))
    model = run.model.to("cpu")
    pixels = torch.from_numpy(np.asarray(data.faceset.images))
    samples, labels = _samples(data.faceset, data.split, data.targets, split, meta["sequence"])
    train_samples, train_labels = _samples(data.faceset, data.split, data.targets, "train", meta["sequence"])
    features = frame_features(model, pixels[torch.from_numpy(np.unique(samples))]) if len(samples) else None
    out = {}
    if features is not None:
        position = {int(r): i for i, r in enumerate(np.unique(samples))}
        index = torch.tensor([[position[int(r)] for r in sample] for sample in samples])
        out["sequence"] = {"settings": meta["sequence"],
                           **class_report(labels, head_predict(head, features[index]).numpy(), train_labels, classes)}
    rows = np.flatnonzero((data.split == split) & (data.targets >= 0))
    train_rows = data.targets[(data.split == "train") & (data.targets >= 0)]
    rows_input = image_rows(evaluate(pixels[torch.from_numpy(rows)], data.spec))
    out["no_cnn_baseline"] = {"description": "the same LSTM head on raw pixels, one image row per time step",
                              **class_report(data.targets[rows], head_predict(baseline, rows_input).numpy(),
                                             train_rows, classes)}
    return out


def latest_evaluation(run_path) -> dict:
    """The latest entry of RUN/evaluation.json, evaluating the test split first if there is none."""
    path = Path(run_path) / EVALUATION
    if not path.is_file():
        return evaluate_run(run_path)
    stored = read_evaluation(path)
    return stored["evaluations"][stored["latest"]]
