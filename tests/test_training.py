"""Training: one step learns, checkpoints round-trip and refuse code, runs resume and repeat exactly."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from typer.testing import CliRunner

import interpret.runs
from interpret.cli import app
from interpret.data.faceset import ABSENT, FaceSet
from interpret.data.transforms import augment, evaluate
from interpret.errors import InterpretError
from interpret.models import build_model
from interpret.runs import load_checkpoint, load_run, save_checkpoint
from interpret.metrics import classification_report
from interpret.training import RECIPES, learning_rate, make_optimizer, train

EMOTIONS = ("neutral", "happy", "surprise")


def tiny_faceset(subjects: int = 6, seed: int = 0) -> FaceSet:
    """Per subject two 4-frame sequences (happy, surprise); frame 1 is neutral under 'paper'.

    Happy draws a bright bar low in the face, surprise a bright square high up; noise elsewhere.
    """
    rng = np.random.default_rng(seed)
    images, subject, sequence, frame, emotion = [], [], [], [], []
    for s in range(subjects):
        for number, label in ((1, 1), (2, 2)):
            for f in range(1, 5):
                img = rng.integers(40, 90, (99, 99)).astype(np.uint8)
                if f > 1:
                    if label == 1:
                        img[66:74, 25:75] = 230
                    else:
                        img[20:34, 40:60] = 230
                images.append(img)
                subject.append(f"S{s:03d}")
                sequence.append(f"S{s:03d}/{number:03d}")
                frame.append(f)
                emotion.append(label)
    n = len(images)
    return FaceSet(images=np.stack(images), landmarks=None, subject=np.array(subject), sequence=np.array(sequence),
                   frame=np.array(frame), emotion=np.array(emotion), au_intensity=np.full((n, 1), ABSENT, np.int8),
                   paths=np.array([""] * n), emotions=EMOTIONS, au_codes=np.array([12]), source="tiny")


def fake_load(spec, size=99, subjects=6, seed=0):
    return tiny_faceset(subjects, seed)


@pytest.fixture
def tiny_data(monkeypatch):
    """Route every dataset load (training and load_run) to the tiny hand-made FaceSet."""
    monkeypatch.setattr(interpret.runs, "load_faceset", fake_load)


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory):
    """One uninterrupted 2-epoch run, shared by the tests that compare against it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(interpret.runs, "load_faceset", fake_load)
        yield run_tiny(tmp_path_factory.mktemp("whole") / "run")


def run_tiny(out, **kw):
    args = dict(data="synthetic", out=out, arch="khorrami2015", recipe="fast", epochs=2, folds=3, fold=0,
                split="kfold", protocol="paper", subjects=6, seed=1, device="cpu", progress=False,
                checkpoint_every=0)
    args.update(kw)
    return train(**args)


def read_history(path):
    with open(path / "history.csv") as handle:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]


def test_one_step_lowers_the_loss_on_a_fixed_batch():
    """The default recipe's first step (the bottom of its warm-up) on a fixed batch of faces."""
    fs = tiny_faceset(subjects=1)
    x, y = evaluate(torch.from_numpy(fs.images)), torch.from_numpy(np.where(fs.frame == 1, 0, fs.emotion))
    torch.manual_seed(0)
    model = build_model("zhu2019", 3)
    model.eval()  # no dropout: the loss is a function of the weights only
    optimizer = make_optimizer(model, RECIPES["fast"], torch.device("cpu"))
    for group in optimizer.param_groups:
        group["lr"] = learning_rate(RECIPES["fast"], 0, 100)
    before = torch.nn.functional.cross_entropy(model(x), y)
    optimizer.zero_grad()
    before.backward()
    optimizer.step()
    after = torch.nn.functional.cross_entropy(model(x), y)
    assert after.item() < before.item()


