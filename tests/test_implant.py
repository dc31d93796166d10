"""`interpret implant`: detectors planted into a trained network, end to end on a tiny run, and its
parts (the feeding conv, the region cells and term, the head) against naive versions."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from interpret import stats
from interpret.cli import app
from interpret.data.transforms import PAPER_INPUT
from interpret.errors import InterpretError
from interpret.implant import (accuracy, cut_from_head, feeding_conv, head_parameters, implant, refit_head,
                               region_cells, region_penalty)
from interpret.layers import layer_output
from interpret.methods import ablation_drops
from interpret.report import write_report
from interpret.models import ARCHITECTURES, CONV_NETS, Architecture, ArchSpec, ExpressionNet
from interpret.runs import load_run
from interpret.training import train
from interpret.validate import validate

AUS = (1, 12, 25, 27)
FRESH = 12


@pytest.fixture(scope="module")
def implanted(tmp_path_factory):
    """A plain tiny run (8/16/32 maps, 30 subjects, one epoch) and two implants of it, with and without the region term."""
    root = tmp_path_factory.mktemp("implant")
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(CONV_NETS, "tiny", ArchSpec((8, 16, 32), 5, 2, 64, "test-sized zhu2019"))
        patch.setitem(ARCHITECTURES, "tiny", Architecture(build=lambda n: ExpressionNet("tiny", n), input=PAPER_INPUT,
                                                          layers={k: f"relu{k}" for k in (1, 2, 3)}))
        source = train(data="synthetic", out=root / "plain", arch="tiny", recipe="fast", lr=3e-3, epochs=1,
                       subjects=30, folds=4, seed=0, progress=False)
        region = implant(load_run(source), root / "region", aus=AUS, epochs=6, head_epochs=1, progress=False)
        loose = implant(load_run(source), root / "loose", aus=AUS, epochs=6, head_epochs=1, region=False,
                        progress=False)
        result = validate(load_run(region), controls=(), permutations=49, probe_permutations=0, fresh=FRESH)
        yield {"source": load_run(source), "region": load_run(region), "loose": load_run(loose), "result": result,
               "root": root}


def _labelled_rows(dataset):
    """(training rows, validation rows) with an emotion label."""
    split, labelled = np.asarray(dataset.split).astype(str), dataset.targets >= 0
    return np.flatnonzero((split == "train") & labelled), np.flatnonzero((split == "val") & labelled)


def _planted(run):
    return {au: m for au, m in run.config["planted"]["maps"].items()}


def test_implant_replaces_only_the_chosen_filters_and_records_its_source(implanted):
    source, run = implanted["source"], implanted["region"]
    planted = run.config["planted"]
    assert planted["layer"] == "relu3" and set(planted["maps"]) == {f"AU{a:02d}" for a in AUS}
    assert planted["implanted"]["source"] == str(source.path)
    assert planted["implanted"]["source_model_sha256"] == source.model_sha256
    chosen = sorted(planted["maps"].values())
    others = [m for m in range(32) if m not in chosen]
    old, new = source.model.state_dict(), run.model.state_dict()
    for name in ("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias"):
        assert torch.equal(old[name], new[name]), name
    assert torch.equal(old["conv3.weight"][others], new["conv3.weight"][others])
    assert not torch.equal(old["conv3.weight"][chosen], new["conv3.weight"][chosen])
    metrics = json.loads((run.path / "metrics.json").read_text())
    kept = metrics["implanted"]["head_epochs_kept"]
    assert kept in (0, 1)
    assert torch.equal(old["fc.weight"], new["fc.weight"]) == (kept == 0)
    assert not list(implanted["root"].glob(".*implant-*"))  # built in a staging folder, renamed whole
    assert metrics["implanted"]["source_test_accuracy"] == json.loads((source.path / "metrics.json").read_text())[
        "test_accuracy"]


def test_implanted_maps_detect_their_au(implanted):
    """On the run's own validation subjects (never fitted) and on fresh identities (validate's check)."""
    run = implanted["region"]
    data = run.dataset
    val = np.flatnonzero(np.asarray(data.split).astype(str) == "val")
    maxima = layer_output(run.model, "relu3", data.rows(val)).amax(dim=(2, 3)).numpy()
    codes = list(data.faceset.au_codes)
    before = layer_output(implanted["source"].model, "relu3", data.rows(val)).amax(dim=(2, 3)).numpy()

    def aurocs(act):
        return [stats.auroc(act[:, [m]], data.faceset.au_present[val, codes.index(int(au[2:]))])[0]
                for au, m in _planted(run).items()]

    fit = json.loads((run.path / "metrics.json").read_text())["implanted"]["fit"]
    # recorded from the float16 inputs the fit used: within 1e-3 of the network's own
    assert [f["val_auroc"] for f in fit.values()] == pytest.approx(aurocs(maxima), abs=1e-3)
    assert np.mean([f["train_auroc"] for f in fit.values()]) > 0.75
    # the tiny network's features generalise little (demo-size figures: BENCHMARKS.md), but better than the maps replaced
    assert np.mean(aurocs(maxima)) > max(0.55, np.mean(aurocs(before)) + 0.05)
    planted = implanted["result"]["planted"]
    assert planted["implanted_from"] == str(implanted["source"].path)
    assert planted["truth"].startswith(f"fresh: {FRESH} synthetic identities")
    assert implanted["result"]["accuracy"]["baseline"] == json.loads(
        (implanted["source"].path / "metrics.json").read_text())["test_accuracy"]
    html = write_report(run.path, None).read_text()
    assert f"after training, into the trained run {implanted['source'].path}" in html


def test_region_term_puts_the_planted_maps_peaks_in_their_regions(implanted):
    """The share of the training images with an AU whose planted map peaks inside the AU's region:
    higher with the region term than without it (same seed, same filters to start from)."""

    def peaks_inside(run):
        data = run.dataset
        rows = np.flatnonzero(np.asarray(data.split).astype(str) == "train")
        act = layer_output(run.model, "relu3", data.rows(rows))
        codes = [int(a[2:]) for a in _planted(run)]
        inside = region_cells(data, rows, codes, tuple(act.shape[-2:])).flatten(2)
        present = data.faceset.au_present[rows][:, [list(data.faceset.au_codes).index(c) for c in codes]]
        peak = act[:, list(_planted(run).values())].flatten(2).argmax(dim=2)
        hit = torch.gather(inside, 2, peak[..., None])[..., 0].numpy()
        return hit[present].mean()

    assert peaks_inside(implanted["region"]) > peaks_inside(implanted["loose"]) + 0.1


def test_region_cells_against_a_naive_loop(implanted):
    from interpret.methods import region_masks

    data = implanted["source"].dataset
    rows = np.array([0, 7, 40])
    cells = region_cells(data, rows, AUS, (24, 24)).numpy()
    masks = region_masks(data.faceset.landmarks[rows], AUS, data.faceset.images.shape[-1], data.spec)
    for i in range(len(rows)):
        for a in range(len(AUS)):
            for y in range(24):
                for x in range(24):
                    assert cells[i, a, y, x] == masks[i, a, 4 * y:4 * y + 4, 4 * x:4 * x + 4].any()


def test_region_penalty_against_a_naive_formula():
    torch.manual_seed(0)
    z = torch.randn(5, 2, 4, 4)
    inside = torch.rand(5, 2, 4, 4) > 0.5
    inside[0, 0] = True  # no cell outside: not counted
    inside[1, 1] = False  # no cell inside: not counted
    present = torch.tensor([[1, 1], [1, 1], [0, 1], [1, 0], [1, 1]])
    scale = z.amax(dim=(2, 3)).std(dim=0, correction=0) + 1e-3
    gaps = [max(0.0, float(z[i, a][~inside[i, a]].max() - z[i, a][inside[i, a]].max())) / float(scale[a])
            for i in range(5) for a in range(2)
            if present[i, a] and inside[i, a].any() and not inside[i, a].all()]
    assert float(region_penalty(z, inside, present)) == pytest.approx(np.mean(gaps), rel=1e-5)
    assert float(region_penalty(z, inside, torch.zeros(5, 2))) == 0.0


def test_feeding_conv_and_head_of_the_paper_net():
    model = ExpressionNet("zhu2019", 7).eval()
    probe = torch.zeros(1, 1, 96, 96)
    assert feeding_conv(model, "relu3", probe) == ("conv3", True)
    assert feeding_conv(model, "conv2", probe) == ("conv2", False)
    assert [p is q for p, q in zip(head_parameters(model, "relu3", probe),
                                   [model.fc.weight, model.fc.bias, model.out.weight, model.out.bias])] == [True] * 4
    with pytest.raises(InterpretError, match="implant plants in a Conv2d or a .* not a MaxPool2d"):
        feeding_conv(model, "pool3", probe)
    with pytest.raises(InterpretError, match="its input is not a Conv2d's output"):
        feeding_conv(model, "relu_fc", probe)
    for module in model.modules():  # every hook removed
        assert not module._forward_hooks and not module._forward_pre_hooks


def test_implant_refuses_a_planted_run_its_own_folder_and_a_finished_run(implanted, tmp_path):
    run, source = implanted["region"], implanted["source"]
    with pytest.raises(InterpretError, match="already holds planted detectors"):
        implant(run, tmp_path / "again", progress=False)
    with pytest.raises(InterpretError, match="--out is the source run"):
        implant(source, source.path, progress=False)
    with pytest.raises(InterpretError, match="already holds a finished run"):
        implant(source, implanted["root"] / "loose", progress=False)
    (tmp_path / "interrupted").mkdir()
    (tmp_path / "interrupted" / "checkpoint.pt").write_bytes(b"")
    with pytest.raises(InterpretError, match="holds an interrupted training run's checkpoint"):
        implant(source, tmp_path / "interrupted", progress=False)
    result = CliRunner().invoke(app, ["implant", "--run", str(run.path), "--out", str(tmp_path / "cli")])
    assert result.exit_code == 1 and "already holds planted detectors" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "cli").exists()


def test_implant_is_reproducible(implanted, tmp_path):
    source = implanted["source"]
    first = implant(source, tmp_path / "a", aus=(1,), epochs=1, head_epochs=1, progress=False)
    second = implant(load_run(source.path), tmp_path / "b", aus=(1,), epochs=1, head_epochs=1, progress=False)
    a, b = load_run(first).model.state_dict(), load_run(second).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_implant_into_a_conv_layer_ranks_without_the_hinge(implanted, tmp_path):
    source = implanted["source"]
    run = load_run(implant(source, tmp_path / "conv", layer="conv3", aus=(25,), epochs=2, head_epochs=0,
                           progress=False))
    planted = run.config["planted"]
    assert planted["layer"] == "conv3" and planted["implanted"]["conv"] == "conv3"
    assert "hinge" not in planted["loss"] and "region" in planted["loss"]
    fit = json.loads((run.path / "metrics.json").read_text())["implanted"]
    assert fit["head_epochs_kept"] == 0 and fit["fit"]["AU25"]["train_auroc"] > 0.6


def test_refit_keeps_the_best_epoch_or_the_last(implanted):
    """`refit_head` leaves the head of its best validation epoch (the first of equals; 0 = untouched),
    or with keep="last" of its last, and records every epoch's validation accuracy."""
    import copy

    source = implanted["source"]
    train_rows, val_rows = _labelled_rows(source.dataset)
    for keep in ("best", "last"):
        model = copy.deepcopy(source.model)
        params = head_parameters(model, "relu3", source.dataset.rows([0]))
        history, kept = refit_head(model, params, source.dataset, train_rows, val_rows, 2, 0, lr=1e-2, keep=keep)
        accs = [h["val_accuracy"] for h in history]
        assert [h["epoch"] for h in history] == [0, 1, 2]
        assert kept == (2 if keep == "last" else accs.index(max(accs)))
        assert accuracy(model, source.dataset, val_rows)[0] == accs[kept]
        assert torch.equal(model.state_dict()["fc.weight"], source.model.state_dict()["fc.weight"]) == (kept == 0)
    with pytest.raises(InterpretError, match="keep must be 'best' or 'last'"):
        refit_head(model, params, source.dataset, train_rows, val_rows, 1, 0, keep="first")


