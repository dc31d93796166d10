"""A tiny planted run end to end: the planted maps become (weak) detectors and the scale-free
methods rank them near the top of 32 maps; validate writes its tables."""

import json
from dataclasses import replace

import numpy as np
import pytest

from interpret.models import CONV_NETS, Architecture, ArchSpec, ExpressionNet, register_architecture, ARCHITECTURES
from interpret.data.transforms import PAPER_INPUT
from interpret.planting import choose_maps, planting
from interpret.runs import load_run
from interpret.training import RECIPES, train
from interpret.validate import validate

PLANTED_AUS = (1, 12, 25, 27)


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory):
    """The paper's network shape with 8/16/32 maps, 12 synthetic subjects, 4 planted AUs."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(CONV_NETS, "tiny", ArchSpec((8, 16, 32), 5, 2, 64, "test-sized zhu2019"))
        patch.setitem(ARCHITECTURES, "tiny", Architecture(build=lambda n: ExpressionNet("tiny", n), input=PAPER_INPUT,
                                                          layers={k: f"relu{k}" for k in (1, 2, 3)}))
        # one epoch (the only one, so model selection cannot pick a pre-planting epoch) at a high rate
        patch.setitem(RECIPES, "tiny", replace(RECIPES["fast"], name="tiny", lr=3e-3))
        path = train(data="synthetic", out=tmp_path_factory.mktemp("planted") / "run", arch="tiny", recipe="tiny",
                     epochs=1, subjects=30, folds=4, seed=0, progress=False,
                     auxiliary=planting("relu3", aus=PLANTED_AUS))
        run = load_run(path)
        result = validate(run, controls=("rotation",), permutations=99, probe_permutations=0)
        yield path, run, result


def test_map_choice_is_seeded_and_distinct():
    first = choose_maps(256, list(range(18)), seed=3)
    assert first == choose_maps(256, list(range(18)), seed=3) != choose_maps(256, list(range(18)), seed=4)
    assert len(set(first.values())) == 18


def test_planted_choice_is_recorded_and_planted_maps_detect_on_held_out_subjects(planted_run):
    path, _, result = planted_run
    planted = json.loads((path / "config.json").read_text())["planted"]
    assert planted["layer"] == "relu3" and set(planted["maps"]) == {f"AU{a:02d}" for a in PLANTED_AUS}
    held_out = [d["auroc_held_out"] for d in result["planted"]["detectors"].values()]
    assert np.mean(held_out) > 0.52  # one tiny epoch plants weak detectors; the demo-size run is in BENCHMARKS.md


def test_methods_recover_the_planted_maps_and_write_tables(planted_run):
    path, _, result = planted_run
    recovery = result["planted"]["recovery"]
    # chance: a planted map in the top 5 of 32 maps with p = 5/32; three of four by chance: p ~ 0.014
    assert recovery["auroc"]["top5"] >= 0.75
    assert np.mean(list(recovery["auroc"]["ranks"].values())) <= 6
    assert set(recovery) == {"distance", "directional", "auroc", "iou", "probe"}
    for name in ("validate.json", "methods.json", "verdicts.csv", "false_positives.csv", "agreement.csv",
                 "recovery.csv", "validate.png"):
        assert (path / "validate" / name).is_file(), name
    lines = [v["line"] for v in result["verdicts"]]
    assert len(lines) == len(result["verdicts"]) and all(line.startswith("AU") for line in lines)
    assert "rotation" in result["false_positives"]


def test_unknown_control_is_a_one_line_error_before_any_work(planted_run):
    from interpret.errors import InterpretError

    _, run, _ = planted_run
    with pytest.raises(InterpretError, match="unknown control 'bogus'"):
        validate(run, controls=("bogus",))