def test_learning_rate_schedules():
    fast, paper = RECIPES["fast"], RECIPES["paper"]
    assert all(learning_rate(paper, s, 100) == paper.lr for s in (0, 50, 99))
    lrs = [learning_rate(fast, s, 100) for s in range(100)]
    assert lrs[0] < fast.lr / 10
    assert max(lrs) == pytest.approx(fast.lr, rel=0.02)
    assert lrs[-1] == pytest.approx(fast.lr * fast.final_lr_ratio)


def test_checkpoint_round_trips_bit_exactly(tmp_path):
    torch.manual_seed(0)
    model = build_model("khorrami2015", 3)
    save_checkpoint(tmp_path / "m.pt", model, {"arch": "khorrami2015", "classes": list(EMOTIONS)})
    blob = load_checkpoint(tmp_path / "m.pt")
    assert blob["meta"]["classes"] == list(EMOTIONS)
    state = model.state_dict()
    assert blob["state_dict"].keys() == state.keys()
    for key, value in state.items():
        assert blob["state_dict"][key].dtype == value.dtype
        assert torch.equal(blob["state_dict"][key], value), key


class Payload:
    """A class defined here: unpickling it would run this module's code."""

    def __reduce__(self):
        return (print, ("pickled code ran",))


@pytest.mark.parametrize("payload", [Payload(), print, Payload])
def test_checkpoint_with_pickled_code_is_refused(tmp_path, payload):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "meta": {}, "extra": payload}, path)
    with pytest.raises(InterpretError, match="refusing to load") as err:
        load_checkpoint(path)
    assert str(path) in str(err.value)


def test_run_directory_contents_and_load_run(whole_run, tiny_data):
    run = whole_run
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "confusion.png", "curves.png", "dataset.h5",
                                                     "history.csv", "metrics.json", "model.pt"]
    config = json.loads((run / "config.json").read_text())
    assert config["classes"] == list(EMOTIONS)
    assert config["recipe"]["name"] == "fast" and config["recipe"]["epochs"] == 2
    assert config["epochs_run"] == 2 and config["protocol"] == "paper"
    assert config["data"] == {"spec": "synthetic", "subjects": 6, "seed": 1}
    assert config["split"] == {"kind": "kfold", "folds": 3, "fold": 0, "seed": 1}
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["split"]["subject_grouped"] is True
    assert metrics["split"]["test_subjects_also_in_train"] == 0
    counts = metrics["split"]["counts"]
    assert counts["train"]["subjects"] + counts["val"]["subjects"] + counts["test"]["subjects"] == 6
    assert sum(metrics["per_class"][c]["support"] for c in EMOTIONS) == counts["test"]["images"]
    assert np.array(metrics["confusion_matrix"]).sum() == counts["test"]["images"]
    assert metrics["chance"] == pytest.approx(1 / 3)
    assert 0 <= metrics["majority_baseline"]["accuracy"] <= 1
    loaded = load_run(run, device="cpu")
    assert not loaded.model.training
    item = loaded.dataset[0]
    assert item["image"].shape == (1, 96, 96)
    assert len(loaded.dataset) == 6 * 8
    assert list(loaded.dataset.split).count("test") == counts["test"]["images"]


def test_same_seed_same_metrics(whole_run, tmp_path, tiny_data):
    torch.manual_seed(12345)  # the caller's global RNG state must not matter
    again = run_tiny(tmp_path / "again")
    assert json.loads((again / "metrics.json").read_text()) == json.loads((whole_run / "metrics.json").read_text())
    assert read_history(again) == read_history(whole_run)
    other = run_tiny(tmp_path / "other", seed=2, epochs=1)
    assert read_history(other)[0] != read_history(whole_run)[0]


