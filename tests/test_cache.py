import logging

import h5py
import numpy as np
import pytest
import torch

from interpret import cache as cache_mod
from interpret.cache import build_cache, cache_path, open_cache, read_cache
from interpret.errors import InterpretError
from interpret.io import sha256_file
from interpret.models import stage
from interpret.runs import RunDataset


@pytest.fixture(scope="module")
def run(make_trained_run, tmp_path_factory):
    return make_trained_run(tmp_path_factory.mktemp("run"))


def forward(run, layer):
    x = run.dataset.images(0, len(run.dataset))
    with torch.no_grad():
        for k in range(1, layer + 1):
            st = stage(run.model, k)
            x = st.relu(st.conv(x))
            x = st.pool(x) if k < layer else x
    return x


@pytest.mark.parametrize("layer", [1, "relu3"])
def test_cache_equals_direct_forward(run, layer):
    name = f"relu{layer}" if isinstance(layer, int) else layer
    path = build_cache(run, layer=layer, store_maps=True, batch_size=48)
    assert path == run.path / "activations" / f"{name}.h5"
    layer = int(name[-1])
    cache = read_cache(path)
    act = forward(run, layer)
    n, c, h, w = act.shape
    flat = act.reshape(n, c, -1)
    assert cache.max.shape == (n, c) and cache.max.dtype == np.float32
    np.testing.assert_allclose(cache.max, flat.amax(2).numpy(), rtol=1e-6, atol=1e-6)
    # the stored position holds the maximum, and is the first one in row-major order
    positions = cache.positions(np.arange(n)[:, None], np.arange(c)[None])  # (n, c, 2), read off the file
    y, x = positions[..., 0], positions[..., 1]
    rows = np.array([n - 1, 2, 2, 0])  # scattered, repeated: the rows asked for, in their order
    np.testing.assert_array_equal(cache.positions(rows, 3), positions[rows, 3])
    at = act.numpy()[np.arange(n)[:, None], np.arange(c)[None], y, x]
    np.testing.assert_allclose(at, cache.max, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(y * w + x, flat.argmax(2).numpy())
    assert cache.maps.shape == (n, c, h, w) and cache.maps.dtype == np.float16
    np.testing.assert_allclose(cache.maps[5], act[5].numpy(), rtol=1e-2, atol=1e-2)
    fs = run.dataset.faceset
    np.testing.assert_array_equal(cache.subject, fs.subject)
    np.testing.assert_array_equal(cache.sequence, fs.sequence)
    np.testing.assert_array_equal(cache.frame, fs.frame)
    np.testing.assert_array_equal(cache.split, run.dataset.split)
    np.testing.assert_array_equal(cache.aus, fs.au_present.astype(np.uint8))
    np.testing.assert_array_equal(cache.au_codes, fs.au_codes)
    np.testing.assert_array_equal(cache.emotion, run.dataset.targets)
    assert cache.attrs["layer"] == name and cache.layer == name and cache.attrs["dataset"] == fs.fingerprint()
    # each map's top-quantile threshold: the k-th largest of all its values, k = ceil(0.005 n h w)
    k = int(np.ceil(0.005 * n * h * w))
    naive = np.sort(act.transpose(0, 1).reshape(c, -1).numpy(), axis=1)[:, ::-1][:, k - 1]
    np.testing.assert_allclose(cache.thresholds(0.005), naive, rtol=1e-6, atol=1e-6)
    assert cache.thresholds(0.01) is None  # another quantile: not held
    cache.close()


def test_open_cache_reuses_then_rebuilds_on_changed_model(run, caplog, monkeypatch):
    path = build_cache(run, layer=2)
    built = []
    real = cache_mod.build_cache
    monkeypatch.setattr(cache_mod, "build_cache", lambda *a, **k: built.append(1) or real(*a, **k))
    with caplog.at_level(logging.WARNING, logger="interpret.cache"):
        open_cache(run, layer=2)
        assert built == [] and not caplog.records
        # a changed model.pt (same weights, different bytes) changes the fingerprint
        state = torch.load(run.path / "model.pt", weights_only=True)
        original = (run.path / "model.pt").read_bytes()
        try:
            state["meta"]["note"] = "retrained"
            torch.save(state, run.path / "model.pt")
            cache = open_cache(run, layer=2)
            assert cache.attrs["model_sha256"] == sha256_file(run.path / "model.pt")
        finally:
            (run.path / "model.pt").write_bytes(original)
    assert built == [1]
    assert "fingerprint mismatch (model_sha256)" in caplog.text and str(path) in caplog.text


def test_open_cache_rebuilds_when_maps_missing_or_file_foreign_or_truncated(run, caplog):
    path = build_cache(run, layer=1)
    with caplog.at_level(logging.WARNING, logger="interpret.cache"):
        assert open_cache(run, layer=1, store_maps=True).has_maps
        assert "maps asked for" in caplog.text
        with h5py.File(path, "w") as h5:
            h5["data"] = np.zeros(3)
        assert open_cache(run, layer=1).max.shape[0] == len(run.dataset)
        assert "not an interpret activation cache" in caplog.text
        path.write_bytes(path.read_bytes()[:4096])
        assert open_cache(run, layer=1).max.shape[0] == len(run.dataset)
        assert "truncated" in caplog.text


class FailingDataset(RunDataset):
    """Raises on the third batch, like an interrupted run."""

    def __init__(self, base):
        super().__init__(base.faceset, base.split, base.classes)
        self.calls = 0

    def images(self, start, stop):
        self.calls += 1
        if self.calls == 3:
            raise KeyboardInterrupt
        return super().images(start, stop)


def test_interrupted_build_leaves_no_cache(run):
    broken = type(run)(path=run.path, config=run.config, model=run.model, dataset=FailingDataset(run.dataset),
                       device=run.device)
    target = cache_path(run, "relu3")
    target.unlink(missing_ok=True)
    with pytest.raises(KeyboardInterrupt):
        build_cache(broken, layer=3, batch_size=16)
    assert not target.exists()
    assert not [p for p in target.parent.iterdir() if "relu3" in p.name]


def test_truncated_foreign_and_non_hdf5_files_are_clear_errors(run, tmp_path):
    good = build_cache(run, layer=1)
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as h5:
        h5["x"] = np.arange(3)
    text = tmp_path / "text.h5"
    text.write_text("hello")
    for path, words in ((truncated, "truncated"), (foreign, "not an interpret activation cache"),
                        (text, "not HDF5"), (tmp_path / "missing.h5", "not found")):
        with pytest.raises(InterpretError) as err:
            read_cache(path)
        message = str(err.value)
        assert message.startswith(str(path)) and words in message and "\n" not in message


def test_bad_layer_is_rejected(run):
    for layer, words in ((0, "declares no layer 0"), (4, "declares no layer 4"), ("relu9", "no module of that name"),
                         ("fc", r"not a \(B, C, H, W\) map")):
        with pytest.raises(InterpretError, match=words):
            open_cache(run, layer=layer)
    assert not (run.path / "activations" / "fc.h5").exists()


def test_any_named_map_layer_is_cached(run):
    cache = open_cache(run, layer="pool2")
    assert cache.path.name == "pool2.h5" and cache.max.shape[1] == 128
    np.testing.assert_allclose(cache.max, forward(run, 2).amax((2, 3)).numpy(), rtol=1e-6)  # max-pool keeps the max
