import csv
import json
import math
import tracemalloc
import warnings
from types import SimpleNamespace

import numpy as np
import pytest

from interpret import aumap, stats
from interpret.data.transforms import PAPER_INPUT
from interpret.errors import InterpretError


def oracle_distance(maxima, present, n, eps):
    """The paper's D transcribed plainly: per map, sort each set, pair the top n, sum."""
    out = []
    for c in range(maxima.shape[1]):
        r = sorted((maxima[i, c] for i in range(len(present)) if present[i]), reverse=True)
        q = sorted((maxima[i, c] for i in range(len(present)) if not present[i]), reverse=True)
        total = 0.0
        for k in range(min(n, len(r), len(q))):
            total += (r[k] - q[k]) * math.log((r[k] + eps) / (q[k] + eps))
        out.append(total)
    return np.array(out)


def sequences(rng, n_seq=30, frames=(2, 6), n_aus=3, rate=0.4):
    """Sequence-structured labels: frame 1 neutral, later frames carry the sequence's AUs."""
    lengths = rng.integers(frames[0], frames[1] + 1, n_seq)
    seq = np.repeat(np.arange(n_seq), lengths)
    frame = np.concatenate([np.arange(1, k + 1) for k in lengths])
    seq_aus = rng.random((n_seq, n_aus)) < rate
    seq_aus[0], seq_aus[1] = True, False
    aus = (seq_aus[seq] & (frame > 1)[:, None]).astype(np.uint8)
    return seq, frame, aus


def test_distance_matches_loop_oracle_on_hand_made_numbers():
    maxima = np.array([[3.0, 0.0, 1.0, 2.0],
                       [1.0, 0.0, 0.0, 2.0],
                       [2.5, 0.0, 4.0, 0.5],
                       [0.0, 0.0, 0.2, 2.0],
                       [0.7, 0.0, 0.0, 1.0],
                       [0.1, 0.0, 3.0, 0.0]])
    present = np.array([1, 1, 0, 1, 0, 0], bool)
    eps = 0.05
    for n in (1, 2, 3, 9):  # 9 > |S| = |S^c| = 3: only 3 pairs exist
        assert np.allclose(aumap.au_distance(maxima, present, n=n, epsilon=eps),
                           oracle_distance(maxima, present, n, eps))
    by_hand = (3 - 2.5) * math.log(3.05 / 2.55) + (1 - 0.7) * math.log(1.05 / 0.75)
    assert aumap.au_distance(maxima, present, n=2, epsilon=eps)[0] == pytest.approx(by_hand)


def test_distance_matches_oracle_on_random_data_with_deep_sets():
    rng = np.random.default_rng(0)
    maxima = np.maximum(0, rng.normal(size=(300, 7)))
    present = rng.random(300) < 0.03  # rare AU: its top n lies deep in each map's order
    eps = aumap.epsilon_for(maxima)
    assert np.allclose(aumap.au_distance(maxima, present, n=9), oracle_distance(maxima, present, 9, eps))


def test_bootstrap_weighted_distance_matches_oracle_on_resampled_data():
    rng = np.random.default_rng(9)
    maxima = np.round(np.maximum(0, rng.normal(size=(120, 6))), 2)
    present = rng.random(120) < 0.08
    groups = rng.integers(0, 30, 120)
    weights = stats.cluster_bootstrap_weights(groups, 8, np.random.default_rng(0))
    eps = 0.03
    got = aumap.RankedMaps(maxima).distances(weights * present, weights * ~present, 9, eps)
    for b in range(8):
        rows = np.repeat(np.arange(120), weights[b])
        assert np.allclose(got[b], oracle_distance(maxima[rows], present[rows], 9, eps))


