"""What users bring, end to end: every README format through train -> cache -> deconv -> au-map -> report,
the real FER+ vote file, re-training into a used folder, folder-data assumptions, set-up details."""

from __future__ import annotations

import csv
import os
import stat
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
from typer.testing import CliRunner

from interpret.cli import app
from interpret.data import load_faceset
from interpret.data.fer import FERPLUS_HEADER, write_fer2013
from interpret.data.protocols import apply_protocol
from interpret.errors import InterpretError
from interpret.inspect import summarize
from interpret.synth import write_synthetic

runner = CliRunner()
FERPLUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "ferplus" / "fer2013new.csv"


def invoke(*args) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert result.exit_code == 0, result.output
    return result.output


# ---------------------------------------------------------------- data in each README format


def _astronaut(size=256) -> np.ndarray:
    grey = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, (size, size), interpolation=cv2.INTER_AREA)


def make_jaffe(root: Path) -> Path:
    face = _astronaut()
    for i, who in enumerate(("KA", "KL", "KM", "KR", "MK", "NA")):
        for j, code in enumerate(("AN", "HA")):
            image = np.clip(face.astype(int) + 6 * i - 10 * j, 0, 255).astype(np.uint8)
            cv2.imwrite(str(root / f"{who}.{code}{j + 1}.{10 * i + j}.tiff"), image if j == 0 else cv2.flip(image, 1))
    return root


def make_folders(root: Path, side: int = 48, colour: bool = False) -> Path:
    rng = np.random.default_rng(0)
    for cls in ("angry", "happy", "sad"):
        (root / cls).mkdir(parents=True)
        for i in range(6):
            shape = (side, side, 3) if colour else (side, side)
            cv2.imwrite(str(root / cls / f"p{i}_{cls}.png"), rng.integers(0, 256, shape, dtype=np.uint8))
    return root


