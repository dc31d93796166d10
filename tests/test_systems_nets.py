"""The four seed systems' networks: exact parameter counts, shapes, named stages, receptive fields."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from interpret.layers import resolve_layer
from interpret.models import ARCHITECTURES, build_model, stage
from interpret.receptive import receptive_field
from interpret.systems.nets import n_parameters
from interpret.systems.wu2019 import SequenceHead

# arch: (classes, input shape, parameters, relu output shapes per stage)
NETS = {
    "liu2019": (9, (2, 1, 48, 48), 1_367_241,
                [(32, 48), (32, 48), (32, 24), (64, 12)]),
    "djellali2021": (7, (2, 1, 48, 48), 2_345_607,
                     [(32, 46), (64, 44), (128, 20), (128, 8)]),
    "wu2019": (7, (2, 1, 48, 48), None,
               [(32, 48), (32, 48), (64, 24), (64, 24), (128, 12), (128, 12), (128, 12)]),
    "wang2022": (5, (2, 3, 44, 44), None, [(96, 44), (128, 22), (128, 22), (256, 11), (256, 11)]),
}


@pytest.mark.parametrize("arch", sorted(NETS))
def test_parameters_and_every_stage_shape(arch):
    classes, shape, params, stages = NETS[arch]
    torch.manual_seed(0)
    model = build_model(arch, classes).eval()
    if params is not None:
        assert n_parameters(model) == params
    assert model.n_layers == len(stages)
    assert ARCHITECTURES[arch].input.channels == shape[1]
    x = torch.randn(*shape)
    for k, (channels, side) in enumerate(stages, start=1):
        st = stage(model, k)
        conv = st.conv(x)
        relu = st.relu(conv)
        assert relu.shape == (2, channels, side, side)
        assert type(st.relu) is nn.ReLU and not st.relu.inplace
        x = st.pool(relu)
        assert resolve_layer(model, k) == f"relu{k}"
    assert model(torch.randn(*shape)).shape == (2, classes)


def test_published_layer_arithmetic():
    liu = build_model("liu2019", 9)
    assert liu.fc.in_features == 2304 and liu.fc2.out_features == 256  # Table I typos corrected
    assert n_parameters(liu.fc) == 1_180_160 and n_parameters(liu.fc2) == 131_328 and n_parameters(liu.out) == 2_313
    rf = receptive_field(liu, 4, (1, 48, 48))  # rows 4y-8 ... 4y+11
    assert (rf.size, rf.stride, rf.offset) == ((20, 20), (4, 4), (-8, -8))
    djellali = build_model("djellali2021", 7)
    assert djellali.fc.in_features == 2048 and djellali.conv1.padding == (0, 0)
    rf = receptive_field(djellali, 4, (1, 48, 48))  # rows 4y ... 4y+19
    assert (rf.size, rf.stride, rf.offset) == ((20, 20), (4, 4), (0, 0))
    wang = build_model("wang2022", 5)
    assert wang.conv1.weight.shape == (96, 3, 3, 3) and wang.conv1.weight.numel() == 2592
    assert build_model("wu2019", 7).fc.out_features == 512


def test_liu_fc_kernels_are_keras_random_normal():
    torch.manual_seed(0)
    liu = build_model("liu2019", 9)
    assert abs(float(liu.fc.weight.detach().std()) - 0.05) < 0.002
    assert float(liu.fc.bias.detach().abs().sum()) == 0.0


def test_lstm_head_parameters_and_shapes():
    """Keras counts LSTM(128) on 512 inputs as 328,192; PyTorch keeps two bias vectors (+512)."""
    for steps in (1, 3):
        head = SequenceHead(7, steps)
        assert n_parameters(head.lstm1) == 4 * (512 + 128 + 1) * 128 + 4 * 128
        assert n_parameters(head.lstm2) == 4 * (128 + 64 + 1) * 64 + 4 * 64
        assert n_parameters(head.out) == 64 * steps * 7 + 7
        assert head(torch.randn(4, steps, 512)).shape == (4, 7)
    with pytest.raises(ValueError):
        SequenceHead(7, 3)(torch.randn(2, 2, 512))


def test_deconv_projects_rgb_networks_on_replicated_grey_exactly():
    """wang2022 takes grey replicated to RGB: the projection (summed over the input channels, as
    for any multi-channel input) equals autograd's gradient of the unit w.r.t. the grey image."""
    from interpret.deconv import project

    torch.manual_seed(0)
    model = build_model("wang2022", 5).eval()
    grey = torch.rand(1, 1, 20, 20, requires_grad=True)
    rgb = grey.expand(-1, 3, -1, -1)
    x = rgb
    for k in (1, 2):
        x = stage(model, k).pool(stage(model, k).relu(stage(model, k).conv(x)))
    relu3 = stage(model, 3).relu(stage(model, 3).conv(x))[0, 4]
    y, x_ = divmod(int(relu3.argmax()), relu3.shape[1])  # an active unit: its gradient is not zero
    relu3[y, x_].backward()
    assert grey.grad.abs().sum() > 0
    projected = project(model, 3, rgb.detach(), [(4, y, x_)], rule="gradient")
    torch.testing.assert_close(projected[0], grey.grad[0, 0], rtol=1e-4, atol=1e-6)
