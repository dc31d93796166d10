"""au_statistics equals, number for number (==), a frozen whole-array reference: every set sorted
plainly, each seeded stream drawn in one (P, S) or (B, G) call, float64 throughout. Run at the
default batch size and at a tiny one (one set per batch, every depth doubling taken)."""

import numpy as np
import pytest

from interpret import aumap, stats

N_TOP = 4


def top_of(maxima, weights):
    """(C, N_TOP) the N_TOP largest of each map over the multiset `weights` (N,) of rows; NaN-padded."""
    rows = np.repeat(np.arange(len(weights)), weights)
    top = -np.sort(-maxima[rows], axis=0)[:N_TOP].T
    return np.pad(top, ((0, 0), (0, N_TOP - top.shape[1])), constant_values=np.nan)


def distance(maxima, inside, outside, eps):
    r, q = top_of(maxima, inside), top_of(maxima, outside)
    return np.nansum((r - q) * (np.log(r + eps) - np.log(q + eps)), axis=-1), np.nansum(r - q, axis=-1) > 0


def reference(maxima, aus, au_codes, sequence, frame, subject, code, P, B, seed, known, unit):
    """The expected numbers of `au_statistics(...)[AU]`, the held-out AU taken from its answer."""
    maxima = np.asarray(maxima, dtype=np.float64)
    present_all = aus.astype(bool) & known
    a = au_codes.index(code)
    present, known_a = present_all[:, a], known[:, a]
    absent = known_a & ~present
    eps = 0.01 * float(np.median(maxima[maxima > 0]))
    observed, higher = distance(maxima, present, absent, eps)
    best = int(np.argmax(observed))

    seq_index, seq_aus, carrier = aumap.sequence_structure(sequence, present_all, frame)
    S = len(seq_aus)
    rng = np.random.default_rng([seed, code, 0])
    if unit == "sequence":
        perms = rng.permuted(np.tile(np.arange(S), (P, 1)), axis=1)
        labels = seq_aus[perms][:, seq_index, a] & carrier
        outside = known_a & ~labels
    else:
        shifts = (rng.random((P, S)) * np.bincount(seq_index, minlength=S)).astype(np.int64)
        source = aumap.circular_sources(seq_index, frame, shifts)
        labels, outside = present[source], absent[source]
    null = np.array([distance(maxima, labels[p], outside[p], eps)[0] for p in range(P)])

    _, groups = np.unique(subject, return_inverse=True)
    G = groups.max() + 1
    draws = np.random.default_rng([seed, code, 1]).integers(0, G, size=(B, G))
    weights = np.array([np.bincount(d, minlength=G)[groups] for d in draws])
    boot = np.array([distance(maxima, w * present, w * absent, eps)[0] for w in weights])
    winners = np.bincount(boot.argmax(axis=1), minlength=maxima.shape[1])

    auroc = stats.auroc(maxima[known_a], present[known_a])
    p_map = stats.permutation_pvalues(observed, null)
    expected = {
        "epsilon": eps, "distance": observed.tolist(), "best_map": best,
        "best_direction": "higher with the AU" if higher[best] else "lower with the AU",
        "ranking": [{"map": int(i), "distance": float(observed[i])}
                    for i in np.argsort(-observed, kind="stable")[:10]],
        "p_family": float(stats.permutation_pvalues(observed[best], null.max(axis=1))),
        "null_max_95": float(np.quantile(null.max(axis=1), 0.95)),
        "p_map": p_map.tolist(), "q_map": stats.benjamini_hochberg(p_map).tolist(),
        "auroc": auroc.tolist(), "best_auroc": float(auroc[best]), "auroc_map": int(np.argmax(auroc)),
        "auroc_map_auroc": float(auroc.max()),
        "auroc_map_distance_rank": int((observed > observed[np.argmax(auroc)]).sum()) + 1,
        "stability": float(winners[best] / B),
        "stability_winners": [{"map": int(i), "share": float(winners[i] / B)}
                              for i in np.argsort(-winners, kind="stable")[:5] if winners[i]],
    }
    return expected, present_all, best, eps


