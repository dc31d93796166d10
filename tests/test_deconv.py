import copy
import warnings

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from captum.attr import NeuronDeconvolution, NeuronGradient, NeuronGuidedBackprop

from interpret.cache import open_cache
from interpret.deconv import deconvolve_top, fast_path_applies, parse_maps, project, run_deconv
from interpret.errors import InterpretError
from interpret.models import stage

CAPTUM = {"deconvnet": NeuronDeconvolution, "gradient": NeuronGradient, "guided": NeuronGuidedBackprop}
# interior and border units of relu1 (96x96), relu2 (48x48), relu3 (24x24): (map, y, x)
SEEDS = {
    1: [(3, 40, 60), (0, 0, 0), (63, 95, 95), (10, 50, 0), (7, 0, 71)],
    2: [(5, 20, 25), (0, 0, 0), (127, 47, 47), (9, 0, 30), (64, 33, 47)],
    3: [(0, 11, 12), (5, 0, 0), (255, 23, 23), (17, 0, 22), (100, 23, 1), (42, 1, 12)],
}


@pytest.fixture(scope="module")
def run(make_trained_run, tmp_path_factory):
    return make_trained_run(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="module")
def biased(run):
    """The trained model with clearly non-zero biases, so that bias handling is observable."""
    model = copy.deepcopy(run.model)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for k in (1, 2, 3):
            bias = stage(model, k).conv.bias
            bias += 0.2 * torch.randn(bias.shape, generator=generator)
    return model.eval()


def images_for(run, n):
    return run.dataset.images(0, len(run.dataset))[torch.arange(n) * 7 % len(run.dataset)]


