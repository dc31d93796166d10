"""A tiny planted run end to end: the planted maps become (weak) detectors and the scale-free
methods rank them near the top of 32 maps; validate writes its tables."""

import json

import numpy as np
import pytest
import torch

from interpret import stats
from interpret.models import CONV_NETS, Architecture, ArchSpec, ExpressionNet, register_architecture, ARCHITECTURES
from interpret.data.transforms import PAPER_INPUT
from interpret.errors import InterpretError
from interpret.planting import INDEPENDENT_PHI, PlantedLoss, choose_maps, independent_aus, parse_plant_aus, planting
from interpret.runs import load_run
from interpret.training import train
from interpret.validate import planted_check, validate
from interpret.verdict import DETECTOR_AUROC, verdict

PLANTED_AUS = (1, 12, 25, 27)
#: New identities the tiny planted run's truth is checked on.
FRESH = 12


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory):
    """The paper's network shape with 8/16/32 maps, 12 synthetic subjects, 4 planted AUs."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(CONV_NETS, "tiny", ArchSpec((8, 16, 32), 5, 2, 64, "test-sized zhu2019"))
        patch.setitem(ARCHITECTURES, "tiny", Architecture(build=lambda n: ExpressionNet("tiny", n), input=PAPER_INPUT,
                                                          layers={k: f"relu{k}" for k in (1, 2, 3)}))
        # one epoch (the only one, so model selection cannot pick a pre-planting epoch) at a high rate
        path = train(data="synthetic", out=tmp_path_factory.mktemp("planted") / "run", arch="tiny", recipe="fast",
                     lr=3e-3, epochs=1, subjects=30, folds=4, seed=0, progress=False,
                     auxiliary=planting("relu3", aus=PLANTED_AUS))
        run = load_run(path)
        result = validate(run, controls=("rotation",), permutations=99, probe_permutations=0, fresh=FRESH)
        yield path, run, result


def test_map_choice_is_seeded_and_distinct():
    first = choose_maps(256, list(range(18)), seed=3)
    assert first == choose_maps(256, list(range(18)), seed=3) != choose_maps(256, list(range(18)), seed=4)
    assert len(set(first.values())) == 18


def test_independent_aus_keep_no_co_occurring_pair():
    """Two clusters of co-occurring AUs and two loners: one AU per cluster, both loners, and no
    kept pair above the threshold; a naive all-pairs check is the oracle."""
    rng = np.random.default_rng(0)
    surprise, anger = rng.random(400) < .3, rng.random(400) < .3
    noisy = lambda base: base ^ (rng.random(400) < .05)  # noqa: E731
    columns = {1: noisy(surprise), 2: noisy(surprise), 5: noisy(surprise), 23: noisy(anger), 24: noisy(anger),
               10: rng.random(400) < .1, 14: rng.random(400) < .1}
    codes = list(columns)
    presence = np.column_stack(list(columns.values()))
    kept = independent_aus(presence, codes)
    assert kept == independent_aus(presence, codes) and {10, 14} <= set(kept)
    assert len(set(kept) & {1, 2, 5}) == 1 and len(set(kept) & {23, 24}) == 1
    for i, a in enumerate(kept):
        for b in kept[i + 1:]:
            phi = np.corrcoef(columns[a].astype(float), columns[b].astype(float))[0, 1]
            assert phi <= INDEPENDENT_PHI


def test_plant_aus_option():
    assert parse_plant_aus("all") is None and parse_plant_aus(" Independent") == "independent"
    assert parse_plant_aus("1, AU6,12") == [1, 6, 12]
    with pytest.raises(InterpretError, match="--plant-aus must be"):
        parse_plant_aus("brows")
    from typer.testing import CliRunner

    from interpret.cli import app

    result = CliRunner().invoke(app, ["train", "--out", "unused", "--plant-aus", "independent"])
    assert result.exit_code != 0 and "--plant-detectors, which is not given" in result.output


def test_planted_choice_is_recorded_and_planted_maps_detect_on_held_out_subjects(planted_run):
    path, _, result = planted_run
    config = json.loads((path / "config.json").read_text())
    planted = config["planted"]
    assert config["recipe"]["lr"] == 3e-3  # --lr replaces the recipe's rate, and is recorded
    assert planted["layer"] == "relu3" and set(planted["maps"]) == {f"AU{a:02d}" for a in PLANTED_AUS}
    assert "before the ReLU" in planted["loss"] and planted["aus"] == "chosen" == result["planted"]["aus"]
    held_out = [d["auroc_held_out"] for d in result["planted"]["detectors"].values()]
    assert np.mean(held_out) > 0.52  # one tiny epoch plants weak detectors; the demo-size run is in BENCHMARKS.md


def test_methods_recover_the_planted_maps_and_write_tables(planted_run):
    path, _, result = planted_run
    recovery = result["planted"]["recovery"]
    # chance: a planted map in the top 5 of 32 maps with p = 5/32; three of four by chance: p ~ 0.014
    assert recovery["auroc"]["top5"] >= 0.75
    assert np.mean(list(recovery["auroc"]["ranks"].values())) <= 6
    assert set(recovery) == {"distance", "directional", "auroc", "partial", "iou", "probe"}
    planted = result["planted"]
    assert set(planted["misses"]) == set(recovery)
    first = planted["recovery_unambiguous"]
    order = {m: (first.get(m, {}).get("top1", 0.0), r["top1"]) for m, r in planted["recovery_verified"].items()}
    assert planted["best_method"] == (max(order, key=order.get) if order else None)
    for name, rows in planted["misses"].items():  # one row per verified AU the method's winner misses
        top1 = planted["recovery_verified"][name]["top1"] if planted["verified"] else 1.0
        assert len(rows) == round(len(planted["verified"]) * (1 - top1))
    for name in ("validate.json", "methods.json", "verdicts.csv", "false_positives.csv", "agreement.csv",
                 "recovery.csv", "validate.png"):
        assert (path / "validate" / name).is_file(), name
    lines = [v["line"] for v in result["verdicts"]]
    assert len(lines) == len(result["verdicts"]) and all(line.startswith("AU") for line in lines)
    assert "rotation" in result["false_positives"]
    # the control's verdicts other than "none", with their evidence, as its per-AU records give them
    findings = json.loads((path / "validate" / "validate.json").read_text())["control_findings"]["rotation"]
    named = [v for v in map(verdict, json.loads((path / "validate" / "methods.json").read_text())["rotation"])
             if v["verdict"] != "none"]
    assert [(v["au"], v["map"], v["verdict"]) for v in findings] == [(v["au"], v["map"], v["verdict"]) for v in named]
    assert all(v["map"] is not None and v["auroc"] is not None for v in findings)
    # the causal check on the found planted maps, summed in the truth and printed by the CLI
    from interpret.validate import format_validate

    causal = planted["causal_found"]
    named = [v for v in result["verdicts"] if v["verdict"] == "found" and v["map"] == planted["maps"][v["au"]]]
    assert (causal is None) == (not named)
    if causal:
        assert causal["found"] == len(named)
        assert causal["beaten_only_by_planted"] <= causal["found"] - causal["exceeds_all"] <= causal["found"]
        assert causal["exceeds_all"] <= causal["above_mean"]
    assert ("causal check on the" in format_validate(result)) == bool(causal)


def test_truth_is_checked_on_fresh_identities(planted_run):
    """Verified on FRESH identities the run never held (an independent forward pass is the
    oracle); the unambiguous truth is the verified AUs no map outdoes, and its recovery is scored."""
    from interpret.layers import layer_output
    from interpret.truth import fresh_dataset

    path, run, result = planted_run
    planted = result["planted"]
    assert planted["truth"].startswith(f"fresh: {FRESH} synthetic identities")
    fresh = fresh_dataset(run, FRESH)
    assert not set(fresh.faceset.subject) & set(run.dataset.faceset.subject)
    assert len(set(fresh.faceset.subject)) == FRESH
    maxima = layer_output(run.model, "relu3", fresh.images(0, len(fresh))).amax(dim=(2, 3)).numpy()
    codes = list(fresh.faceset.au_codes)
    for au, d in planted["detectors"].items():
        if "auroc_fresh" not in d:
            continue
        labels = fresh.faceset.au_present[:, codes.index(int(au[2:]))]
        assert d["auroc_fresh"] == pytest.approx(stats.auroc(maxima[:, [d["map"]]], labels)[0], abs=1e-6)
        assert d["detector"] == (d["auroc_fresh"] >= DETECTOR_AUROC)
    assert set(planted["unambiguous"]) <= set(planted["verified"])
    assert all(planted["detectors"][au]["truth"] == "sole" for au in planted["unambiguous"])
    assert all((d["truth"] == "outdone") == (d["outdone_by"] is not None) for d in planted["detectors"].values()
               if "truth" in d)
    assert set(planted["recovery_unambiguous"]) == (set(planted["recovery"]) if planted["unambiguous"] else set())
    assert set(planted["as_good_verified"]) == (set(planted["recovery"]) if planted["verified"] else set())
    text = (path / "validate" / "recovery.csv").read_text().splitlines()[0]
    assert text.endswith("top1_unambiguous,top5_unambiguous")


def test_fresh_identities_need_a_synthetic_run_and_serve_plain_runs_too(planted_run, make_trained_run, tmp_path):
    """One-line errors for too few identities and non-synthetic data; a plain run's found verdicts are
    checked on fresh identities too."""
    from interpret.truth import fresh_dataset

    _, run, _ = planted_run
    with pytest.raises(InterpretError, match="--fresh must be 0"):
        fresh_dataset(run, 1)
    elsewhere = type(run)(**{**vars(run), "config": {**run.config, "data": {"spec": "/data/disfa", "subjects": 3}}})
    with pytest.raises(InterpretError, match="fresh identities need a run on the synthetic default, its data is "
                                             "'/data/disfa'; use --fresh 0"):
        fresh_dataset(elsewhere, 10)
    plain = make_trained_run(tmp_path / "plain")
    result = validate(plain, controls=(), permutations=19, probe_permutations=0, fresh=3)
    assert result["replication"]["identities"] == 3 and set(result["replication"]["not_replicated"]) == {"run"}
    assert all(v["replication"]["identities"] == 3 for v in result["verdicts"] if v["verdict"] == "found")


def test_a_found_detector_must_replicate_on_fresh_identities(planted_run):
    """`replicate_found` on hand-built records that name, for one AU, the map with the highest and
    the one with the lowest AUROC on the fresh identities (an independent forward pass is the
    oracle): each keeps its verdict only if its fresh AUROC clears the detector bar."""
    from interpret.layers import layer_output
    from interpret.truth import fresh_dataset
    from interpret.validate import replicate_found

    _, run, _ = planted_run
    fresh = fresh_dataset(run, FRESH)
    maxima = layer_output(run.model, "relu3", fresh.images(0, len(fresh))).amax(dim=(2, 3)).numpy()
    labels = fresh.faceset.au_present[:, list(fresh.faceset.au_codes).index(12)]
    aurocs = stats.auroc(maxima, labels)
    best, worst = int(np.nanargmax(aurocs)), int(np.nanargmin(aurocs))
    named = {name: {"winner": None, "p_family": 0.001, "q": 0.001, "auroc": 0.95} for name in ("directional", "auroc")}

    def record(m):
        return {"au": "AU12", "methods": {k: {**v, "winner": m} for k, v in named.items()}, "localization": {}}

    asked = []
    records = [record(best), record(worst)]
    for rec in records:
        verdicts, dropped = replicate_found([rec], lambda: asked.append(1) or fresh, run.model, "relu3")
        checked = rec["replication"][str(rec["methods"]["auroc"]["winner"])]
        assert checked["auroc"] == pytest.approx(aurocs[checked["map"]], abs=1e-5)
        assert checked["identities"] == FRESH and checked["n_present"] == int(labels.sum())
        assert (verdicts[0]["verdict"] == "found") == (checked["auroc"] >= DETECTOR_AUROC)
        assert dropped == ([] if verdicts[0]["verdict"] == "found" else ["AU12"])
    assert records[1]["replication"][str(worst)]["auroc"] < 0.5 and len(asked) == 2
    weak = {**record(best), "methods": {k: {**v, "winner": best, "auroc": 0.6} for k, v in named.items()}}
    assert replicate_found([weak], lambda: asked.append(1), run.model, "relu3")[1] == [] and len(asked) == 2


def test_unknown_control_is_a_one_line_error_before_any_work(planted_run):
    from interpret.errors import InterpretError

    _, run, _ = planted_run
    with pytest.raises(InterpretError, match="unknown control 'bogus'"):
        validate(run, controls=("bogus",))


def test_planted_loss_ranks_only_aus_the_batch_holds_with_and_without():
    torch.manual_seed(0)
    pre = torch.randn(6, 4, 5, 5, requires_grad=True)
    presence = torch.tensor([[1, 0], [0, 0], [1, 0], [0, 0], [0, 0], [1, 0]], dtype=torch.bool)
    loss = PlantedLoss("relu3", columns=[0, 1], maps=[2, 3], presence=presence, pre_activation=True)
    index = torch.arange(6)
    both = loss({"relu3": pre}, index)
    alone = PlantedLoss("relu3", columns=[0], maps=[2], presence=presence, pre_activation=True)({"relu3": pre}, index)
    assert torch.allclose(both, alone)  # AU column 1 is absent from the whole batch: it ranks nothing
    assert loss({"relu3": pre[:1]}, index[:1]).item() == 0.0  # one image: nothing to rank, and no NaN
    # a map below zero everywhere (a dead ReLU) still gets a gradient from its pre-activation
    dead = (-pre.detach().abs() - 1).requires_grad_(True)
    loss({"relu3": dead}, index).backward()
    assert dead.grad[:, 2].abs().sum() > 0 and dead.grad[:, [0, 1, 3]].abs().sum() == 0


def test_planted_loss_against_a_naive_formula():
    """Weight x (BCE of 2 x the batch-standardized maximum + the mean hinge max(0, -max) over the
    AU's images), per AU by hand; after a ReLU (not its input) there is no hinge."""
    torch.manual_seed(1)
    act = torch.randn(8, 4, 3, 3) - 2.0  # some maxima below zero
    presence = torch.tensor([[1, 0], [0, 1], [1, 1], [0, 0], [0, 1], [1, 0], [0, 0], [1, 1]], dtype=torch.bool)
    maps, index = [3, 1], torch.arange(8)
    terms, plain = [], []
    for column, m in enumerate(maps):
        peak = act[:, m].flatten(1).max(1).values.double()
        target = presence[:, column].double()
        logit = 2 * (peak - peak.mean()) / (peak.std(unbiased=False) + 1e-3)
        bce = -(target * torch.log(torch.sigmoid(logit)) + (1 - target) * torch.log(1 - torch.sigmoid(logit))).mean()
        hinge = sum(max(0.0, -float(p)) for p, t in zip(peak, target) if t) / float(target.sum())
        terms.append(float(bce) + hinge)
        plain.append(float(bce))
    before = PlantedLoss("relu3", [0, 1], maps, presence, pre_activation=True)({"relu3": act}, index)
    after = PlantedLoss("relu3", [0, 1], maps, presence, pre_activation=False)({"relu3": act}, index)
    assert before.item() == pytest.approx(5.0 * np.mean(terms), rel=1e-5)
    assert after.item() == pytest.approx(5.0 * np.mean(plain), rel=1e-5) and np.mean(terms) > np.mean(plain)


def test_planted_check_against_a_naive_auroc_on_held_out_rows():
    rng = np.random.default_rng(0)
    n, maps = 60, 5
    split = np.array(["train", "val", "test"] * 20)
    present = rng.random(n) < 0.4
    maxima = rng.random((n, maps))
    maxima[:, 1] += 2 * present * (split != "train")  # a perfect detector on held-out rows only
    maxima[:, 3] += 0.3 * present
    result = planted_check(maxima, present[:, None], [12], split, {"AU12": 1})["AU12"]

    def naive_auroc(scores, labels):
        pos, neg = scores[labels], scores[~labels]
        return np.mean([(p > q) + 0.5 * (p == q) for p in pos for q in neg])

    held = split != "train"
    assert result["auroc_held_out"] == naive_auroc(maxima[held, 1], present[held]) == 1.0
    others = {m: naive_auroc(maxima[held, m], present[held]) for m in (0, 2, 3, 4)}
    assert result["best_other_map"] == max(others, key=others.get)
    assert np.isclose(result["best_other_auroc_held_out"], max(others.values()))
    assert result["detector"]
    train = split == "train"
    assert np.isclose(result["auroc_train"], naive_auroc(maxima[train, 1], present[train]))  # no signal there
    train_aurocs = {m: naive_auroc(maxima[train, m], present[train]) for m in range(maps)}
    choice = max(train_aurocs, key=train_aurocs.get)  # map 3: map 1 detects on held-out rows only
    assert result["train_choice"] == pytest.approx({"map": choice,
                                                    "auroc_held_out": naive_auroc(maxima[held, choice], present[held])})
    assert choice == 3
    assert others[0] < DETECTOR_AUROC  # a random map is no detector
    assert not planted_check(maxima, present[:, None], [12], split, {"AU12": 0})["AU12"]["detector"]


def test_scan_with_the_caches_thresholds_equals_the_two_pass_scan(planted_run):
    """validate takes each map's top-quantile threshold from the activation cache and streams the
    layer once: the same thresholds, maxima and NetDissect counts as finding them in a first pass."""
    from interpret.validate import cache_arrays, scan_layer

    _, run, _ = planted_run
    cached = cache_arrays(run, "relu3")
    assert cached["thresholds"] is not None
    once = scan_layer(run.model, "relu3", run.dataset, cached=cached)
    twice = scan_layer(run.model, "relu3", run.dataset)
    np.testing.assert_allclose(once["thresholds"], twice["thresholds"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(once["max"], twice["max"], rtol=1e-5, atol=1e-6)
    for a, b in zip(once["counts"], twice["counts"]):
        # the cache's batches are not the scan's: a pixel within rounding of a threshold may flip
        assert np.abs(a - b).sum() <= 1e-4 * max(1.0, np.abs(b).sum())


def test_misses_name_the_winner_its_owner_and_both_held_out_aurocs():
    """AU04's planted map 1 is a detector, but AU17's planted map 2 (trained on an AU that comes
    with AU04) separates AU04 better: AUROC names map 2, a miss that found a better detector."""
    from interpret.validate import best_method, misses, split_aurocs

    rng = np.random.default_rng(2)
    n = 300
    split = np.array(["train", "val", "test"] * 100)
    au04 = rng.random(n) < 0.4
    au17 = np.where(au04, rng.random(n) < 0.8, rng.random(n) < 0.1)
    maxima = rng.normal(size=(n, 3))
    maxima[:, 1] += 1.5 * au04
    maxima[:, 2] += 3.0 * au04 + 0.5 * au17
    presence = np.column_stack([au04, au17])
    records = [{"au": "AU04", "methods": {"auroc": {"winner": 2}, "probe": {"winner": 1}}},
               {"au": "AU17", "methods": {"auroc": {"winner": 2}, "probe": {"winner": 2}}}]
    table = split_aurocs(maxima, presence, [4, 17], split, ["AU04", "AU17"])
    held = {au: aurocs for au, (aurocs, _, _) in table.items()}
    out = misses(records, {"AU04": 1, "AU17": 2}, {"AU04": 1, "AU17": 2}, held)
    unverified = misses(records, {"AU04": 1, "AU17": 2}, {"AU04": 1}, held)
    assert unverified["auroc"] == out["auroc"]  # map 2 is AU17's planted map, verified or not
    held = split != "train"
    assert out["probe"] == [] and len(out["auroc"]) == 1
    miss = out["auroc"][0]
    assert (miss["au"], miss["winner"], miss["winner_planted_for"]) == ("AU04", 2, "AU17")
    want = stats.auroc(maxima[held][:, [2, 1]], au04[held])
    assert np.allclose([miss["winner_auroc_held_out"], miss["planted_auroc_held_out"]], want)
    assert miss["winner_auroc_held_out"] > miss["planted_auroc_held_out"]
    assert best_method({"auroc": {"top1": 0.5}, "probe": {"top1": 1.0}}) == "probe"
    assert best_method({}) is None
    # the unambiguous truth ranks first; its ties go to the verified recovery
    verified = {"directional": {"top1": 0.2}, "auroc": {"top1": 0.8}, "probe": {"top1": 0.7}}
    assert best_method(verified, {m: {"top1": 1.0} for m in verified}) == "auroc"
    assert best_method(verified, {"directional": {"top1": 1.0}, "auroc": {"top1": 0.5}}) == "directional"


def test_confound_names_the_cooccurring_au_the_map_tracks_not_the_most_frequent_or_a_chain():
    """A map that follows AU25 is the rival explanation for AU12, although AU06 co-occurs with AU12
    more often, and AU27 (which comes with AU25, so also fires the map, but adds nothing of its
    own) is not taken for the driver: B is the AU with the largest partial effect on the map."""
    from interpret.aumap import cooccurrence
    from interpret.methods import partial_scores
    from interpret.validate import _confound

    rng = np.random.default_rng(1)
    n = 600
    au12 = rng.random(n) < 0.3
    au06 = np.where(au12, rng.random(n) < 0.9, rng.random(n) < 0.1)  # nearly always with AU12
    au25 = np.where(au12, rng.random(n) < 0.5, rng.random(n) < 0.3)  # less often with it
    au27 = au25 & (rng.random(n) < 0.6)  # only ever with AU25
    presence = np.column_stack([au06, au12, au25, au27])
    column = au25 + 0.3 * rng.random(n)  # the map fires with AU25
    counts, _ = cooccurrence(presence)
    rival = _confound(column, partial_scores(column[:, None], presence)[:, 0], presence, 1, [6, 12, 25, 27], counts)
    assert rival["other_au"] == "AU25"
    assert rival["auroc_other_without_this"] > 0.9 > 0.6 > rival["auroc_this_without_other"]
    assert rival["partial_effect_other"] > 0.9 > 0.1 > abs(rival["partial_effect_this"])


def test_causal_of_found_counts_drops_against_every_random_map_and_names_planted_rivals():
    """Three found planted maps: one above every random map; one beaten only by a random map that
    is AU12's planted map; one beaten by an ordinary map. A found verdict naming another map, and a
    not-found AU, are not counted."""
    from interpret.validate import causal_of_found

    planted = {"AU01": 10, "AU06": 11, "AU12": 12, "AU25": 13}
    setup = {"random_maps": [12, 20, 21]}

    def record(au, m, drop, randoms):
        return {"au": au, "causal": {str(m): {"emotion_drop": drop, "random_drops": randoms,
                                               "exceeds_random": drop > max(randoms)}}, "causal_setup": setup}

    records = [record("AU01", 10, 0.9, [0.5, 0.0, 0.1]),   # exceeds all
               record("AU06", 11, 0.3, [0.5, 0.0, 0.1]),   # beaten by map 12 only: planted for AU12
               record("AU12", 12, 0.05, [0.0, 0.2, 0.0]),  # beaten by map 20: not planted; below the mean
               record("AU25", 30, 2.0, [0.0, 0.0, 0.0])]   # found, but not the planted map 13
    found = [{"au": au, "map": m, "verdict": "found"} for au, m in (("AU01", 10), ("AU06", 11), ("AU12", 12),
                                                                     ("AU25", 30))]
    out = causal_of_found(records, found, planted)
    assert out == {"found": 3, "exceeds_all": 1, "above_mean": 2, "beaten_only_by_planted": 1}
    assert causal_of_found(records, found[3:], planted) is None