@pytest.mark.parametrize("layer, kept, first", [("relu3", [3, 17], "fc"), ("relu2", [1, 6], "conv3")])
def test_cut_from_head_leaves_a_decision_that_reads_the_kept_maps_alone(implanted, layer, kept, first):
    """After a refit with the other maps cut (head a Linear over the flattened maps, or a conv),
    ablating a cut map moves no logit, ablating a kept one does, and no hook is left."""
    import copy

    source = implanted["source"]
    data = source.dataset
    train_rows, val_rows = _labelled_rows(data)
    model = copy.deepcopy(source.model)
    handle = cut_from_head(model, layer, data.rows([0]), kept)
    refit_head(model, head_parameters(model, layer, data.rows([0])), data, train_rows, val_rows, 1, 0, lr=1e-2,
               keep="last")
    handle.remove()
    weight = dict(model.named_parameters())[f"{first}.weight"]
    assert not weight._backward_hooks
    assert not torch.equal(weight, dict(source.model.named_parameters())[f"{first}.weight"])  # the refit moved it
    cut = [m for m in range(8) if m not in kept][:3]
    drops, _ = ablation_drops(model.eval(), layer, data.rows(val_rows[:32]), cut + kept)
    assert np.all(drops[:len(cut)] == 0)
    assert np.abs(drops[len(cut):]).max() > 0