def test_resume_continues_from_the_saved_epoch(whole_run, tmp_path, tiny_data, capsys):
    whole = whole_run

    def interrupt(epoch, row):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_tiny(tmp_path / "part", on_epoch_end=interrupt)
    assert (tmp_path / "part" / "checkpoint.pt").is_file()
    assert not (tmp_path / "part" / "model.pt").exists()
    epochs_seen = []
    resumed = run_tiny(tmp_path / "part", on_epoch_end=lambda epoch, row: epochs_seen.append(epoch))
    assert epochs_seen == [2]
    assert "resuming" in capsys.readouterr().err
    assert not (resumed / "checkpoint.pt").exists()
    assert read_history(resumed) == read_history(whole)
    assert [int(r["epoch"]) for r in read_history(resumed)] == [1, 2]
    a, b = load_checkpoint(whole / "model.pt"), load_checkpoint(resumed / "model.pt")
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])


def test_checkpoint_of_another_config_is_not_resumed(tmp_path, tiny_data, capsys):
    def interrupt(epoch, row):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_tiny(tmp_path / "run", on_epoch_end=interrupt)
    epochs_seen = []
    run_tiny(tmp_path / "run", seed=2, on_epoch_end=lambda epoch, row: epochs_seen.append(epoch))
    assert epochs_seen == [1, 2]
    assert "different configuration" in capsys.readouterr().err


def test_paper_split_is_labelled_subject_overlapping(tmp_path, monkeypatch):
    monkeypatch.setattr(interpret.runs, "load_faceset", fake_load)
    run = run_tiny(tmp_path / "run", split="paper", epochs=1, subjects=26)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["split"]["kind"] == "paper"
    assert metrics["split"]["subject_grouped"] is False
    assert "subject-overlapping" in metrics["split"]["description"]
    assert metrics["split"]["counts"]["test"]["images"] == 200


def test_cli_train_never_trains_on_unlabelled_rows(tmp_path, monkeypatch):
    def with_unlabelled(spec, size=99, **kw):
        fs = fake_load(spec, size, **kw)
        fs.emotion[fs.sequence == "S000/002"] = -1
        return fs

    monkeypatch.setattr(interpret.runs, "load_faceset", with_unlabelled)
    result = CliRunner().invoke(app, ["train", "--out", str(tmp_path / "run"), "--arch", "khorrami2015",
                                      "--epochs", "1", "--folds", "3", "--subjects", "6", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    assert json.loads((run / "config.json").read_text())["protocol"] == "paper"  # 'auto' on sequences
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["split"]["counts"]["unlabelled_images_not_trained"] == 4
    counts = metrics["split"]["counts"]
    assert sum(c["images"] for k, c in counts.items() if k != "unlabelled_images_not_trained") == 6 * 8 - 4


def test_augment_identity_equals_evaluate(monkeypatch):
    """With rotation 0, no flip and the centre shift, the affine resampling is the centre crop."""
    images = torch.randint(0, 256, (5, 99, 99), dtype=torch.uint8)
    draws = iter([0.5, 0.9])  # angle draw 0.5 -> 0 degrees; flip draw 0.9 -> no flip

    monkeypatch.setattr(torch, "rand", lambda n, **kw: torch.full((n,), next(draws)))
    monkeypatch.setattr(torch, "randint", lambda low, high, size, **kw: torch.full(size, (99 - 96) // 2))
    out = augment(images, torch.Generator())
    assert torch.allclose(out, evaluate(images), atol=1e-4)
    flipped = iter([0.5, 0.1])
    monkeypatch.setattr(torch, "rand", lambda n, **kw: torch.full((n,), next(flipped)))
    assert torch.allclose(augment(images, torch.Generator()), evaluate(images).flip(-1), atol=1e-4)


def test_classification_report_by_hand():
    targets = np.array([0, 0, 1, 1, 2])
    predictions = np.array([0, 1, 1, 1, 0])
    report = classification_report(targets, predictions, train_targets=np.array([1, 1, 0]), classes=["a", "b", "c"])
    assert report["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert report["accuracy"] == pytest.approx(3 / 5)
    assert report["per_class"]["a"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert report["per_class"]["b"]["precision"] == pytest.approx(2 / 3)
    assert report["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert report["majority_baseline"] == {"class": "b", "accuracy": pytest.approx(2 / 5)}
    assert report["chance"] == pytest.approx(1 / 3)
