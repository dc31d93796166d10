"""Sharded caches: 2 shards merged equal the single-process cache bit for bit; a missing shard is named."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from interpret.cache import build_cache, cache_path
from interpret.cli import app
from interpret.errors import InterpretError
from interpret.models import build_model
from interpret.runs import load_run, save_checkpoint, write_config
from interpret.shards import build_shard, merge_cache, merge_top_k, plan, shard_path, sharded_cache


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """An untrained zhu2019 run on 4 synthetic subjects (more than two evaluation batches)."""
    path = tmp_path_factory.mktemp("run")
    config = {"arch": "zhu2019", "classes": ["anger", "disgust", "fear", "happy", "sadness", "surprise"],
              "data": {"spec": "synthetic", "subjects": 4, "seed": 1}, "protocol": "paper", "size": 99,
              "split": {"kind": "kfold", "folds": 3, "fold": 0, "seed": 0}, "seed": 0}
    torch.manual_seed(0)
    save_checkpoint(path / "model.pt", build_model("zhu2019", len(config["classes"])), {"arch": "zhu2019"})
    write_config(path, config)
    return load_run(path)


def contents(path) -> dict:
    with h5py.File(path, "r") as h5:
        return {"attrs": {k: np.asarray(v).tolist() for k, v in h5.attrs.items()},
                **{name: (h5[name].dtype, h5[name][()]) for name in h5}}


def test_two_shards_merge_into_the_single_process_cache(run):
    assert (run.path / "dataset.h5").is_file()  # a run without it gets it on first load
    single = contents(build_cache(run, layer=2, store_maps=True))
    cache_path(run, "relu2").unlink()
    assert len(run.dataset) > 128 and plan(len(run.dataset), 2)[0] == (0, 128)

    build_shard(run, 2, 1, 2, store_maps=True)
    with pytest.raises(InterpretError) as caught:
        merge_cache(run, 2, 2)
    assert str(caught.value).startswith(f"{shard_path(run, 'relu2', 0, 2)}: shard 0 of 2 is missing")
    assert "--shard 0/2" in str(caught.value)
    assert not cache_path(run, "relu2").exists()

    assert sharded_cache(run, 2, store_maps=True, shard=(0, 2)) == cache_path(run, "relu2")  # the last shard merges
    merged = contents(cache_path(run, "relu2"))
    assert merged.keys() == single.keys() and merged["attrs"] == single["attrs"]
    for name in single.keys() - {"attrs"}:
        assert merged[name][0] == single[name][0], name
        np.testing.assert_array_equal(merged[name][1], single[name][1], err_msg=name, strict=True)


def test_shard_option_is_checked(run):
    result = CliRunner().invoke(app, ["cache", "--run", str(run.path), "--layer", "1", "--shard", "2/2"])
    assert result.exit_code == 1 and "--shard must be i/N with 0 <= i < N" in result.output


def test_top_k_of_shard_top_ks_is_the_global_top_k():
    rng = np.random.default_rng(0)
    values = rng.integers(0, 6, (300, 7)).astype(np.float32)  # many ties
    k = 9
    truth = np.argsort(-values, axis=0, kind="stable")[:k]
    parts, rows = [], []
    for start, stop in ((0, 100), (100, 128), (128, 300)):
        local = np.argsort(-values[start:stop], axis=0, kind="stable")[:k]
        parts.append(np.take_along_axis(values[start:stop], local, 0))
        rows.append(local + start)
    top_values, top_rows = merge_top_k(parts, rows, k)
    np.testing.assert_array_equal(top_rows, truth)
    np.testing.assert_array_equal(top_values, np.take_along_axis(values, truth, 0))


def test_deconv_map_shards_merge_into_the_single_deconvolution(run):
    from interpret.deconv import run_deconv
    from interpret.shards import DECONV_ARRAYS, deconv_shard_path, sharded_deconv

    with h5py.File(run_deconv(run, layer=2, top=4, maps="7,0,5,3,9").path, "r") as h5:
        single = {name: h5[name][()] for name in DECONV_ARRAYS}
    (run.path / "deconv" / "relu2.h5").unlink()
    assert sharded_deconv(run, 2, 4, "7,0,5,3,9", shard=(1, 2)) == deconv_shard_path(run, "relu2", 1, 2)
    assert not (run.path / "deconv" / "relu2.h5").exists()
    path = sharded_deconv(run, 2, 4, "7,0,5,3,9", shard=(0, 2))
    with h5py.File(path.path, "r") as h5:
        merged = {name: h5[name][()] for name in DECONV_ARRAYS}
    for name in DECONV_ARRAYS:
        if name == "projection":
            np.testing.assert_allclose(merged[name], single[name], rtol=1e-5, atol=1e-6 * np.abs(single[name]).max())
        else:
            np.testing.assert_array_equal(merged[name], single[name], err_msg=name, strict=True)
    assert sorted(p.name for p in (run.path / "deconv" / "relu2").iterdir()) == [
        f"map_{m:03d}.png" for m in (0, 3, 5, 7, 9)]
