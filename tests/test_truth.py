"""The planted truth on fresh identities: `contest` against a naive bootstrap, and its verdicts on
hand-built maps."""

import numpy as np

from interpret import stats
from interpret.truth import CHALLENGERS, OUTDONE_SHARE, classify, contest, outdone_share


def naive_auroc(scores, labels):
    pos, neg = scores[labels], scores[~labels]
    return np.mean([(p > q) + 0.5 * (p == q) for p in pos for q in neg])


def faces(seed=0, subjects=30, per=6):
    rng = np.random.default_rng(seed)
    subject = np.repeat([f"S{k:03d}" for k in range(subjects)], per)
    labels = rng.random(len(subject)) < 0.35
    return rng, subject, labels


def test_a_clearly_better_map_outdoes_the_planted_one():
    rng, subject, labels = faces()
    maxima = rng.normal(size=(len(labels), 8))
    maxima[:, 2] += 1.0 * labels  # the planted map: a detector
    maxima[:, 5] += 4.0 * labels  # a far better one
    result = contest(maxima, labels, subject, planted_map=2, resamples=100)
    assert result["truth"] == "outdone" and result["outdone_by"]["map"] == 5
    assert result["outdone_by"]["above"] >= OUTDONE_SHARE and result["best_other_map"] == 5
    np.testing.assert_allclose(result["aurocs"], [naive_auroc(maxima[:, c], labels) for c in range(8)])
    others = sorted((c for c in range(8) if c != 2), key=lambda c: -result["aurocs"][c])[:CHALLENGERS]
    assert list(result["maps"]) == others


def test_sole_tied_and_named_maps():
    """A planted map far above noise is the sole answer; an exact copy of it ties (neither higher
    nor lower in any resample); a named map outside the five best is contested too."""
    rng, subject, labels = faces(1)
    maxima = rng.normal(size=(len(labels), 9))
    maxima[:, 1] += 3.0 * labels
    alone = contest(maxima, labels, subject, planted_map=1, named=[1], resamples=100)
    assert alone["truth"] == "sole" and alone["outdone_by"] is None and 1 not in alone["maps"]
    worst = int(np.argmin(alone["aurocs"]))
    named = contest(maxima, labels, subject, planted_map=1, named=[worst], resamples=100)
    assert worst in named["maps"] and named["maps"][worst]["below"] >= OUTDONE_SHARE
    maxima[:, 4] = maxima[:, 1]
    tied = contest(maxima, labels, subject, planted_map=1, resamples=100)
    assert tied["truth"] == "tied" and tied["maps"][4]["above"] == tied["maps"][4]["below"] == 0.0


def test_shares_against_a_naive_subject_bootstrap():
    """The same resamples (whole subjects, with replacement) scored by a naive pairwise AUROC."""
    rng, subject, labels = faces(2, subjects=12, per=4)
    maxima = rng.normal(size=(len(labels), 4))
    maxima[:, 0] += 0.8 * labels
    maxima[:, 3] += 1.0 * labels
    result = contest(maxima, labels, subject, planted_map=0, seed=5, resamples=40)
    _, groups = np.unique(subject, return_inverse=True)
    weights = stats.cluster_bootstrap_weights(groups, 40, np.random.default_rng([5, 0xF7E5]))
    above, below, usable = {c: 0 for c in (1, 2, 3)}, {c: 0 for c in (1, 2, 3)}, 0
    for w in weights:
        rows = np.concatenate([np.flatnonzero(groups == g) for g in range(groups.max() + 1)
                               for _ in range(int(w[groups == g][0]))])
        y = labels[rows]
        if y.all() or not y.any():
            continue
        usable += 1
        planted = naive_auroc(maxima[rows, 0], y)
        for c in above:
            above[c] += naive_auroc(maxima[rows, c], y) > planted
            below[c] += naive_auroc(maxima[rows, c], y) < planted
    assert list(result["maps"]) == [3, 1, 2]
    got = [(v["above"], v["below"]) for v in result["maps"].values()]
    np.testing.assert_allclose(got, [(above[c] / usable, below[c] / usable) for c in (3, 1, 2)])


def test_outdone_is_corrected_for_several_challengers():
    """One of five challengers higher in 97% of resamples is chance-level among five (Bonferroni:
    99% needed); sole needs every challenger lower in 95%."""
    assert outdone_share(5) == 0.99 and outdone_share(1) == OUTDONE_SHARE
    rivals = [3, 8, 1, 4, 6]
    shares = {c: {"above": 0.02, "below": 0.97} for c in rivals}
    assert classify(shares, rivals) == ("sole", [])
    shares[8] = {"above": 0.97, "below": 0.03}
    assert classify(shares, rivals) == ("tied", [])
    shares[8]["above"] = 0.99
    assert classify(shares, rivals) == ("outdone", [8])
    shares[3] = {"above": 0.995, "below": 0.0}
    assert classify(shares, rivals) == ("outdone", [3, 8])