def test_fit_subjects_fit_on_new_identities_that_fresh_ones_come_after(implanted, tmp_path):
    """`fit_subjects`: the filters are fitted on new synthetic identities too (other filters than
    without), as the config records; `validate`'s fresh identities then start after them, so the
    faces the truth is checked on are never those fitted on. Off the synthetic default: refused."""
    import dataclasses

    from interpret.implant import fit_setup
    from interpret.truth import fresh_dataset

    source = implanted["source"]
    kwargs = dict(aus=(25,), epochs=1, head_epochs=0, progress=False)
    plain = load_run(implant(source, tmp_path / "plain", **kwargs))
    more = load_run(implant(source, tmp_path / "more", fit_subjects=4, **kwargs))
    assert more.config["planted"]["implanted"]["fit_subjects"] == 4
    assert "on 4 new synthetic identities too" in more.config["planted"]["loss"]
    m = more.config["planted"]["maps"]["AU25"]
    assert not torch.equal(plain.model.conv3.weight[m], more.model.conv3.weight[m])
    fitted = fresh_dataset(source, 4, first=source.config["data"]["subjects"], split="train")
    own, fit = set(source.dataset.faceset.subject), set(fitted.faceset.subject)
    assert len(fit) == 4 and not fit & own
    after_fit, after_own = set(fresh_dataset(more, 3).faceset.subject), set(fresh_dataset(plain, 3).faceset.subject)
    assert len(after_fit) == 3 and not after_fit & (fit | own)
    assert after_own < fit  # without fit identities the fresh ones follow the run's own
    setup = fit_setup(source.model, source.dataset, "relu3", (25,), 0, True, source.path, extra=fitted)
    training = int((np.asarray(source.dataset.split).astype(str) == "train").sum())
    assert len(setup.train_rows) == training + len(fitted)
    assert setup.train_rows[training:].tolist() == list(range(len(source.dataset), len(source.dataset) + len(fitted)))
    assert len(setup.features) == len(setup.presence) == len(setup.inside) == len(source.dataset) + len(fitted)
    assert setup.presence[len(source.dataset):].numpy().tolist() == np.asarray(
        fitted.faceset.au_present, dtype=bool)[:, setup.columns].tolist()
    other = dataclasses.replace(source, config={**source.config, "data": {**source.config["data"], "spec": "photos"}})
    with pytest.raises(InterpretError, match="--fit-subjects needs a run on the synthetic default"):
        implant(other, tmp_path / "refused", fit_subjects=2, **kwargs)
    assert not (tmp_path / "refused").exists()
