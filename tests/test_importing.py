"""Bring your own model: import a user's model file, then cache, deconv, au-map, sanity and report on it."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from captum.attr import NeuronDeconvolution
from typer.testing import CliRunner

from interpret import deconv as deconv_mod
from interpret.aumap import run_au_map
from interpret.cache import run_cache
from interpret.cli import app
from interpret.deconv import run_deconv
from interpret.errors import InterpretError
from interpret.inspect_layers import describe_layers
from interpret.report import write_report
from interpret.runs import load_run
from interpret.sanity import run_sanity

runner = CliRunner()
CLASSES = "anger,happy,surprise"
USER_MODEL = '''
import torch
from torch import nn


class Net(nn.Module):
    """A user's colour CNN for 32x32 faces: conv/ReLU/max-pool features, a flatten + linear head."""

    def __init__(self, classes=3):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(6, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 8 * 8, classes))

    def forward(self, x):
        return self.head(self.features(x))


def build():
    return Net()


def build_two():
    return Net(classes=2)


def not_a_model():
    return 42
'''


def hook_count(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               + len(m._backward_pre_hooks) for m in model.modules())


@pytest.fixture(scope="module")
def user_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("user")
    (root / "mynet.py").write_text(USER_MODEL)
    namespace: dict = {}
    exec(USER_MODEL, namespace)  # the same code, to make the weights the user brings
    torch.manual_seed(3)
    model = namespace["build"]()
    torch.save(model.state_dict(), root / "weights.pt")
    return root


def import_args(root: Path, out: Path, *extra: str) -> list[str]:
    return ["import-model", "--model", f"{root / 'mynet.py'}:build", "--weights", str(root / "weights.pt"),
            "--data", "synthetic", "--subjects", "4", "--out", str(out), "--input-size", "32",
            "--channels", "3", "--normalize", "unit", "--classes", CLASSES, *extra]


@pytest.fixture(scope="module")
def imported(user_files, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "imported"
    result = runner.invoke(app, import_args(user_files, out))
    assert result.exit_code == 0, result.output
    return out


def test_import_writes_a_run_that_loads_like_a_trained_one(user_files, imported):
    config = json.loads((imported / "config.json").read_text())
    assert config["arch"] == "imported" and config["classes"] == CLASSES.split(",")
    assert config["model"]["factory"] == str(user_files / "mynet.py") and config["model"]["name"] == "build"
    assert config["input"] == {"size": 32, "channels": 3, "normalize": "unit", "resize": 33}
    run = load_run(imported)
    expected = torch.load(user_files / "weights.pt", weights_only=True)
    assert all(torch.equal(run.model.state_dict()[k], v) for k, v in expected.items())
    assert set(run.dataset.split) == {"test"}
    image = run.dataset.images(0, 1)
    assert image.shape == (1, 3, 32, 32) and 0 <= float(image.min()) and float(image.max()) <= 1
    assert torch.equal(image[:, 0], image[:, 2])  # grey replicated


def test_the_whole_pipeline_runs_on_the_imported_model(imported, monkeypatch):
    run = load_run(imported)
    model = run.model
    layers = {info.name: info for info in describe_layers(run)}
    assert hook_count(model) == 0
    assert list(layers)[:5] == ["features.0", "features.1", "features.2", "features.3", "features.4"]
    assert layers["features.4"].shape == (8, 16, 16) and layers["features.4"].path == "fast-rf"
    assert layers["features.4"].field.size == (8, 8) and layers["features.4"].field.stride == (2, 2)

    with pytest.raises(InterpretError, match="head.2"):  # a (B, classes) output is not a map
        run_cache(run, layer="head.2")
    assert hook_count(model) == 0
    cache = run_cache(run, layer="features.4")
    assert cache.path == imported / "activations" / "features.4.h5" and cache.n_maps == 8
    assert hook_count(model) == 0

    result = run_deconv(run, layer="features.4", top=3, maps="all")
    assert hook_count(model) == 0 and result.projection_path == "fast-rf"
    with h5py.File(result.path, "r") as h5:
        assert h5.attrs["path"] == "fast-rf" and h5.attrs["layer"] == "features.4" and h5.attrs["split"] == "all"
        projection, index = h5["projection"][()], h5["image_index"][()]
        position, activation = h5["position"][()], h5["activation"][()]
    assert projection.shape == (8, 3, 32, 32)
    # map 0's first projection = activation x captum's deconvolution, summed over the 3 input channels
    image = run.dataset.images(int(index[0, 0]), int(index[0, 0]) + 1)
    reference = NeuronDeconvolution(model, model.features[4]).attribute(
        image, neuron_selector=(0, *map(int, position[0, 0]))).sum(1)[0].numpy() * activation[0, 0]
    np.testing.assert_allclose(projection[0, 0], reference, rtol=1e-4, atol=1e-6 * np.abs(reference).max())
    assert hook_count(model) == 0

    # au-map's localization reads the deconvolution file instead of recomputing it
    def no_recompute(*args, **kwargs):
        raise AssertionError("au-map recomputed the deconvolutions")

    monkeypatch.setattr(deconv_mod, "deconvolve_top", no_recompute)
    counts = run.dataset.au_presence.sum(0)
    two = [int(code) for code, count in zip(run.dataset.faceset.au_codes, counts) if 0 < count < len(run.dataset)][:2]
    aumap = run_au_map(run, layer="features.4", aus=",".join(map(str, two)), n=3, k=3, permutations=9, bootstrap=0)
    monkeypatch.undo()
    assert aumap.layer == "features.4" and aumap.results
    first = next(iter(aumap.results.values()))
    assert first["layer"] == "features.4" and len(first["distance"]) == 8
    assert first["localization"].get("k") == 3
    assert hook_count(model) == 0

    sanity = run_sanity(run, layer="features.4", n_seeds=3)
    assert [s["name"] for s in sanity.result["stages"]] == ["trained", "head", "features.3", "features.0"]
    assert sanity.result["stages"][1]["randomized"] == ["head.2"]
    assert all(sanity.result["metrics"][r]["head"]["identical"] for r in sanity.result["rules"])
    assert hook_count(model) == 0

    html = write_report(imported).read_text()
    for text in ("analysed layer features.4 (8 maps)", "input 32x32, 3 channel(s), unit", "Map gallery: features.4"):
        assert text in html, text


def test_a_changed_factory_file_is_refused_at_load(user_files, imported, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "mynet.py").write_text(USER_MODEL)
    (copy / "weights.pt").write_bytes((user_files / "weights.pt").read_bytes())
    out = tmp_path / "run"
    assert runner.invoke(app, import_args(copy, out)).exit_code == 0
    (copy / "mynet.py").write_text(USER_MODEL + "\n# edited\n")
    with pytest.raises(InterpretError, match="changed since `interpret import-model`"):
        load_run(out)


def test_errors_are_one_line_naming_the_file(user_files, tmp_path):
    (tmp_path / "broken.py").write_text("import torch\n\ndef build(:\n    pass\n")
    torch.save({"weights": object()}.__class__, tmp_path / "pickled.pt")  # pickled code, not tensors
    model_file = user_files / "mynet.py"
    cases = [
        (["--model", f"{tmp_path / 'missing.py'}:build"], f"{tmp_path / 'missing.py'}: model file not found"),
        (["--model", f"{model_file}:nope"], f"{model_file}: defines no factory 'nope'"),
        (["--model", f"{model_file}:not_a_model"], "returned int, not a torch.nn.Module"),
        (["--model", f"{tmp_path / 'broken.py'}:build"], f"{tmp_path / 'broken.py'}:3: cannot be run: SyntaxError"),
        (["--model", f"{model_file}:build_two", "--weights", str(tmp_path / "none.pt")],
         "none.pt: weights file not found"),
        (["--model", f"{model_file}:build", "--weights", str(tmp_path / "pickled.pt")], "refusing to load"),
        (["--model", f"{model_file}:build_two"], f"{model_file}: output width 2 differs from the 3 classes"),
        (["--model", f"{model_file}:build", "--input-size", "40"],
         f"{model_file}: the model rejects a (2, 3, 40, 40) input"),
        (["--model", "no-such-pretrained"], "no-such-pretrained"),
    ]
    for i, (override, words) in enumerate(cases):
        args = ["import-model", "--model", f"{model_file}:build", "--data", "synthetic", "--subjects", "4",
                "--out", str(tmp_path / f"run{i}"), "--input-size", "32", "--channels", "3", "--classes", CLASSES]
        for flag, value in zip(override[::2], override[1::2]):
            if flag in args:
                args[args.index(flag) + 1] = value
            else:
                args += [flag, value]
        result = runner.invoke(app, args)
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == 1 and len(lines) == 1 and words in lines[0], (override, result.output)
        assert not (tmp_path / f"run{i}").exists()  # nothing written half-way
