"""The command line end to end: help, one-line errors, and the whole pipeline on a small run."""

import json
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from interpret.cli import app

runner = CliRunner()
COMMANDS = ("synth", "inspect", "train", "implant", "cache", "deconv", "au-map", "sanity", "report", "demo", "layers",
            "import-model")


def test_help_lists_every_command():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output


def test_python_dash_m_runs_the_same_app():
    result = subprocess.run([sys.executable, "-m", "interpret", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "au-map" in result.stdout


@pytest.mark.parametrize("command", ["cache", "deconv", "au-map", "sanity", "report", "layers"])
def test_missing_run_is_one_line_naming_it(tmp_path, command):
    missing = tmp_path / "no_such_run"
    result = runner.invoke(app, [command, "--run", str(missing)])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(missing) in lines[0]
    assert "Traceback" not in result.output


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs)["src"])


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    """The demo pipeline, shrunk: 10 identities, 5 folds, 2 epochs, 50 permutations, 6 fresh identities."""
    from interpret.demo import run_demo

    out = tmp_path_factory.mktemp("pipeline") / "run"
    index = run_demo(out, device="cpu", subjects=10, folds=5, epochs=2, permutations=50, fresh=6)
    return out, index


def test_pipeline_writes_every_artefact(pipeline_run):
    out, index = pipeline_run
    for name in ("model.pt", "config.json", "metrics.json", "history.csv", "activations/relu3.h5",
                 "deconv/relu3.h5", "aumap/distances.csv", "sanity/sanity.json", "demo_timing.json"):
        assert (out / name).is_file(), name
    assert index == out / "report" / "index.html"
    parser = _Images()
    parser.feed(index.read_text())
    assert parser.sources, "the report shows no image"
    for src in parser.sources:
        assert (index.parent / src).is_file(), src
    timing = json.loads((out / "demo_timing.json").read_text())
    assert set(timing) >= {"train", "cache", "deconv", "au-map", "sanity", "report", "total"}
    planted = out.parent / f"{out.name}-planted"
    for run in (out, planted):
        assert (run / "validate" / "validate.json").is_file()
    assert json.loads((planted / "config.json").read_text())["planted"]["implanted"]["source"] == str(out)
    truth = json.loads((planted / "validate" / "validate.json").read_text())["planted"]["truth"]
    assert truth.startswith("fresh: 6 synthetic identities")
    assert "One verdict per AU" in index.read_text()


def test_au_map_json_names_a_best_map_per_planted_au(pipeline_run):
    out, _ = pipeline_run
    files = sorted((out / "aumap").glob("AU*.json"))
    assert files
    for path in files:
        result = json.loads(path.read_text())
        assert len(result["distance"]) == 256
        assert result["best_map"] == max(range(256), key=lambda i: result["distance"][i])
        assert 0 < result["p_family"] <= 1


def test_cli_au_map_prints_the_table(pipeline_run):
    out, _ = pipeline_run
    result = runner.invoke(app, ["au-map", "--run", str(out), "--au", "AU12,25", "--permutations", "20",
                                 "--bootstrap", "5", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "AU12" in result.output and "AU25" in result.output


def test_cli_unknown_au_is_a_clear_error(pipeline_run):
    out, _ = pipeline_run
    result = runner.invoke(app, ["au-map", "--run", str(out), "--au", "99", "--device", "cpu"])
    assert result.exit_code == 1 and "AU99" in result.output


def test_cli_layers_lists_shapes_fields_and_paths(pipeline_run):
    out, _ = pipeline_run
    result = runner.invoke(app, ["layers", "--run", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line for line in result.output.splitlines()[1:]}
    assert list(rows)[:3] == ["conv1", "relu1", "pool1"] and "fc" not in rows and "out" not in rows
    assert "256 x 24 x 24" in rows["relu3"] and "32 px, stride 4, offset -14" in rows["relu3"]
    assert rows["relu3"].split()[1] == "3" and rows["relu3"].endswith("fast-rf")
    assert rows["pool3"].endswith("general")


def test_cli_unknown_layer_is_one_line(pipeline_run):
    out, _ = pipeline_run
    result = runner.invoke(app, ["deconv", "--run", str(out), "--layer", "relu7", "--device", "cpu"])
    assert result.exit_code == 1 and result.output.count("\n") == 1 and "relu7" in result.output