def test_ranked_maps_of_float32_read_off_the_float64_numbers_and_auroc_equals_stats():
    rng = np.random.default_rng(10)
    maxima = (rng.integers(0, 6, size=(90, 7)) / 3).astype(np.float32)  # many ties
    ranked, wide = aumap.RankedMaps(maxima), aumap.RankedMaps(maxima.astype(np.float64))
    assert ranked.order.dtype == np.int32 and ranked.values.dtype == np.float32
    assert np.array_equal(ranked.order, wide.order)
    weights = rng.integers(0, 3, size=(5, 90))
    assert np.array_equal(ranked.top(weights, 4), wide.top(weights, 4), equal_nan=True)
    labels, rows = rng.random(90) < 0.3, rng.random(90) < 0.8
    expected = stats.auroc(maxima[rows].astype(np.float64), labels[rows])
    assert ranked.auroc(labels, rows).tolist() == expected.tolist()
    assert np.isnan(ranked.auroc(np.zeros(90, bool), rows)).all()
    assert aumap.epsilon_for(maxima) == aumap.epsilon_for(maxima.astype(np.float64))


def test_au_statistics_memory_does_not_grow_with_permutations_or_bootstraps():
    rng = np.random.default_rng(11)
    N = 20000
    maxima = rng.random((N, 4)).astype(np.float32)
    aus = (rng.random((N, 1)) < 0.3).astype(np.uint8)
    ids = np.arange(N).astype(str)

    def peak(permutations, bootstrap):
        tracemalloc.start()
        try:
            aumap.au_statistics(maxima, aus, [1], ids, np.ones(N), ids, [1], permutations=permutations,
                                bootstrap=bootstrap)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    # beyond a few batches (26 rows of 20,000 each) more draws cost no memory (a (P, N) int64 draw would)
    assert peak(800, 240) < 1.5 * peak(100, 30)


def test_epsilon_handles_all_zero_maps_and_scales_with_the_layer():
    rng = np.random.default_rng(1)
    maxima = np.maximum(0, rng.normal(size=(50, 4)))
    maxima[:, 0] = 0.0                        # dead map
    present = np.arange(50) < 20
    maxima[:, 1] = np.where(present, 0.0, 2.0)  # zero on S only
    d = aumap.au_distance(maxima, present)
    assert np.isfinite(d).all()
    assert d[0] == 0.0 and d[1] > 0
    eps = aumap.epsilon_for(maxima)
    assert eps == pytest.approx(0.01 * np.median(maxima[maxima > 0]))
    assert np.allclose(aumap.au_distance(10 * maxima, present), 10 * d)
    assert aumap.epsilon_for(np.zeros((3, 3))) == 1.0


def test_signed_maxima_are_measured_from_the_layers_floor_not_dropped_as_nan():
    rng = np.random.default_rng(2)
    maxima = rng.normal(size=(60, 5))  # a layer before its ReLU, or rotated maps: negative maxima
    present = np.arange(60) < 25
    maxima[present, 3] += 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a log of a negative activation would warn (and nansum drop it)
        d = aumap.au_distance(maxima, present)
    shifted = maxima - maxima.min()
    assert np.isfinite(d).all() and int(np.argmax(d)) == 3
    assert np.array_equal(d, aumap.au_distance(shifted, present))
    assert aumap.from_floor(shifted)[1] == 0.0 and aumap.from_floor(maxima)[1] == maxima.min()
    ids = np.arange(60).astype(str)
    res = aumap.au_statistics(maxima, present[:, None], [1], ids, np.ones(60), ids, [1], permutations=9,
                              bootstrap=0)["AU01"]
    assert res["distance_floor"] == maxima.min() and np.allclose(res["distance"], d)