def make_ferplus(root: Path) -> Path:
    write_synthetic(root / "tmp", subjects=6, seed=1, fmt="fer2013")
    rows = list(csv.reader(open(root / "tmp" / "fer2013.csv", newline="")))[1:]
    (root / "fer").mkdir()
    (root / "tmp" / "fer2013.csv").rename(root / "fer" / "fer2013.csv")
    with open(root / "fer" / "fer2013new.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(FERPLUS_HEADER)
        for i, row in enumerate(rows):
            votes = [0] * 10
            votes[i % 3] = 10
            writer.writerow([row[2], f"fer{i:07d}.png", *votes])
    return root / "fer"


FORMATS = {
    "ckplus": lambda root: write_synthetic(root / "ck", subjects=6, seed=1, fmt="ckplus"),
    "fer2013": lambda root: write_synthetic(root / "fer", subjects=6, seed=1, fmt="fer2013") / "fer2013.csv",
    "ferplus": make_ferplus,
    "jaffe": lambda root: make_jaffe(root),
    "folders": lambda root: make_folders(root / "folders"),
}


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_every_format_runs_the_whole_pipeline(tmp_path, fmt):
    data = FORMATS[fmt](tmp_path / "data" if fmt != "jaffe" else (tmp_path / "data").mkdir() or tmp_path / "data")
    run = tmp_path / "run"
    invoke("train", "--data", data, "--out", run, "--epochs", "1", "--folds", "3", "--device", "cpu")
    invoke("cache", "--run", run, "--device", "cpu")
    invoke("deconv", "--run", run, "--top", "2", "--maps", "0,1,2", "--device", "cpu")
    result = runner.invoke(app, ["au-map", "--run", str(run), "--permutations", "10", "--bootstrap", "2",
                                 "--device", "cpu"])
    has_aus = fmt == "ckplus"
    if has_aus:
        assert result.exit_code == 0, result.output
    else:
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == 1 and len(lines) == 1 and "no AU labels" in lines[0], result.output
    index = Path(invoke("report", "--run", run).strip().splitlines()[-1])
    html = index.read_text()
    assert ("no AU labels" in html) != has_aus


# ---------------------------------------------------------------- FER+: Microsoft's real vote file


@pytest.fixture(scope="module")
def real_ferplus(tmp_path_factory) -> Path:
    """Microsoft's real fer2013new.csv beside a fer2013.csv of the same 35,887 rows (blank pixels:
    FER2013's images are not ours to ship; the labels, Usage and quirks are the real file's)."""
    if not FERPLUS.is_file():
        pytest.skip(f"{FERPLUS} not present")
    root = tmp_path_factory.mktemp("ferplus")
    with open(FERPLUS, newline="") as handle:
        usage = [row[0] for row in csv.reader(handle)][1:]
    write_fer2013(root / "fer2013.csv", np.full((len(usage), 48, 48), 128, np.uint8),
                  np.zeros(len(usage), np.int64), usage)
    (root / "fer2013new.csv").symlink_to(FERPLUS)
    return root


def test_real_ferplus_is_stills_with_the_reference_counts(real_ferplus):
    raw = load_faceset(real_ferplus, size=48)
    assert raw.stills and len(set(raw.sequence)) == len(raw)  # repeated FER+ names are not sequences
    faceset = apply_protocol(raw, "auto")
    partitions = dict(zip(*np.unique(faceset.partition, return_counts=True)))
    assert partitions == {"Training": 25060, "PublicTest": 3199, "PrivateTest": 3153}
    summary = summarize(faceset)
    neutral = np.mean(faceset.emotion == faceset.emotions.index("neutral"))
    assert 0.2 < neutral < 0.5, summary  # the votes' own neutral share, not "every first frame"
    with pytest.raises(InterpretError, match="needs image sequences"):
        apply_protocol(raw, "paper")


def test_fingerprint_of_data_without_au_labels(tmp_path):
    faceset = load_faceset(make_folders(tmp_path / "f"))
    assert faceset.au_intensity.shape == (18, 0)
    assert faceset.fingerprint() == load_faceset(tmp_path / "f").fingerprint()
    faceset.emotion[0] = 1 - faceset.emotion[0]
    assert faceset.fingerprint() != load_faceset(tmp_path / "f").fingerprint()


# ---------------------------------------------------------------- re-training into a used folder


def test_train_refuses_a_finished_run_without_overwrite(tmp_path):
    data = make_folders(tmp_path / "folders")
    run = tmp_path / "run"
    args = ["train", "--data", str(data), "--out", str(run), "--epochs", "1", "--folds", "3", "--device", "cpu"]
    invoke(*args)
    (run / "deconv").mkdir()
    (run / "deconv" / "relu3.h5").write_text("old model's output")
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "--overwrite" in result.output and str(run) in result.output
    invoke(*args, "--overwrite")
    assert (run / "model.pt").is_file() and not (run / "deconv").exists()
    stranger = tmp_path / "notes"
    stranger.mkdir()
    (stranger / "thesis.tex").write_text("keep me")
    result = runner.invoke(app, ["train", "--data", str(data), "--out", str(stranger), "--overwrite"])
    assert result.exit_code == 1 and "not a run directory" in result.output
    assert (stranger / "thesis.tex").read_text() == "keep me"


# ---------------------------------------------------------------- folder data: assumptions said aloud


def test_folder_warnings_and_subject_regex(tmp_path):
    data = make_folders(tmp_path / "small", side=25, colour=True)
    faceset = load_faceset(data)
    text = " | ".join(faceset.warnings)
    assert "18 colour images were converted to grey" in text
    assert "upscaled" in text and "25x25" in text and "4.0x" in text
    assert "its own subject" in text
    grouped = load_faceset(data, subject_from=r"/(p\d)_")
    assert sorted(set(grouped.subject)) == [f"p{i}" for i in range(6)]
    assert not any("own subject" in w for w in grouped.warnings)
    with pytest.raises(InterpretError, match="does not match"):
        load_faceset(data, subject_from=r"^nothing")


def test_train_prints_and_records_warnings(tmp_path):
    data = make_folders(tmp_path / "small", side=25)
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", "--data", str(data), "--out", str(run), "--epochs", "1", "--folds", "3",
                                 "--device", "cpu", "--subject-from", r"/(p\d)_"])
    assert result.exit_code == 0, result.output
    import json

    warnings = json.loads((run / "metrics.json").read_text())["warnings"]
    assert any("upscaled" in w for w in warnings) and any("test split holds only" in w for w in warnings)
    assert json.loads((run / "config.json").read_text())["data"]["subject_from"] == r"/(p\d)_"


