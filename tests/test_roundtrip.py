"""Synthetic faces -> CK+ layout on disk -> CK+ reader gives back the same data, and inspect agrees."""

import json

import numpy as np
from typer.testing import CliRunner

from interpret.cli import app
from interpret.data import load_faceset
from interpret.synth import synthetic_faceset, write_synthetic

SUBJECTS, SEED = 4, 11


def _by_row(fs):
    order = np.lexsort((fs.frame, fs.sequence))
    return fs.select(order)


def _aus(fs):
    """{(sequence, frame): {AU: intensity}} of the present AUs."""
    return {(s, int(f)): {int(a): int(v) for a, v in zip(fs.au_codes, row) if v >= 0}
            for s, f, row in zip(fs.sequence, fs.frame, fs.au_intensity)}


def test_synth_to_ckplus_tree_and_back_is_identical(tmp_path):
    root = write_synthetic(tmp_path / "ck", subjects=SUBJECTS, seed=SEED, fmt="ckplus")
    memory = _by_row(synthetic_faceset(subjects=SUBJECTS, seed=SEED))
    disk = _by_row(load_faceset(str(root)))
    assert disk.source == "ckplus" and len(disk) == len(memory)
    assert np.array_equal(disk.sequence, memory.sequence) and np.array_equal(disk.frame, memory.frame)
    assert np.array_equal(disk.subject, memory.subject)
    assert np.array_equal(disk.images, memory.images)
    assert np.abs(disk.landmarks - memory.landmarks).max() < 1e-3
    assert np.array_equal(disk.emotion, memory.emotion)
    assert _aus(disk) == _aus(memory)
    assert all(p.endswith(".png") for p in disk.paths)


def test_inspect_counts_match_between_synthetic_and_its_ckplus_tree(tmp_path):
    root = write_synthetic(tmp_path / "ck", subjects=SUBJECTS, seed=SEED, fmt="ckplus")
    runner = CliRunner()
    args = ["--subjects", str(SUBJECTS), "--seed", str(SEED), "--json"]
    memory = json.loads(runner.invoke(app, ["inspect", "--data", "synthetic", *args]).stdout)
    disk = json.loads(runner.invoke(app, ["inspect", "--data", str(root), "--json"]).stdout)
    for key in ("subjects", "sequences", "labelled_sequences", "frames", "emotions"):
        assert disk[key] == memory[key], key
    # the CK+ reader lists the AUs coded in the tree; the generator lists every planted AU
    assert disk["aus"] == {au: n for au, n in memory["aus"].items() if n}
    assert memory["frames"] > 0 and sum(memory["emotions"].values()) > 0