def planted(rng, n_seq=60, n_maps=20):
    seq, frame, aus = sequences(rng, n_seq=n_seq, n_aus=2, rate=0.35)
    maxima = np.maximum(0, rng.normal(0.5, 0.5, size=(len(seq), n_maps)))
    maxima[:, 7] = np.where(aus[:, 0] == 1, 2.0 + rng.random(len(seq)), 0.0)
    subject = (seq // 2).astype(str)
    return maxima, aus, seq.astype(str), frame, subject


def test_planted_detector_wins_with_tiny_family_p_and_auroc_one():
    maxima, aus, seq, frame, subject = planted(np.random.default_rng(2))
    res = aumap.au_statistics(maxima, aus, [1, 2], seq, frame, subject, [1], n=9,
                              permutations=199, bootstrap=50, seed=0)["AU01"]
    assert res["best_map"] == 7
    assert res["p_family"] == pytest.approx(1 / 200)
    assert res["best_auroc"] == pytest.approx(1.0)
    assert res["stability"] == 1.0
    assert res["p_map"][7] == pytest.approx(1 / 200)
    assert res["q_map"][7] == min(res["q_map"])
    assert np.median(res["p_map"]) > 0.1
    assert res["ranking"][0] == {"map": 7, "distance": res["distance"][7]}
    assert res["best_direction"] == "higher with the AU"
    silent = aumap.au_statistics(np.c_[maxima, 3.0 - maxima[:, 7]], aus, [1, 2], seq, frame, subject, [1],
                                 permutations=0, bootstrap=0)["AU01"]  # map 20 fires when the AU is absent
    assert silent["distance"][20] > 0 and silent["auroc"][20] == pytest.approx(0.0)


def test_family_p_is_calibrated_under_random_labels():
    rng = np.random.default_rng(3)
    hits = 0
    trials = 200
    for t in range(trials):
        seq, frame, aus = sequences(rng, n_seq=24, n_aus=1, rate=0.4)
        seq_effect = rng.normal(size=(24, 6))  # frames of a sequence are correlated
        maxima = np.maximum(0, seq_effect[seq] + 0.3 * rng.normal(size=(len(seq), 6)))
        res = aumap.au_statistics(maxima, aus, [1], seq.astype(str), frame, seq.astype(str), [1],
                                  n=3, permutations=99, bootstrap=0, seed=t)["AU01"]
        hits += res["p_family"] <= 0.05
    # nominal 5%: 10 of 200 expected, sd 3.1
    assert 2 <= hits <= 20, hits


def test_vectorised_null_matches_per_permutation_loop():
    rng = np.random.default_rng(4)
    seq, frame, aus = sequences(rng, n_seq=15, n_aus=2)
    maxima = np.round(np.maximum(0, rng.normal(size=(len(seq), 5))), 1)  # ties and zeros
    P, seed = 40, 11
    res = aumap.au_statistics(maxima, aus, [1, 2], seq.astype(str), frame, seq.astype(str), [2],
                              n=4, permutations=P, bootstrap=0, seed=seed)["AU02"]
    eps = aumap.epsilon_for(maxima)
    seq_index, seq_aus, carrier = aumap.sequence_structure(seq.astype(str), aus, frame)
    perms = stats.permutations(len(seq_aus), P, np.random.default_rng([seed, 2, 0]))
    null = []
    for p in range(P):
        labels = np.array([carrier[i] and seq_aus[perms[p, seq_index[i]], 1] for i in range(len(seq))])
        null.append(oracle_distance(maxima, labels, 4, eps))
    null = np.array(null)
    observed = oracle_distance(maxima, aus[:, 1].astype(bool), 4, eps)
    expected_p = [(1 + sum(null[p, c] >= observed[c] - 1e-10 * observed[c] for p in range(P))) / (P + 1)
                  for c in range(5)]
    assert np.allclose(res["p_map"], expected_p)
    best = int(np.argmax(observed))
    assert res["p_family"] == pytest.approx((1 + (null.max(1) >= observed[best] - 1e-12).sum()) / (P + 1))


def test_sequence_permutation_keeps_within_sequence_structure():
    rng = np.random.default_rng(5)
    seq, frame, aus = sequences(rng, n_seq=20, n_aus=1)
    seq_index, seq_aus, carrier = aumap.sequence_structure(seq.astype(str), aus, frame)
    assert not carrier[frame == 1].any() and carrier[frame > 1].all()
    perms = stats.permutations(len(seq_aus), 30, np.random.default_rng(0))
    labels = aumap.permuted_labels(seq_aus[:, 0], seq_index, carrier, perms)
    assert (labels[:, frame == 1] == 0).all()
    for p in range(30):
        per_seq = [set(labels[p, (seq_index == s) & carrier]) for s in range(20)]
        assert all(len(v) == 1 for v in per_seq)  # one label per sequence
        assert sorted(v.pop() for v in per_seq) == sorted(seq_aus[:, 0].astype(int))
    # every image its own sequence: ordinary shuffling, the number of positives is kept
    single = np.arange(12).astype(str)
    flags = (np.arange(12) < 5).astype(np.uint8)[:, None]
    idx, sa, car = aumap.sequence_structure(single, flags, np.ones(12, int))
    assert car.all()
    shuffled = aumap.permuted_labels(sa[:, 0], idx, car, stats.permutations(12, 10, np.random.default_rng(1)))
    assert (shuffled.sum(axis=1) == 5).all() and len({tuple(r) for r in shuffled}) > 1


def test_held_out_cooccurring_au_separates_the_detectors():
    rng = np.random.default_rng(6)
    seq, frame, _ = sequences(rng, n_seq=80, n_aus=3)
    seq_aus = np.zeros((80, 3), bool)
    seq_aus[:, 0] = rng.random(80) < 0.6                      # AU1
    seq_aus[:, 1] = seq_aus[:, 0] & (rng.random(80) < 0.6)    # AU2 only ever with AU1
    seq_aus[:, 2] = rng.random(80) < 0.3                      # AU4, independent
    aus = (seq_aus[seq] & (frame > 1)[:, None]).astype(np.uint8)
    maxima = np.maximum(0, rng.normal(0.3, 0.3, size=(len(seq), 10)))
    maxima[:, 4] = np.where(aus[:, 1] == 1, 3.0, 0.0) + 0.1 * rng.random(len(seq))  # an AU2 detector
    res = aumap.au_statistics(maxima, aus, [1, 2, 4], seq.astype(str), frame, seq.astype(str), [1],
                              n=9, permutations=0, bootstrap=0)["AU01"]
    assert res["best_map"] == 4  # fooled by co-occurrence
    assert res["held_out_au"] == 2
    assert res["distance_held_out"] < 0.1 * res["distance"][4]
    assert res["rank_held_out"] > 1 and res["best_map_held_out"] != 4
    assert res["other_au_without_this"] is None  # AU2 never occurs without AU1
    assert res["cooccurrence"]["counts"]["AU02"] == int((aus[:, 0] & aus[:, 1]).sum())
    assert res["cooccurrence"]["p_other_given_au"]["AU02"] == pytest.approx(
        (aus[:, 0] & aus[:, 1]).sum() / aus[:, 0].sum())


def test_au_without_negatives_is_an_error():
    aus = np.ones((5, 1), np.uint8)
    with pytest.raises(InterpretError, match="AU01"):
        aumap.au_statistics(np.ones((5, 2)), aus, [1], list("abcde"), np.ones(5), list("abcde"), [1])


def face_landmarks(size=99):
    """A crude 68-point face in iBUG order (enough for region masks)."""
    pts = np.zeros((68, 2))
    t = np.linspace(-1, 1, 17)
    pts[0:17] = np.c_[50 + 38 * t, 55 + 38 * np.sqrt(1 - t ** 2)]
    pts[17:22] = np.c_[np.linspace(20, 44, 5), 30 - 3 * np.sin(np.linspace(0, np.pi, 5))]
    pts[22:27] = np.c_[np.linspace(56, 80, 5), 30 - 3 * np.sin(np.linspace(0, np.pi, 5))]
    pts[27:31] = np.c_[np.full(4, 50), np.linspace(38, 58, 4)]
    pts[31:36] = np.c_[np.linspace(42, 58, 5), np.full(5, 62)]
    for start, cx in ((36, 33), (42, 67)):
        a = np.linspace(0, 2 * np.pi, 7)[:6]
        pts[start:start + 6] = np.c_[cx - 8 * np.cos(a), 40 - 3 * np.sin(a)]
    a = np.linspace(0, 2 * np.pi, 13)[:12]
    pts[48:60] = np.c_[50 - 15 * np.cos(a), 75 - 6 * np.sin(a)]
    a = np.linspace(0, 2 * np.pi, 9)[:8]
    pts[60:68] = np.c_[50 - 10 * np.cos(a), 75 - 2 * np.sin(a)]
    return pts.astype(np.float32)


def test_localization_energy_and_box_shares():
    from interpret.facs import region_mask

    marks = np.stack([face_landmarks()] * 3)
    mask = region_mask(marks[0], 1, (99, 99))[1:97, 1:97]
    inside = np.where(mask, 1.0, 0.0)[None].repeat(2, axis=0)
    boxes = np.array([[0, 0, 96, 96], [0, 0, 96, 96]])
    loc = aumap.localization(inside, [0, 1], boxes, marks, 1, 99)
    assert loc["energy_share"] == pytest.approx(1.0)
    assert loc["area_share"] == pytest.approx(mask.mean())
    assert loc["ratio"] == pytest.approx(1 / mask.mean())
    assert loc["rf_share"] == pytest.approx(mask.mean())
    uniform = aumap.localization(np.ones((2, 96, 96)), [0, 2], boxes, marks, 1, 99)
    assert uniform["ratio"] == pytest.approx(1.0)


def test_au_map_writes_outputs_and_merges_csv(tmp_path, monkeypatch):
    rng = np.random.default_rng(7)
    maxima, aus, seq, frame, subject = planted(rng, n_seq=30, n_maps=12)
    N = len(seq)
    images = rng.integers(0, 256, size=(N, 99, 99), dtype=np.uint8)
    faceset = SimpleNamespace(images=images, landmarks=np.stack([face_landmarks()] * N))
    run = SimpleNamespace(path=tmp_path, dataset=SimpleNamespace(faceset=faceset, spec=PAPER_INPUT))
    cache = {"layer": "relu3", "max": maxima.astype(np.float32), "aus": aus, "au_codes": np.array([1, 2]),
             "subject": subject, "sequence": seq, "frame": frame}
    monkeypatch.setattr(aumap, "_load_cache", lambda run, layer: dict(cache))  # fresh, as the real one

    def fake_deconv(run, layer, maps, k):
        return {m: {"projection": rng.normal(size=(k, 96, 96)), "image_index": np.argsort(-maxima[:, m])[:k],
                    "rf_box": np.tile([10, 20, 42, 52], (k, 1))} for m in maps}

    monkeypatch.setattr(aumap, "_deconvolve", fake_deconv)
    results = aumap.run_au_map(run, aus="1", permutations=49, bootstrap=10).results
    res = json.loads((tmp_path / "aumap" / "AU01.json").read_text())
    for key in ("au", "au_code", "n", "layer", "epsilon", "distance", "best_map", "ranking", "p_family",
                "p_map", "q_map", "auroc", "best_auroc", "cooccurrence", "held_out_au",
                "distance_held_out", "stability", "localization", "n_present", "n_absent"):
        assert key in res, key
    assert res["best_map"] == 7 and len(res["distance"]) == 12 and res["layer"] == "relu3"
    assert set(res["localization"]) >= {"energy_share", "area_share", "ratio", "rf_share"}
    for name in ("AU01_distance.png", "AU01_best.png", "cooccurrence.csv"):
        assert (tmp_path / "aumap" / name).stat().st_size > 0
    aumap.run_au_map(run, aus="AU02", permutations=9, bootstrap=0)
    aumap.run_au_map(run, aus="1", permutations=9, bootstrap=0)
    with open(tmp_path / "aumap" / "distances.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["au"] for r in rows] == ["AU01", "AU02"]
    assert float(rows[0]["map_7"]) == pytest.approx(res["distance"][7], rel=1e-9)
    table = aumap.format_table(results)
    assert "AU01" in table and " 7 " in table
    with pytest.raises(InterpretError, match="AU04"):
        aumap.run_au_map(run, aus="4")


def test_au_map_all_skips_aus_without_images(tmp_path, monkeypatch):
    rng = np.random.default_rng(8)
    maxima, aus, seq, frame, subject = planted(rng, n_seq=20, n_maps=8)
    aus = np.c_[aus, np.zeros(len(seq), np.uint8)]  # AU4 never present
    faceset = SimpleNamespace(images=np.zeros((len(seq), 99, 99), np.uint8), landmarks=None)
    run = SimpleNamespace(path=tmp_path, dataset=SimpleNamespace(faceset=faceset, spec=PAPER_INPUT))
    cache = {"layer": "relu3", "max": maxima, "aus": aus, "au_codes": np.array([1, 2, 4]), "subject": subject,
             "sequence": seq, "frame": frame}
    monkeypatch.setattr(aumap, "_load_cache", lambda run, layer: dict(cache))  # fresh, as the real one
    monkeypatch.setattr(aumap, "_deconvolve", lambda run, layer, maps, k: {m: {
        "projection": np.ones((k, 96, 96)), "image_index": np.arange(k), "rf_box": np.zeros((k, 4), int)}
        for m in maps})
    results = aumap.run_au_map(run, aus="all", permutations=9, bootstrap=0).results
    assert list(results) == ["AU01", "AU02"]
    assert "note" in results["AU01"]["localization"]
    with pytest.raises(InterpretError, match="AU04"):
        aumap.run_au_map(run, aus="4", permutations=9, bootstrap=0)


def test_auroc_map_is_scale_free_where_the_distance_is_not():
    """A loud map that fires slightly *less* with the AU wins D; a quiet, clean detector wins AUROC."""
    rng = np.random.default_rng(0)
    n_img = 200
    present = np.zeros(n_img, bool)
    present[::2] = True
    loud = rng.uniform(50, 100, n_img) - 10 * present
    quiet = rng.uniform(0.0, 0.1, n_img) + 0.5 * present
    noise = rng.uniform(0, 1, (n_img, 3))
    maxima = np.column_stack([loud, quiet, noise])
    res = aumap.au_statistics(maxima, present[:, None].astype(np.uint8), [1], np.arange(n_img).astype(str),
                        np.ones(n_img, int), np.arange(n_img).astype(str), [1], permutations=0,
                        bootstrap=0)["AU01"]
    assert res["best_map"] == 0 and res["best_auroc"] < 0.5
    assert res["auroc_map"] == 1 and res["auroc_map_auroc"] == 1.0
    assert res["auroc_map_distance_rank"] > 1


def test_top_matches_a_sort_of_each_sets_members_on_every_path(monkeypatch):
    """Small sets (read off their members), large ones (the head of each map's order) and the
    (set, map) pairs whose top n lies deep (read deeper) all give a plain sort of the members."""
    used = {"_top_of_members": 0, "_top_deeper": 0}
    for name in used:
        def spy(self, *args, _name=name, _original=getattr(aumap.RankedMaps, name)):
            used[_name] += 1
            return _original(self, *args)
        monkeypatch.setattr(aumap.RankedMaps, name, spy)
    rng = np.random.default_rng(12)
    N = 1500
    pool = np.arange(N) < 0.6 * N  # every set below is drawn from the pool ...
    for dtype in (np.float32, np.float64):
        maxima = np.round(np.maximum(0, rng.normal(size=(N, 6))), 1).astype(dtype)  # ties
        maxima[pool, 0] = np.round(rng.random(pool.sum()) * 0.1, 2)  # ... which map 0 ranks last
        maxima[~pool, 0] += 1.0
        for share in (0.002, 0.3, 0.5):
            weights = (pool & (rng.random((6, N)) < share / 0.6)) * rng.integers(1, 4, (6, N))
            got = aumap.RankedMaps(maxima).top(weights, 9)
            for b in range(len(weights)):
                members = maxima[np.repeat(np.arange(N), weights[b])].astype(np.float64)
                expected = np.full((6, 9), np.nan)
                found = -np.sort(-members, axis=0)[:9].T
                expected[:, :found.shape[1]] = found
                assert np.array_equal(got[b], expected, equal_nan=True)
    assert used["_top_of_members"] and used["_top_deeper"]
