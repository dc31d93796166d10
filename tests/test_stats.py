import numpy as np
import pytest

from interpret import stats


def test_benjamini_hochberg_matches_plain_transcription():
    rng = np.random.default_rng(1)
    p = np.concatenate([rng.random(30), rng.random(10) * 0.01, [0.02, 0.02, 0.5, 1.0]])
    m = len(p)
    ranked = sorted(range(m), key=lambda i: p[i])
    expected = np.empty(m)
    for r, i in enumerate(ranked):  # q_(r) = min over r' >= r of p_(r') * m / r'
        expected[i] = min(min(p[ranked[s]] * m / (s + 1) for s in range(r, m)), 1.0)
    assert np.allclose(stats.benjamini_hochberg(p), expected)


def test_auroc_matches_pairwise_count_with_ties():
    rng = np.random.default_rng(2)
    scores = rng.integers(0, 4, size=(40, 5)).astype(float)  # many ties
    labels = rng.random(40) < 0.3
    pos, neg = scores[labels], scores[~labels]
    expected = [sum((a > b) + 0.5 * (a == b) for a in pos[:, c] for b in neg[:, c]) / (len(pos) * len(neg))
                for c in range(5)]
    assert np.allclose(stats.auroc(scores, labels), expected)
    assert np.isnan(stats.auroc(scores, np.zeros(40, bool))).all()


def test_permutation_pvalues_count_ties_and_add_one():
    null = np.array([[1.0, 5.0], [2.0, 0.0], [3.0, 0.0]])
    assert np.allclose(stats.permutation_pvalues([2.0, 9.0], null), [(1 + 2) / 4, 1 / 4])


def test_permutations_are_permutations_and_seeded():
    a = stats.permutations(7, 50, np.random.default_rng(3))
    b = stats.permutations(7, 50, np.random.default_rng(3))
    assert np.array_equal(a, b)
    assert (np.sort(a, axis=1) == np.arange(7)).all()
    assert len({tuple(r) for r in a}) > 40


def test_permutations_and_bootstrap_weights_drawn_in_batches_equal_one_draw():
    groups = np.array([0, 0, 1, 2, 2, 2, 3, 4])
    for draw in (lambda count, rng: stats.permutations(9, count, rng),
                 lambda count, rng: stats.cluster_bootstrap_weights(groups, count, rng)):
        rng = np.random.default_rng(7)
        batches = [draw(count, rng) for count in (3, 1, 5, 2)]
        assert np.array_equal(np.concatenate(batches), draw(11, np.random.default_rng(7)))


def test_cluster_bootstrap_weights_resample_whole_groups():
    groups = np.array([0, 0, 0, 1, 2, 2, 3])
    w = stats.cluster_bootstrap_weights(groups, 100, np.random.default_rng(4))
    assert w.shape == (100, 7)
    assert (w[:, 0] == w[:, 1]).all() and (w[:, 1] == w[:, 2]).all() and (w[:, 4] == w[:, 5]).all()
    per_group = w[:, [0, 3, 4, 6]]
    assert (per_group.sum(axis=1) == 4).all()  # G draws per resample
    assert per_group.max() > 1 and (per_group == 0).any()


@pytest.mark.parametrize("n", [1, 3, 6])
def test_top_n_weighted_matches_expanding_loop(n):
    rng = np.random.default_rng(5)
    C, M, B = 4, 12, 20
    values = -np.sort(-rng.integers(0, 5, size=(C, M)).astype(float), axis=1)
    weights = rng.integers(0, 3, size=(B, C, M)) * (rng.random((B, C, M)) < 0.4)
    top, found = stats.top_n_weighted(values, weights, n)
    for b in range(B):
        for c in range(C):
            members = [v for v, w in zip(values[c], weights[b, c]) for _ in range(w)]
            expected = members[:n] + [np.nan] * (n - len(members[:n]))
            assert np.allclose(top[b, c], expected, equal_nan=True)
            assert found[b, c] == len(members)
