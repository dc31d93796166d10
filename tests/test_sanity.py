"""Cascading randomization: the FC head cannot matter, conv layers do, outputs are documented and repeatable."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from interpret.data.faceset import ABSENT, FaceSet
from interpret.models import build_model, stage
from interpret.runs import Run, RunDataset
from interpret.sanity import (METRICS, RULES, aumap_check, cascade_stages, format_sanity, randomized_model,
                              run_sanity)

EMOTIONS = ("neutral", "happy", "surprise")
N_SEEDS = 8


def planted_faceset(n_per_class: int = 12, seed: int = 0) -> FaceSet:
    """Happy: a bright bar low in the face; surprise: a bright square high up; noise elsewhere."""
    rng = np.random.default_rng(seed)
    images, emotion = [], []
    for label in (1, 2):
        for _ in range(n_per_class):
            img = rng.integers(40, 90, (99, 99)).astype(np.uint8)
            y, x = rng.integers(-4, 5, 2)
            if label == 1:
                img[66 + y:74 + y, 25 + x:75 + x] = 230
            else:
                img[20 + y:34 + y, 40 + x:60 + x] = 230
            images.append(img)
            emotion.append(label)
    n = len(images)
    return FaceSet(images=np.stack(images), landmarks=None, subject=np.array([f"S{i % 6:03d}" for i in range(n)]),
                   sequence=np.array([f"S{i % 6:03d}/{i:03d}" for i in range(n)]), frame=np.ones(n, np.int64),
                   emotion=np.array(emotion), au_intensity=np.full((n, 1), ABSENT, np.int8),
                   paths=np.array([""] * n), emotions=EMOTIONS, au_codes=np.array([12]), source="planted")


def write_deconv_seeds(run: Run, layer: int) -> None:
    """RUN/deconv/reluK.h5 with the top-1 (activation, image, position) of every map, as `deconv` stores it."""
    with torch.no_grad():
        x = run.dataset.images(0, len(run.dataset))
        for k in range(1, layer + 1):
            st = stage(run.model, k)
            act = st.relu(st.conv(x))
            x = st.pool(act)
    flat = act.flatten(2)  # (N, C, H*W)
    per_image, where = flat.max(2)
    best = per_image.argmax(0)  # (C,)
    maps = torch.arange(act.shape[1])
    pos = where[best, maps]
    side = act.shape[-1]
    path = run.path / "deconv" / f"relu{layer}.h5"
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as h5:
        h5["maps"] = maps.numpy()
        h5["activation"] = per_image[best, maps].numpy()[:, None]
        h5["image_index"] = best.numpy()[:, None]
        h5["position"] = torch.stack([pos // side, pos % side], 1).numpy()[:, None, :]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """A khorrami2015 net trained for four Adam steps on planted faces, with deconv seeds on disk."""
    torch.manual_seed(0)
    faceset = planted_faceset()
    classes = ["happy", "surprise"]
    dataset = RunDataset(faceset, np.full(len(faceset), "train"), classes)
    model = build_model("khorrami2015", len(classes))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    images, targets = dataset.images(0, len(dataset)), torch.as_tensor(dataset.targets)
    model.train()
    for step in range(4):
        batch = torch.randperm(len(images))[:16]
        loss = torch.nn.functional.cross_entropy(model(images[batch]), targets[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    config = {"arch": "khorrami2015", "classes": classes}
    run = Run(path=tmp_path_factory.mktemp("run"), config=config, model=model, dataset=dataset,
              device=torch.device("cpu"))
    write_deconv_seeds(run, 3)
    return run


@pytest.fixture(scope="module")
def result(small_run):
    return run_sanity(small_run, layer=3, seed=0, n_seeds=N_SEEDS).result


def test_head_randomization_leaves_relu3_projections_identical(result):
    assert result["layer"] == "relu3"
    for rule in RULES:
        fc = result["metrics"][rule]["head"]
        assert fc["identical"], rule
        assert fc["spearman_abs"] == pytest.approx(1.0) and fc["ssim"] == pytest.approx(1.0)
    assert any("does not depend on out, fc" in note and "unchanged" in note for note in result["notes"])


def test_stages_are_cumulative_from_the_top(small_run):
    stages = cascade_stages(small_run.model, "relu3", small_run.dataset.images(0, 1))
    assert [s["name"] for s in stages] == ["trained", "head", "conv3", "conv2", "conv1"]
    assert stages[-1]["randomized"] == ["out", "fc", "conv3", "conv2", "conv1"]
    assert [s["can_change"] for s in stages] == [False, False, True, True, True]
    below_pool2 = cascade_stages(small_run.model, "pool2", small_run.dataset.images(0, 1))
    assert [s["name"] for s in below_pool2] == ["trained", "head", "conv2", "conv1"]
    assert below_pool2[1]["randomized"] == ["out", "fc", "conv3"]
    fresh = build_model("khorrami2015", 2)
    net = randomized_model(small_run.model, fresh, stages[2]["randomized"])
    assert torch.equal(net.conv3.weight, fresh.conv3.weight)
    assert torch.equal(net.conv2.weight, small_run.model.conv2.weight)
    assert not torch.equal(small_run.model.conv3.weight, fresh.conv3.weight)  # the original is untouched


def test_randomizing_conv_layers_changes_gradient_projections(result):
    gradient = result["metrics"]["gradient"]
    assert not gradient["conv3"]["identical"]
    assert gradient["conv1"]["spearman_abs"] < 0.5
    assert gradient["conv1"]["spearman_abs"] < gradient["head"]["spearman_abs"] - 0.4


def test_outputs_have_the_documented_keys(small_run, result):
    for key in ("run", "arch", "layer", "seed", "n_seeds", "rules", "stages", "seeds", "metrics", "per_seed",
                "notes", "verdict", "aumap_check", "figures", "thresholds"):
        assert key in result, key
    assert result["n_seeds"] == N_SEEDS and len(result["seeds"]) == N_SEEDS
    activations = [s["activation"] for s in result["seeds"]]
    assert activations == sorted(activations, reverse=True) and min(activations) > 0
    for rule in RULES:
        assert result["verdict"][rule]["kind"] in ("similar", "partly", "changed")
        for st in result["stages"]:
            cell = result["metrics"][rule][st["name"]]
            assert set(METRICS) <= set(cell)
            assert all(-1 <= cell[m] <= 1 for m in METRICS)
            assert all(len(result["per_seed"][rule][st["name"]][m]) == N_SEEDS for m in METRICS)
    saved = json.loads((small_run.path / "sanity" / "sanity.json").read_text())
    assert saved["metrics"] == result["metrics"]
    for rel in result["figures"].values():
        assert (small_run.path / rel).stat().st_size > 1000
    text = format_sanity(result)
    assert "verdict (deconvnet): the deconvnet projections" in text and "+ conv1" in text
    assert "au-map permutation check: no RUN/aumap" in text


def test_deterministic_for_a_seed(small_run, result):
    again = run_sanity(small_run, layer=3, seed=0, n_seeds=N_SEEDS).result
    assert again["metrics"] == result["metrics"]
    other = run_sanity(small_run, layer=3, seed=1, n_seeds=N_SEEDS).result
    assert other["metrics"]["gradient"]["conv1"] != result["metrics"]["gradient"]["conv1"]


def test_aumap_check_counts_family_wise_survivors(tmp_path):
    assert aumap_check(tmp_path / "aumap") is None
    for code, p in ((1, 0.001), (4, 0.02), (12, 0.5)):
        (tmp_path / "aumap").mkdir(exist_ok=True)
        (tmp_path / "aumap" / f"AU{code:02d}.json").write_text(json.dumps(
            {"au": f"AU{code:02d}", "best_map": code, "p_family": p, "best_auroc": 0.7, "permutations": 1000}))
    check = aumap_check(tmp_path / "aumap")
    assert (check["n_tested"], check["survive_family"], check["survive_bh"]) == (3, 2, 2)
    assert [a["au"] for a in check["aus"]] == ["AU01", "AU04", "AU12"]


def test_seeds_come_from_the_cache_without_a_deconv_file(small_run, tmp_path):
    from interpret.runs import save_checkpoint
    from interpret.sanity import select_seeds

    from_deconv = select_seeds(small_run, "relu3", N_SEEDS)
    bare = Run(path=tmp_path, config={**small_run.config, "size": 99, "protocol": "frames"}, model=small_run.model,
               dataset=small_run.dataset, device=small_run.device)
    save_checkpoint(tmp_path / "model.pt", small_run.model, {"arch": "khorrami2015"})
    from_cache = select_seeds(bare, "relu3", N_SEEDS)
    assert (tmp_path / "activations" / "relu3.h5").is_file()
    key = lambda seeds: [(s["map"], s["image_index"], s["y"], s["x"]) for s in seeds]  # noqa: E731
    assert key(from_cache) == key(from_deconv)
    assert [s["activation"] for s in from_cache] == pytest.approx([s["activation"] for s in from_deconv], rel=1e-5)


def test_a_batchnorm_is_randomized_with_its_conv():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                                torch.nn.Conv2d(4, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                                torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 2)).eval()
    stages = cascade_stages(model, "5", torch.zeros(1, 1, 10, 10))
    assert [s["name"] for s in stages] == ["trained", "head", "3", "0"]
    assert [s["randomized"] for s in stages[1:]] == [["7"], ["7", "3", "4"], ["7", "3", "4", "0", "1"]]
    # a layer between a conv and its BatchNorm: the BatchNorm runs after it, so it is head
    assert cascade_stages(model, "3", torch.zeros(1, 1, 10, 10))[1]["randomized"] == ["7", "4"]