def held_out(maxima, present_all, known, a, b, best, eps):
    """The held-out check's numbers for the other AU b (both directions)."""
    maxima = np.asarray(maxima, dtype=np.float64)
    both = known[:, a] & known[:, b]
    A, B = present_all[:, a] | ~both, present_all[:, b] | ~both
    held = distance(maxima, A & ~B, ~A & ~B, eps)[0]
    out = {"distance_held_out": float(held[best]), "rank_held_out": int((held > held[best]).sum()) + 1,
           "best_map_held_out": int(np.argmax(held))}
    if min((B & ~A).sum(), (~B & ~A).sum()) >= N_TOP:
        other = distance(maxima, B & ~A, ~B & ~A, eps)[0]
        out["other_au_without_this"] = {"distance": float(other[best]), "rank": int((other > other[best]).sum()) + 1,
                                        "best_map": int(np.argmax(other))}
    return out


def frames(rng, n_seq=40):
    """Sequences of 1-6 frames (frame 1 neutral), 3 AUs with co-occurrence, two subjects each."""
    lengths = rng.integers(1, 7, n_seq)
    seq = np.repeat(np.arange(n_seq), lengths)
    frame = np.concatenate([np.arange(1, k + 1) for k in lengths])
    seq_aus = rng.random((n_seq, 3)) < [0.4, 0.15, 0.3]
    seq_aus[:, 1] |= seq_aus[:, 0] & (rng.random(n_seq) < 0.3)
    aus = (seq_aus[seq] & (frame > 1)[:, None]).astype(np.uint8)
    return aus, seq.astype(str), frame, (seq // 2).astype(str)


def stills(rng, n=150):
    """Every image its own sequence and subject (FER-like), frame 1."""
    aus = (rng.random((n, 3)) < [0.3, 0.05, 0.5]).astype(np.uint8)
    ids = np.arange(n).astype(str)
    return aus, ids, np.ones(n, np.int64), ids


@pytest.mark.parametrize("budget", [aumap._BUDGET, 64])
@pytest.mark.parametrize("case", ["frames", "stills", "float32", "circular"])
def test_au_statistics_equals_the_whole_array_reference(case, budget, monkeypatch):
    monkeypatch.setattr(aumap, "_BUDGET", budget)
    rng = np.random.default_rng(["frames", "stills", "float32", "circular"].index(case))
    aus, sequence, frame, subject = stills(rng) if case == "stills" else frames(rng)
    maxima = np.round(np.maximum(0, rng.normal(0.4, 0.6, size=(len(aus), 12))), 1)  # ties and zeros
    maxima[:, 5] += 0.8 * aus[:, 0]  # a detector of the first AU
    if case == "float32":
        maxima = (maxima + rng.random(maxima.shape) / 7).astype(np.float32)
    known = np.ones(aus.shape, bool)
    if case == "circular":
        known = rng.random(aus.shape) > 0.1
    unit = "circular" if case == "circular" else "sequence"
    au_codes, P, B, seed = [1, 2, 4], 30, 12, 3
    results = aumap.au_statistics(maxima, aus, au_codes, sequence, frame, subject, au_codes, n=N_TOP,
                                  permutations=P, bootstrap=B, seed=seed, known=known, unit=unit)
    held_checked = 0
    for code in au_codes:
        res = results[f"AU{code:02d}"]
        expected, present_all, best, eps = reference(maxima, aus, au_codes, sequence, frame, subject, code,
                                                     P, B, seed, known, unit)
        assert {key: res[key] for key in expected} == expected
        if res["held_out_au"] is not None:
            held = held_out(maxima, present_all, known, au_codes.index(code), au_codes.index(res["held_out_au"]),
                            best, eps)
            held.setdefault("other_au_without_this", None)
            assert {key: res[key] for key in held} == held
            held_checked += 1
    assert held_checked
