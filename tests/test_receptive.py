"""Receptive fields measured from gradient support: the paper's hand formula, other geometries, and containment."""

import numpy as np
import pytest
import torch
from torch import nn

from interpret.layers import layer_output
from interpret.models import build_model, stage
from interpret.receptive import receptive_field


def paper_formula(model, layer: int) -> tuple[int, int, int]:
    """(size, stride, offset) of relu{layer} of the paper's conv/ReLU/max-pool stacks, by hand (REFERENCE §2)."""
    size, stride, offset = 1, 1, 0
    for k in range(layer, 0, -1):
        conv = stage(model, k).conv
        size, offset = size + conv.kernel_size[0] - 1, offset - conv.padding[0]  # a stride-1 conv
        if k > 1:  # the max-pool below it, kernel = stride = p
            p = stage(model, k - 1).pool.kernel_size
            size, stride, offset = size * p, stride * p, offset * p
    return size, stride, offset


@pytest.mark.parametrize("arch", ["zhu2019", "khorrami2015"])
def test_equals_the_paper_formula(arch):
    model = build_model(arch, 7)
    for layer in (1, 2, 3):
        field = receptive_field(model, layer, (1, 96, 96))
        size, stride, offset = paper_formula(model, layer)
        assert field.size == (size, size) and field.stride == (stride, stride) and field.offset == (offset, offset)
        assert not field.clipped
    assert paper_formula(model, 3) == (32, 4, -14)  # REFERENCE §2: rows 4y-14 .. 4y+17


@pytest.mark.parametrize("side", [96, 48, 99, 20])
def test_fast_path_geometry_equals_the_measured_field(side):
    """`fast_field` (the deconvolution fast path's window geometry) is the measured field, for the
    paper's stacks and a user stack with 'valid' and 'same' convs, at even and odd sizes."""
    from interpret.deconv import fast_field

    user = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 6, 3, padding="same"),
                         nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 5, 5, padding=1), nn.ReLU())
    cases = [(build_model(arch, 7), layer) for arch in ("zhu2019", "khorrami2015") for layer in (1, 2, 3)]
    for model, layer in cases + [(user, "1"), (user, "4"), (user, "7")]:
        assert fast_field(model, layer, side) == receptive_field(model, layer, (1, side, side))
    normed = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    assert fast_field(normed, "2", side) is None  # not a plain conv/ReLU/max-pool chain


def test_contains_the_support_of_a_trained_unit():
    """The input pixels a relu3 unit of a random network depends on lie inside its measured field."""
    torch.manual_seed(0)
    model = build_model("zhu2019", 2).eval()
    field = receptive_field(model, "relu3", (1, 96, 96))
    x = torch.randn(1, 1, 96, 96, requires_grad=True)
    uy, ux = 10, 7
    out = layer_output(model, "conv3", x, detach=False)
    out[0, :, uy, ux].sum().backward()
    rows, cols = torch.nonzero(x.grad[0, 0].abs() > 0, as_tuple=True)
    top, left, bottom, right = field.boxes(np.array([uy, ux]), (96, 96))
    assert rows.min() >= top and rows.max() < bottom and cols.min() >= left and cols.max() < right


def test_strided_batchnorm_dilated_and_asymmetric_geometry():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4), nn.ReLU(),  # 3, stride 2, offset -1
        nn.Conv2d(4, 4, 3, padding=2, dilation=2), nn.ReLU(),                   # + 2*2*2 = 11, offset -5
        nn.MaxPool2d(3, stride=2, padding=1),                                   # + 2*2 = 15, stride 4, offset -7
        nn.Conv2d(4, 4, (1, 3), padding=(0, 1)),                                 # columns only: + 2*4 = 23, offset -11
        nn.AdaptiveAvgPool2d(1)).eval()
    field = receptive_field(model, "2", (3, 40, 40))
    assert (field.size, field.stride, field.offset) == ((3, 3), (2, 2), (-1, -1))
    field = receptive_field(model, "5", (3, 40, 40))
    assert (field.size, field.stride, field.offset) == ((15, 15), (4, 4), (-7, -7))
    field = receptive_field(model, "6", (3, 40, 40))
    assert (field.size, field.stride, field.offset) == ((15, 23), (4, 4), (-7, -11))
    whole = receptive_field(model, "7", (3, 40, 40))  # global pooling sees the whole input
    assert whole.clipped and whole.boxes(np.array([0, 0]), (40, 40)).tolist() == [0, 0, 40, 40]


def test_no_hook_is_left_also_after_an_error():
    model = build_model("zhu2019", 7)
    receptive_field(model, "relu2", (1, 96, 96))
    with pytest.raises(RuntimeError):
        receptive_field(model, "relu2", (3, 96, 96))  # conv1 takes one channel
    assert sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()) == 0
    assert model.conv1.weight.dtype == torch.float32 and model.conv1.weight.abs().std() > 0  # weights untouched