def captum(model, layer, images, seeds, rule):
    """captum's projection of unit seeds[i] of images[i], all seeds in one call: the selector
    picks one unit per example, and examples do not interact (eval mode), so each input's
    gradient is its own unit's."""
    c, y, x = torch.as_tensor(seeds).T
    attr = CAPTUM[rule](model, getattr(model, f"relu{layer}"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = attr.attribute(images.clone(), neuron_selector=lambda act: act[torch.arange(len(c)), c, y, x])
    return out[:, 0].detach()


def relative_error(a, b):
    """Per seed: max |a - b| over the larger of the two projections' scales."""
    a, b = torch.as_tensor(a).flatten(1), torch.as_tensor(b).flatten(1)
    scale = torch.maximum(a.abs().amax(1), b.abs().amax(1)).clamp_min(1e-12)
    return (a - b).abs().amax(1) / scale


def oracle(model, layer, images, seeds, rule="deconvnet", unpool="switch", backward_bias=False, forward_bias=True):
    """Zeiler–Fergus on full images, written out: a forward recording the pooling switches,
    then per layer down: unpool, rectify, transposed filters. The keyword arguments are the
    mutations the tests show to be visible."""
    x, switches, pre = images, [], []
    for k in range(1, layer + 1):
        conv = stage(model, k).conv
        z = F.conv2d(x, conv.weight, conv.bias if forward_bias else None, padding=conv.padding)
        pre.append(z)
        x = F.relu(z)
        if k < layer:
            x, idx = F.max_pool2d(x, 2, return_indices=True)
            switches.append(idx)
    c, y, xx = torch.as_tensor(seeds).T
    signal = torch.zeros_like(pre[-1])
    signal[torch.arange(len(c)), c, y, xx] = 1.0
    for k in range(layer, 0, -1):
        if k < layer:
            if unpool == "switch":
                signal = F.max_unpool2d(signal, switches[k - 1], 2, output_size=pre[k - 1].shape[-2:])
            else:  # spread over the pooling window
                signal = F.interpolate(signal, scale_factor=2, mode="nearest") / 4
        if rule in ("deconvnet", "guided"):
            signal = F.relu(signal)
        if rule in ("gradient", "guided"):
            signal = signal * (pre[k - 1] > 0)
        conv = stage(model, k).conv
        signal = F.conv_transpose2d(signal, conv.weight, padding=conv.padding)
        if backward_bias and k > 1:
            signal = signal + stage(model, k - 1).conv.bias.view(1, -1, 1, 1)
    return signal[:, 0].detach()


@pytest.mark.parametrize("layer", [1, 2, 3])
@pytest.mark.parametrize("rule", ["deconvnet", "gradient", "guided"])
def test_project_equals_captum(run, biased, layer, rule):
    seeds = SEEDS[layer]
    images = images_for(run, len(seeds))
    for model in (run.model, biased):
        ours = project(model, layer, images, seeds, rule=rule)
        assert ours.shape == (len(seeds), 96, 96)
        reference = captum(model, layer, images, seeds, rule)
        assert (relative_error(ours, reference) <= 1e-5).all()
    assert ours.abs().amax((1, 2)).gt(0).any()


@pytest.mark.parametrize("layer", [2, 3])
def test_project_equals_explicit_oracle(biased, run, layer):
    seeds = SEEDS[layer]
    images = images_for(run, len(seeds))
    for rule in ("deconvnet", "guided"):
        ours = project(biased, layer, images, seeds, rule=rule)
        expected = oracle(biased, layer, images, seeds, rule=rule)
        assert (relative_error(ours, expected) <= 1e-5).all()


def test_mutations_are_visible(run, biased):
    """Each broken ingredient moves the result far beyond the tolerance of the tests above:
    the ReLU rule (plain gradient, guided), the switches (unpooling spread over the window), and
    biases (added on the way down, or left out of the forward that sets the switches)."""
    layer, seeds = 3, SEEDS[3]
    images = images_for(run, len(seeds))
    ours = project(biased, layer, images, seeds)
    variants = {
        "gradient": project(biased, layer, images, seeds, rule="gradient"),
        "guided": project(biased, layer, images, seeds, rule="guided"),
    }
    for name, kwargs in {"average unpool": {"unpool": "average"}, "backward bias": {"backward_bias": True},
                         "bias-free forward": {"forward_bias": False}}.items():
        variants[name] = oracle(biased, layer, images, seeds, **kwargs)
    for name, result in variants.items():
        error = relative_error(ours, result)
        assert error.max() > 0.05, name
        assert (error > 1e-3).sum() >= len(seeds) // 2, name


def test_project_validates_input(run):
    image = images_for(run, 1)
    with pytest.raises(ValueError, match="rule"):
        project(run.model, 3, image, [(0, 1, 1)], rule="lrp")
    with pytest.raises(ValueError, match="relu3"):
        project(run.model, 3, image, [(0, 24, 1)])
    with pytest.raises(ValueError, match="relu3"):
        project(run.model, 3, image, [(256, 0, 1)])


def test_parse_maps():
    assert parse_maps("all", 4, "relu3").tolist() == [0, 1, 2, 3]
    assert parse_maps("0,5,113", 256, "relu3").tolist() == [0, 5, 113]
    assert parse_maps([7, 2, 7], 256, "relu3").tolist() == [7, 2]
    with pytest.raises(InterpretError, match="map 256 is out of range: relu3 has maps 0..255"):
        parse_maps("0,256", 256, "relu3")
    with pytest.raises(InterpretError, match="map numbers"):
        parse_maps("first", 256, "relu3")


def test_rf_boxes_match_the_reference():
    from interpret.models import build_model
    from interpret.receptive import receptive_field

    field = receptive_field(build_model("zhu2019", 2), 3, (1, 96, 96))
    boxes = field.boxes(np.array([[0, 0], [10, 23], [5, 4]]), (96, 96))
    # unit (y, x) sees rows 4y-14 .. 4y+17; bottom/right exclusive, clipped to the image
    assert boxes.tolist() == [[0, 0, 18, 18], [26, 78, 58, 96], [6, 2, 38, 34]]


@pytest.fixture(scope="module")
def written(run):
    return run_deconv(run, layer=3, top=4, maps="0,5,113,200").path


def test_run_deconv_file(run, written):
    with h5py.File(written, "r") as h5:
        data = {name: h5[name][()] for name in h5}
        attrs = dict(h5.attrs)
    assert written == run.path / "deconv" / "relu3.h5"
    assert data["maps"].tolist() == [0, 5, 113, 200]
    assert data["projection"].shape == (4, 4, 96, 96) and data["projection"].dtype == np.float32
    assert attrs["top"] == 4 and attrs["rule"] == "deconvnet" and attrs["layer"] == "relu3"
    assert attrs["path"] == "fast-rf" and attrs["split"] == "train"
    cache = open_cache(run, 3)
    train = np.flatnonzero(cache.split == "train")
    for m, number in enumerate(data["maps"]):
        index = data["image_index"][m]
        assert len(set(index.tolist())) == 4 and set(index) <= set(train)  # distinct training images
        best = train[np.argsort(-cache.max[train, number], kind="stable")[:4]]
        assert index.tolist() == best.tolist()
        np.testing.assert_array_equal(data["activation"][m], cache.max[index, number])
        np.testing.assert_array_equal(data["position"][m], cache.positions(index, number))
        assert np.all(np.diff(data["activation"][m]) <= 0)
    # stored projections = activation x captum's unit projection; zero outside the receptive field
    seeds = [(int(n), *map(int, data["position"][m, j])) for m, n in enumerate(data["maps"]) for j in range(4)]
    images = run.dataset.images(0, len(run.dataset))[torch.from_numpy(data["image_index"].ravel())]
    reference = captum(run.model, 3, images, seeds, "deconvnet").numpy() * data["activation"].reshape(-1, 1, 1)
    projection = data["projection"].reshape(-1, 96, 96)
    assert (relative_error(projection, reference) <= 1e-5).all()
    for p, (top, left, bottom, right) in zip(projection, data["rf_box"].reshape(-1, 4)):
        outside = np.ones((96, 96), bool)
        outside[top:bottom, left:right] = False
        assert not np.any(p[outside]) and (bottom - top) <= 32 and (right - left) <= 32


def test_run_deconv_sheets(run, written):
    import cv2

    folder = run.path / "deconv" / "relu3"
    assert sorted(p.name for p in folder.iterdir()) == ["map_000.png", "map_005.png", "map_113.png", "map_200.png"]
    sheet = cv2.imread(str(folder / "map_113.png"))
    assert sheet.shape[0] > 2 * 96 and sheet.shape[1] >= 4 * 96  # two rows of four 96-px tiles
    assert cv2.imread(str(run.path / "deconv" / "relu3_overview.png")) is not None
    run_deconv(run, layer=3, top=2, maps=[7])  # a later job replaces the per-map folder
    assert [p.name for p in folder.iterdir()] == ["map_007.png"]


def test_deconvolve_top_errors(run):
    with pytest.raises(InterpretError, match="out of range"):
        deconvolve_top(run, layer=3, top=2, maps=[300])
    with pytest.raises(InterpretError, match="only"):
        deconvolve_top(run, layer=3, top=10_000, maps=[0])


def test_project_any_architecture(run):
    from interpret.models import build_model

    torch.manual_seed(0)
    model = build_model("khorrami2015", 3).eval()
    seeds = SEEDS[3][:3]
    images = images_for(run, len(seeds))
    assert (relative_error(project(model, 3, images, seeds), oracle(model, 3, images, seeds)) <= 1e-5).all()


def small_rgb_net():
    """A user-style nn.Sequential on 3-channel 20x20 input: conv/ReLU/max-pool, one 'same'-padded conv."""
    torch.manual_seed(1)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                               torch.nn.Conv2d(4, 6, 3, padding="same"), torch.nn.ReLU(),
                               torch.nn.Flatten(), torch.nn.Linear(6 * 10 * 10, 2)).eval()


@pytest.mark.parametrize("rule", ["deconvnet", "gradient", "guided"])
def test_fast_path_on_a_named_sequential_with_colour_input(rule):
    model = small_rgb_net()
    images = torch.randn(4, 3, 20, 20)
    seeds = [(0, 0, 0), (5, 9, 9), (2, 4, 7), (3, 9, 0)]
    assert fast_path_applies(model, "4")
    ours = project(model, "4", images, seeds, rule=rule)
    attr = CAPTUM[rule](model, model[4])
    reference = torch.cat([attr.attribute(images[i:i + 1], neuron_selector=tuple(s)) for i, s in enumerate(seeds)])
    assert ours.shape == (4, 20, 20)
    assert (relative_error(ours.numpy(), reference.sum(1).numpy()) <= 1e-5).all()  # summed over channels


def test_fast_path_only_for_plain_conv_relu_pool_chains(run):
    model = run.model
    assert fast_path_applies(model, "relu1") and fast_path_applies(model, 3)
    for layer in ("conv3", "pool2", "relu_fc"):  # not ending in conv -> ReLU
        assert not fast_path_applies(model, layer)
    bn = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU())
    strided = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, stride=2), torch.nn.ReLU())
    assert not fast_path_applies(bn, "2") and not fast_path_applies(strided, "1")


def test_a_layer_off_the_fast_path_goes_to_the_general_path(run):
    """A pool2 unit (general path) routes its signal to the relu2 unit at its window's maximum
    (fast path): the two projections are equal."""
    from interpret.layers import layer_output

    images = images_for(run, 1)
    relu2 = layer_output(run.model, "relu2", images)[0, 3, 6:8, 6:8]
    dy, dx = divmod(int(relu2.argmax()), 2)
    assert float(relu2.max()) > 0
    pooled = project(run.model, "pool2", images, [(3, 3, 3)])
    direct = project(run.model, "relu2", images, [(3, 6 + dy, 6 + dx)])
    assert pooled.shape == (1, 96, 96) and torch.allclose(pooled, direct, atol=1e-6)
    assert float(pooled.abs().sum()) > 0