# ---------------------------------------------------------------- set-up and output details


def test_progress_is_one_line_per_epoch_in_a_log(tmp_path):
    data = make_folders(tmp_path / "folders")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-m", "interpret", "train", "--data", str(data), "--out",
                           str(tmp_path / "run"), "--epochs", "2", "--folds", "3", "--device", "cpu"],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr
    assert sum(line.startswith("epoch ") for line in done.stderr.splitlines()) == 2


def test_run_files_respect_the_umask(tmp_path):
    from interpret.io import write_json

    old = os.umask(0o022)
    try:
        write_json(tmp_path / "x.json", {})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "x.json").stat().st_mode) == 0o644


def test_version_and_import_beside_a_clone_folder(tmp_path):
    assert invoke("--version").strip().startswith("interpret ")
    (tmp_path / "interpret").mkdir()  # the folder a `git clone .../interpret` makes, seen from its parent
    done = subprocess.run([sys.executable, "-c", "import interpret; print(interpret.__file__)"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip().endswith("__init__.py"), done.stderr


def test_same_seed_same_threads_same_bits_across_processes(tmp_path):
    """The reproducibility contract (README): seed + torch build + thread count + CPU kernels."""
    script = ("import sys, torch, hashlib; torch.set_num_threads(1)\n"
              "from interpret.training import train\n"
              "from interpret.runs import load_checkpoint\n"
              "out = train(data='synthetic', out=sys.argv[1], subjects=6, epochs=1, folds=3, protocol='khorrami', "
              "device='cpu', progress=False)\n"
              "sd = load_checkpoint(out / 'model.pt')['state_dict']\n"
              "print(hashlib.sha256(b''.join(v.numpy().tobytes() for v in sd.values())).hexdigest())\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    digests = [subprocess.run([sys.executable, "-c", script, str(tmp_path / f"r{i}")], capture_output=True,
                              text=True, env=env, check=True).stdout.strip() for i in range(2)]
    assert digests[0] == digests[1] and len(digests[0]) == 64
    import json

    environment = json.loads((tmp_path / "r0" / "metrics.json").read_text())["environment"]
    assert environment["threads"] == 1 and environment["torch"] == __import__("torch").__version__


def test_every_documented_entry_point_resolves_with_a_docstring():
    import interpret

    names = dir(interpret)
    for name in interpret.ENTRY_POINTS:
        assert name in names
        entry = getattr(interpret, name)
        assert callable(entry) and (entry.__doc__ or "").strip(), name
    with pytest.raises(AttributeError):
        interpret.no_such_step


def test_report_leaves_out_results_of_another_model(tmp_path, make_report_run):
    """au-map, sanity and deconvolution outputs computed from a model.pt that is no longer the run's."""
    import json

    from interpret.report import write_report
    from interpret.io import sha256_file

    run = make_report_run(tmp_path / "run")
    (run / "model.pt").write_bytes(b"the re-trained model")
    current = sha256_file(run / "model.pt")
    for path in (run / "aumap").glob("AU*.json"):
        data = json.loads(path.read_text())
        data["model_sha256"] = current if data["au"] == "AU01" else "0" * 64
        path.write_text(json.dumps(data))
    html = write_report(run).read_text()
    assert "aumap/AU04.json was computed from another model.pt" in html and "interpret au-map" in html
    assert "sanity/sanity.json was computed from an unrecorded model.pt" in html
    assert 'href="#AU01"' in html and 'href="#AU04"' not in html
