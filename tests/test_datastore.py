"""RUN/dataset.h5: the run's data stored once, read back identical, a changed source named."""

from __future__ import annotations

import dataclasses
import os

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from interpret.cli import app
from interpret.data.protocols import apply_protocol
from interpret.datastore import StoredImages, dataset_path, read_dataset, write_dataset
from interpret.errors import InterpretError
from interpret.runs import run_data, write_config
from interpret.synth import synthetic_faceset, write_synthetic


def config_for(spec, **data) -> dict:
    return {"data": {"spec": str(spec), **data}, "protocol": "paper", "size": 99,
            "split": {"kind": "kfold", "folds": 3, "fold": 0, "seed": 0}, "classes": ["happy", "surprise"]}


def assert_same(a, b) -> None:
    for field in dataclasses.fields(a):
        x, y = getattr(a, field.name), getattr(b, field.name)
        if isinstance(x, (np.ndarray, StoredImages)) or isinstance(y, (np.ndarray, StoredImages)):
            assert x.dtype.kind == y.dtype.kind and x.shape == y.shape, field.name
            np.testing.assert_array_equal(x, y, err_msg=field.name)
        else:
            assert x == y, field.name


def test_round_trip_gives_identical_arrays(tmp_path):
    faceset = apply_protocol(synthetic_faceset(subjects=3, seed=4), "paper")
    faceset = dataclasses.replace(faceset, partition=np.where(faceset.frame > 2, "train", "test"),
                                  skipped=[("a/b.png", "unreadable"), ("c.txt", "not an image")])
    split = np.where(np.arange(len(faceset)) % 3 == 0, "test", "train")
    write_dataset(tmp_path, faceset, split, ["happy", "surprise"], config_for("synthetic", subjects=3, seed=4))
    back, back_split = read_dataset(tmp_path, config_for("synthetic", subjects=3, seed=4))
    assert_same(faceset, back)
    np.testing.assert_array_equal(split, back_split)
    assert back.fingerprint() == faceset.fingerprint()
    # strings read back at their own width: an in-memory array wider than its text hashes the same
    wide = dataclasses.replace(faceset, subject=faceset.subject.astype("<U40"), paths=faceset.paths.astype("<U9"))
    assert wide.fingerprint() == back.fingerprint()
    assert not list(tmp_path.glob(".*.tmp")), "a temporary file was left behind"


def test_other_config_is_refused(tmp_path):
    faceset = synthetic_faceset(subjects=1, seed=0)
    write_dataset(tmp_path, faceset, np.full(len(faceset), "train"), ["happy", "surprise"],
                  config_for("synthetic", subjects=1))
    with pytest.raises(InterpretError, match=r"dataset\.h5: stored for another configuration \(protocol"):
        read_dataset(tmp_path, dict(config_for("synthetic", subjects=1), protocol="khorrami"))


def test_changed_source_is_named_and_refresh_accepts_it(tmp_path):
    source = write_synthetic(tmp_path / "ck", subjects=3, seed=2)
    run = tmp_path / "run"
    run.mkdir()
    config = config_for(source.resolve())
    first, split = run_data(run, config)
    assert dataset_path(run).is_file()
    again, again_split = run_data(run, config)
    assert_same(first, again)
    np.testing.assert_array_equal(split, again_split)

    image = sorted((source / "cohn-kanade-images").rglob("*.png"))[-1]
    pixels = cv2.imread(str(image), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(image), 255 - pixels)
    with pytest.raises(InterpretError) as caught:
        run_data(run, config)
    message = str(caught.value)
    assert "\n" not in message and str(dataset_path(run)) in message
    assert f"{image.relative_to(source)} changed" in message and "refresh-data" in message

    write_config(run, config)
    result = CliRunner().invoke(app, ["refresh-data", "--run", str(run)])
    assert result.exit_code == 0, result.output
    refreshed, _ = run_data(run, config)
    changed = np.flatnonzero(np.any(refreshed.images != first.images, axis=(1, 2)))
    assert changed.size >= 1 and set(refreshed.paths[changed]) == {str(image)}
    os.rename(source, tmp_path / "moved")  # the source gone: the stored copy is the run's data
    assert_same(run_data(run, config)[0], refreshed)


def test_truncated_file_is_one_line_error(tmp_path):
    faceset = synthetic_faceset(subjects=1, seed=0)
    path = write_dataset(tmp_path, faceset, np.full(len(faceset), "train"), ["happy", "surprise"],
                         config_for("synthetic"))
    path.write_bytes(path.read_bytes()[:4000])
    with pytest.raises(InterpretError, match=r"dataset\.h5: unreadable dataset file"):
        read_dataset(tmp_path, config_for("synthetic"))


def test_stored_images_read_only_the_rows_asked_for_and_index_like_the_array(tmp_path, monkeypatch):
    import pickle
    import tracemalloc

    faceset = synthetic_faceset(subjects=2, seed=1)
    config = config_for("synthetic", subjects=2, seed=1)
    write_dataset(tmp_path, faceset, np.full(len(faceset), "train"), ["happy", "surprise"], config)
    tracemalloc.start()
    try:
        back = read_dataset(tmp_path, config)[0]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    images, memory = back.images, faceset.images
    assert isinstance(images, StoredImages) and peak < memory.nbytes / 4  # the crops stay on disk
    monkeypatch.setattr(StoredImages, "BLOCK", 7)  # scattered rows span several reads
    rows = np.array([len(memory) - 1, 3, 3, 0, 20, -2])
    mask = np.arange(len(memory)) % 5 == 1
    for key in (4, -1, slice(2, 30, 3), rows, mask, (rows, slice(None), 5), (7, 3)):
        np.testing.assert_array_equal(images[key], memory[key])
    np.testing.assert_array_equal(np.asarray(images), memory)
    assert (images != memory).sum() == 0 and images.shape == memory.shape and len(images) == len(memory)
    assert back.fingerprint() == faceset.fingerprint() == back.fingerprint()
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(images))[rows], memory[rows])
    with pytest.raises(IndexError, match="dataset.h5: row index out of range"):
        images[np.array([0, len(memory)])]


def test_crops_reopened_from_a_file_gone_or_replaced_are_a_one_line_error(tmp_path):
    import pickle

    faceset = synthetic_faceset(subjects=1, seed=0)
    config = config_for("synthetic", subjects=1)
    write_dataset(tmp_path, faceset, np.full(len(faceset), "train"), ["happy", "surprise"], config)
    shipped = pickle.dumps(read_dataset(tmp_path, config)[0].images)  # another process opens the file anew
    other = synthetic_faceset(subjects=2, seed=0)  # refresh-data would write another dataset over it
    write_dataset(tmp_path, other, np.full(len(other), "train"), ["happy", "surprise"], config)
    with pytest.raises(InterpretError, match=r"dataset\.h5: unreadable crops \(the file changed since it was read"):
        pickle.loads(shipped)[0]
    dataset_path(tmp_path).write_text("not HDF5")
    with pytest.raises(InterpretError, match=r"dataset\.h5: unreadable crops \(.*delete the file to rebuild it$"):
        pickle.loads(shipped)[0]
