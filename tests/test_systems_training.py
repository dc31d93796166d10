"""Each seed system trains on the synthetic default (tiny), is evaluated and compared through the
CLI; wu2019's sequence builder and an LSTM that must use temporal order; FER's own split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from interpret.cli import app
from interpret.data.fer import read_fer2013, write_fer2013
from interpret.errors import InterpretError
from interpret.runs import load_run
from interpret.systems import ferplus_labels as fp
from interpret.systems.labels import apply_labels, ferplus_training, usage_split
from interpret.systems.sequences import load_heads
from interpret.systems.valence import LEVEL_NAMES
from interpret.systems.wang2022 import FIVE_CLASSES
from interpret.systems.wu2019 import SequenceHead, build_sequences, fit_head, head_predict

runner = CliRunner()
TINY = ["--data", "synthetic", "--subjects", "6", "--folds", "3", "--epochs", "1", "--device", "cpu"]


def train_cli(tmp_path, arch, *extra):
    out = tmp_path / arch
    result = runner.invoke(app, ["train", "--arch", arch, "--out", str(out), *TINY, *extra])
    assert result.exit_code == 0, result.output
    return out, json.loads((out / "config.json").read_text()), json.loads((out / "metrics.json").read_text())


def test_liu2019_trains_on_valence_levels_with_the_penalty_in_its_loss(tmp_path):
    out, config, metrics = train_cli(tmp_path, "liu2019")
    assert config["classes"] == list(LEVEL_NAMES) and config["labels"]["kind"] == "valence"
    assert config["recipe"]["optimizer"] == "adam" and config["recipe"]["batch_size"] == 32
    assert config["input"] == {"size": 48, "channels": 1, "normalize": "unit", "resize": 48}
    history = (out / "history.csv").read_text().splitlines()
    assert float(history[1].split(",")[1]) > 20  # Keras reports the loss with 0.05 sum(w^2) (~164 at init)
    result = runner.invoke(app, ["evaluate", "--run", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    entry = json.loads((out / "evaluation.json").read_text())["evaluations"]["test/tta=none/valence=fixed"]
    assert entry["accuracy"] == pytest.approx(metrics["test_accuracy"])
    assert 0 <= entry["valence"]["rmse"] <= 2 and entry["valence"]["mae"] <= entry["valence"]["rmse"]
    assert len(entry["confusion_matrix"]) == 9
    result = runner.invoke(app, ["report", "--run", str(out)])
    assert result.exit_code == 0, result.output
    html = (out / "report" / "index.html").read_text()
    assert "test/tta=none/valence=fixed" in html and f"{entry['valence']['rmse']:.3g}" in html


def test_wang2022_trains_five_classes_and_compares(tmp_path):
    out, config, metrics = train_cli(tmp_path, "wang2022")
    assert config["classes"] == list(FIVE_CLASSES) and config["recipe"]["augmentation"] == "ten-crop"
    run = load_run(out)
    assert run.model.conv1.weight.shape == (96, 3, 3, 3)
    assert run.dataset.images(0, 2).shape == (2, 3, 44, 44)
    for tta in ("none", "ten-crop"):
        result = runner.invoke(app, ["evaluate", "--run", str(out), "--tta", tta, "--device", "cpu"])
        assert result.exit_code == 0, result.output
    stored = json.loads((out / "evaluation.json").read_text())
    assert set(stored["evaluations"]) == {"test/tta=none", "test/tta=ten-crop"} and stored["latest"] == "test/tta=ten-crop"
    assert stored["evaluations"]["test/tta=none"]["accuracy"] == pytest.approx(metrics["test_accuracy"])
    rates = stored["evaluations"]["test/tta=ten-crop"]["recognition_rate"]
    assert set(rates) == set(FIVE_CLASSES)
    # a second run on the same classes compares; a run on other classes is refused in one line
    (tmp_path / "copy").mkdir()
    for name in ("config.json", "model.pt", "evaluation.json"):
        (tmp_path / "copy" / name).write_bytes((out / name).read_bytes())
    result = runner.invoke(app, ["compare", str(out), str(tmp_path / "copy"), "--out", str(tmp_path / "cmp")])
    assert result.exit_code == 0, result.output
    table = (tmp_path / "cmp" / "compare.csv").read_text().splitlines()
    assert table[0].split(",")[4:9] == list(FIVE_CLASSES) and len(table) == 3
    assert (tmp_path / "cmp" / "compare.png").stat().st_size > 1000
    other = json.loads((tmp_path / "copy" / "evaluation.json").read_text())
    other["evaluations"][other["latest"]]["classes"] = ["a", "b"]
    (tmp_path / "copy" / "evaluation.json").write_text(json.dumps(other))
    result = runner.invoke(app, ["compare", str(out), str(tmp_path / "copy"), "--out", str(tmp_path / "cmp2")])
    assert result.exit_code == 1 and "same classes" in result.output and not (tmp_path / "cmp2").exists()


def test_djellali2021_trains_with_the_paper_recipe(tmp_path):
    _, config, metrics = train_cli(tmp_path, "djellali2021")
    assert config["recipe"]["lr"] == 1e-4 and config["recipe"]["batch_size"] == 64
    assert config["input"]["normalize"] == "unit" and metrics["epochs_run"] == 1


def test_wu2019_trains_frames_then_sequences(tmp_path):
    out, config, metrics = train_cli(tmp_path, "wu2019", "--sequence-mode", "last-k", "--seq-len", "3",
                                     "--seq-epochs", "2")
    assert config["sequence"]["mode"] == "last-k" and config["sequence"]["steps"] == 3
    assert metrics["sequence"]["samples"] > 0 and "weighted_f1" in metrics["sequence"]
    assert "macro_f1" in metrics["no_cnn_baseline"]
    head, baseline, meta = load_heads(out, len(config["classes"]))
    assert head.steps == 3 and baseline.steps == 48
    result = runner.invoke(app, ["evaluate", "--run", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    entry = json.loads((out / "evaluation.json").read_text())["evaluations"]["test/tta=none"]
    assert entry["sequence"]["accuracy"] == pytest.approx(metrics["sequence"]["accuracy"])
    assert entry["no_cnn_baseline"]["accuracy"] == pytest.approx(metrics["no_cnn_baseline"]["accuracy"])


def test_system_options_are_refused_elsewhere(tmp_path):
    result = runner.invoke(app, ["train", "--arch", "liu2019", "--out", str(tmp_path / "x"), "--seq-len", "3"])
    assert result.exit_code == 1 and "wu2019" in result.output
    result = runner.invoke(app, ["train", "--arch", "liu2019", "--out", str(tmp_path / "x"), "--recipe", "fast"])
    assert result.exit_code == 1 and "unknown recipe 'fast'" in result.output


def test_sequence_builder_modes():
    sequence = np.array(["a"] * 4 + ["b"] * 2)
    frame = np.array([4, 1, 3, 2, 1, 2])
    targets = np.array([0, -1, 0, 0, 1, 1])
    samples, labels = build_sequences(sequence, frame, targets, "single", 1)
    assert samples[:, 0].tolist() == [3, 2, 0, 4, 5] and labels.tolist() == [0, 0, 0, 1, 1]
    samples, labels = build_sequences(sequence, frame, targets, "last-k", 3)
    assert samples.tolist() == [[3, 2, 0]] and labels.tolist() == [0]  # 'b' is shorter than 3
    samples, labels = build_sequences(sequence, frame, targets, "window", 2)
    assert samples.tolist() == [[1, 3], [3, 2], [2, 0], [4, 5]] and labels.tolist() == [0, 0, 0, 1]
    with pytest.raises(ValueError):
        build_sequences(sequence, frame, targets, "single", 2)


def test_lstm_learns_a_class_that_lives_only_in_temporal_order():
    """Frames a, b, c (noisy) in the order a-b-c are class 0, c-b-a class 1: every frame is shared by
    both classes, so one frame (T = 1) is at chance and the LSTM over T = 3 must read the order."""
    rng = np.random.default_rng(0)
    prototypes = rng.normal(0, 1, (3, 16))
    n = 96
    labels = np.repeat([0, 1], n // 2)
    orders = np.where(labels[:, None] == 0, [0, 1, 2], [2, 1, 0])
    frames = prototypes[orders] + rng.normal(0, 0.3, (n, 3, 16))
    sequence = np.repeat(np.arange(n).astype(str), 3)
    frame = np.tile([1, 2, 3], n)
    table = frames.reshape(-1, 16)
    train, test = np.arange(n) % 4 != 0, np.arange(n) % 4 == 0

    def accuracy(mode, steps):
        samples, y = build_sequences(sequence, frame, np.repeat(labels, 3), mode, steps)
        owner = samples[:, -1] // 3
        x = torch.tensor(table[samples], dtype=torch.float32)
        torch.manual_seed(0)
        head = SequenceHead(2, steps, in_features=16, dropout=0.0)
        fit_head(head, x[train[owner]], torch.from_numpy(y[train[owner]]), epochs=25, lr=3e-3)
        return float((head_predict(head, x[test[owner]]).numpy() == y[test[owner]]).mean())

    single, ordered = accuracy("single", 1), accuracy("last-k", 3)
    assert ordered >= 0.95
    assert single <= 0.75 and ordered - single >= 0.25


def test_fer_usage_split_and_label_errors(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (6, 48, 48)).astype(np.uint8)
    path = tmp_path / "fer2013.csv"
    write_fer2013(path, images, [0, 3, 6, 3, 4, 2], ["Training", "Training", "PublicTest", "PrivateTest",
                                                     "Training", "PrivateTest"])
    faceset = read_fer2013(path, size=48)
    assert usage_split(faceset).tolist() == ["train", "train", "val", "test", "train", "test"]
    with pytest.raises(InterpretError, match="valence CSV"):
        apply_labels(faceset, {"kind": "valence"})


VOTES = Path("/work/shared/data/ferplus/fer2013new.csv")


@pytest.mark.skipif(not VOTES.is_file(), reason="the real FER+ vote file is not on this machine")
def test_djellali2021_trains_ferplus_soft_labels_on_real_votes(tmp_path):
    """Real vote rows (some of each Usage) beside a fer2013.csv of the same rows (random pixels)."""
    lines = VOTES.read_text().splitlines()
    public = next(i for i, line in enumerate(lines) if line.startswith("PublicTest"))
    private = next(i for i, line in enumerate(lines) if line.startswith("PrivateTest"))
    chosen = [lines[0]] + lines[1:121] + lines[public:public + 40] + lines[private:private + 40]
    folder = tmp_path / "ferplus"
    folder.mkdir()
    (folder / "fer2013new.csv").write_text("\n".join(chosen) + "\n")
    usage = [line.split(",")[0] for line in chosen[1:]]
    images = np.random.default_rng(0).integers(0, 256, (len(usage), 48, 48)).astype(np.uint8)
    write_fer2013(folder / "fer2013.csv", images, np.zeros(len(usage), int), usage)
    out, config, metrics = train_cli(tmp_path, "djellali2021", "--data", str(folder), "--split", "usage",
                                     "--labels", "ferplus-crossentropy")
    assert config["labels"] == {"kind": "ferplus", "mode": "crossentropy"}
    assert metrics["split"]["counts"]["val"]["images"] > 0 and metrics["split"]["counts"]["test"]["images"] > 0
    # the training targets are the reference's distributions of those rows' votes
    run = load_run(out)
    rows = np.flatnonzero((run.dataset.split == "train") & (run.dataset.targets >= 0))
    kept, soft, loss_fn = ferplus_training(run.dataset.faceset, rows, run.config)
    votes = fp.read_votes(folder / "fer2013new.csv")[2]
    columns = [fp.EMOTIONS.index(c) for c in config["classes"]]
    for row, target in zip(kept[:20], soft[:20]):
        want = fp.emotion_distribution(votes[int(run.dataset.faceset.paths[row].rsplit(":", 1)[1]) - 2], "crossentropy")
        np.testing.assert_allclose(target, want[columns] / want[columns].sum(), rtol=1e-6)
    assert np.any((soft > 0).sum(1) > 1)  # some rows really are soft
    logits = torch.zeros(len(soft), len(columns), requires_grad=True)
    loss = loss_fn(logits, torch.from_numpy(soft), run.model)
    assert torch.isfinite(loss.detach()) and float(loss.detach()) > 0
    result = runner.invoke(app, ["train", "--arch", "djellali2021", "--out", str(tmp_path / "y"), "--labels",
                                 "ferplus-crossentropy", *TINY])
    assert result.exit_code == 1 and "needs FER+ data" in result.output


def test_valence_csv_labels_a_users_images(tmp_path):
    import cv2

    from interpret.data import load_faceset

    rng = np.random.default_rng(0)
    for i, emotion in enumerate(["happy", "happy", "sad", "sad"]):
        (tmp_path / "faces" / emotion).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / "faces" / emotion / f"{i}.png"), rng.integers(0, 256, (48, 48)).astype(np.uint8))
    (tmp_path / "valence.csv").write_text("path,r1,r2\nfaces/happy/0.png,8,9\nfaces/happy/1.png,7,7\n"
                                          "faces/sad/2.png,2,3\n")
    faceset = load_faceset(tmp_path / "faces", size=48)
    levelled = apply_labels(faceset, {"kind": "valence", "csv": str(tmp_path / "valence.csv")})
    assert levelled.emotions == LEVEL_NAMES
    by_name = {Path(p).name: e for p, e in zip(levelled.paths, levelled.emotion)}
    assert by_name == {"0.png": 8, "1.png": 6, "2.png": 2, "3.png": -1}  # 8.5 -> 9, 7 -> 7, 2.5 -> 3; unlisted
    (tmp_path / "other.csv").write_text("elsewhere/x.png,5\n")
    with pytest.raises(InterpretError, match="none of its 1 paths"):
        apply_labels(faceset, {"kind": "valence", "csv": str(tmp_path / "other.csv")})
