"""Layers by name: resolution, errors, and hooks that never outlive their block."""

import pytest
import torch
from torch import nn

from interpret.errors import InterpretError
from interpret.layers import layer_output, resolve_layer, retain
from interpret.models import build_model


def hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


def test_numbered_shorthand_and_names_resolve():
    model = build_model("zhu2019", 7)
    assert resolve_layer(model, 3) == "relu3"
    assert resolve_layer(model, "relu2") == "relu2"
    with pytest.raises(InterpretError, match="declares no layer 4"):
        resolve_layer(model, 4)
    with pytest.raises(InterpretError, match="no module of that name"):
        resolve_layer(model, "features.9")


def test_layer_output_equals_manual_forward_and_leaves_no_hook():
    torch.manual_seed(0)
    model = build_model("zhu2019", 7).eval()
    x = torch.randn(2, 1, 96, 96)
    manual = model.relu2(model.conv2(model.pool1(model.relu1(model.conv1(x)))))
    assert torch.equal(layer_output(model, "relu2", x), manual)
    assert hook_count(model) == 0


def test_retained_inputs_are_the_pre_activation_and_wrappers_keep_the_names():
    torch.manual_seed(0)
    model = build_model("zhu2019", 7).eval()
    x = torch.randn(2, 1, 96, 96)
    for wrapper in (model, torch.compile(model)):  # compiled lazily: never run here
        assert resolve_layer(wrapper, 3) == "relu3"
        with retain(wrapper, ["relu3"], inputs=True) as before, retain(wrapper, ["relu3"]) as after:
            model(x)
        assert before["relu3"].min() < 0 and torch.equal(torch.relu(before["relu3"]), after["relu3"])
        assert hook_count(model) == 0


def test_hooks_removed_when_the_block_raises():
    model = build_model("zhu2019", 7)
    with pytest.raises(RuntimeError):
        with retain(model, ["relu1", "relu3"]) as outputs:
            assert hook_count(model) == 2
            model(torch.randn(1, 1, 95, 95))  # wrong size: the FC layer raises
    assert "relu1" in outputs
    assert hook_count(model) == 0


def test_default_layer_and_sequential_names():
    from interpret.layers import choose_layer, map_layers

    assert choose_layer(build_model("khorrami2015", 7)) == "relu3"
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten())
    assert resolve_layer(net, 1) == "1"  # a child's own name when no number is declared
    with pytest.raises(InterpretError, match="declares no default layer"):
        choose_layer(net)
    assert map_layers(net, torch.zeros(1, 1, 5, 5)) == [("0", (2, 3, 3)), ("1", (2, 3, 3))]
    assert hook_count(net) == 0
