"""Architectures: every layer's output shape, distinct non-inplace ReLUs, receptive fields."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from interpret.models import ARCHITECTURES, build_model, stage

# (conv, relu, pool) output shapes per layer for a (2, 1, 96, 96) batch
SHAPES = {
    "zhu2019": [((2, 64, 96, 96), (2, 64, 48, 48)), ((2, 128, 48, 48), (2, 128, 24, 24)),
                ((2, 256, 24, 24), (2, 256, 12, 12))],
    "khorrami2015": [((2, 64, 96, 96), (2, 64, 48, 48)), ((2, 128, 48, 48), (2, 128, 24, 24)),
                     ((2, 256, 24, 24), (2, 256, 2, 2))],
}
FC_IN = {"zhu2019": 36864, "khorrami2015": 1024}
FC_OUT = {"zhu2019": 1024, "khorrami2015": 300}


@pytest.mark.parametrize("arch", sorted(SHAPES))
def test_every_layer_shape(arch):
    torch.manual_seed(0)
    model = build_model(arch, 7).eval()
    x = torch.randn(2, 1, 96, 96)
    assert model.n_layers == 3
    for k, (conv_shape, pool_shape) in enumerate(SHAPES[arch], start=1):
        st = stage(model, k)
        conv = st.conv(x)
        relu = st.relu(conv)
        assert conv.shape == conv_shape and relu.shape == conv_shape
        assert torch.all(relu >= 0) and torch.equal(relu, conv.clamp_min(0))
        x = st.pool(relu)
        assert x.shape == pool_shape
    assert model.fc.in_features == FC_IN[arch] == x.flatten(1).shape[1]
    assert model.fc.out_features == FC_OUT[arch]
    assert isinstance(model.dropout, nn.Dropout) and model.dropout.p == 0.5
    assert model(torch.randn(2, 1, 96, 96)).shape == (2, 7)


@pytest.mark.parametrize("arch", sorted(SHAPES))
def test_relus_are_distinct_non_inplace_modules(arch):
    model = build_model(arch, 7)
    relus = [stage(model, k).relu for k in (1, 2, 3)] + [model.relu_fc]
    assert all(type(r) is nn.ReLU and not r.inplace for r in relus)
    assert len({id(r) for r in relus}) == 4
    registered = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    assert len(registered) == 4


def test_forward_uses_the_relu_modules():
    """Deconvnet hooks live on the ReLU modules: the forward pass must call each of them."""
    model = build_model("zhu2019", 7).eval()
    called = []
    for k in (1, 2, 3):
        stage(model, k).relu.register_forward_hook(lambda m, i, o, k=k: called.append(k))
    model(torch.randn(1, 1, 96, 96))
    assert called == [1, 2, 3]


def test_unknown_architecture():
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model("vgg", 7)


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_restored_model_equals_a_loaded_fresh_one(arch, tmp_path):
    """load_run's restore (initialisers skipped, mapped checkpoint assigned) gives the model
    the checkpoint holds: every parameter and buffer equal, trainable, outputs equal."""
    from interpret.runs import load_checkpoint, restored_model, save_checkpoint

    torch.manual_seed(0)
    trained = build_model(arch, 7).eval()
    save_checkpoint(tmp_path / "model.pt", trained, {})
    config = {"arch": arch, "classes": list(range(7))}
    state = load_checkpoint(tmp_path / "model.pt", mmap=True)["state_dict"]
    rng = torch.get_rng_state()
    restored = restored_model(config, state).eval()
    assert torch.equal(torch.get_rng_state(), rng)  # no random initialiser ran
    want, got = trained.state_dict(), restored.state_dict()
    assert want.keys() == got.keys()
    assert all(torch.equal(want[k], got[k]) for k in want)
    assert all(p.requires_grad for p in restored.parameters())
    spec = ARCHITECTURES[arch].input
    x = torch.randn(2, spec.channels, spec.size, spec.size)
    with torch.no_grad():
        assert torch.equal(trained(x), restored(x))
    # the initialisers work again once the model is built
    fresh = torch.empty(1000)
    assert float(fresh.uniform_(2.0, 3.0).min()) >= 2.0


def test_restored_model_refuses_a_checkpoint_missing_a_parameter(tmp_path):
    from interpret.runs import restored_model

    state = build_model("zhu2019", 7).state_dict()
    state.pop(next(iter(state)))
    with pytest.raises(RuntimeError, match="Missing key"):
        restored_model({"arch": "zhu2019", "classes": list(range(7))}, state)
