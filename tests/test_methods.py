"""Each mapping method against a naive-loop oracle on small arrays."""

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from interpret import methods
from interpret.aumap import epsilon_for, permuted_labels, sequence_structure
from interpret.stats import permutations


def naive_distances(maxima, present, n, eps):
    """Per map: sort each side, pair the top n, sum the paper's terms; directional zeroes 'less' maps."""
    paper, directional = [], []
    for c in range(maxima.shape[1]):
        inside = sorted(maxima[present, c], reverse=True)
        outside = sorted(maxima[~present, c], reverse=True)
        k = min(n, len(inside), len(outside))
        d = sum((inside[i] - outside[i]) * np.log((inside[i] + eps) / (outside[i] + eps)) for i in range(k))
        paper.append(d)
        directional.append(d if sum(inside[i] - outside[i] for i in range(k)) > 0 else 0.0)
    return np.array(paper), np.array(directional)


def naive_auroc(scores, labels):
    pos, neg = scores[labels], scores[~labels]
    wins = sum((p > q) + 0.5 * (p == q) for p in pos for q in neg)
    return wins / (len(pos) * len(neg))


@pytest.fixture
def arrays():
    rng = np.random.default_rng(3)
    maxima = np.round(rng.gamma(2.0, 1.0, size=(40, 7)), 1)  # rounding makes ties
    maxima[:, 2] = 0.0
    presence = rng.random((40, 3)) < 0.4
    maxima[presence[:, 0], 4] += 2.0  # map 4 fires more with AU 0
    maxima[presence[:, 1], 5] *= 0.2  # map 5 fires less with AU 1
    return maxima, presence


def test_distances_and_directional_match_loops(arrays):
    maxima, presence = arrays
    paper, directional = methods.distance_scores(maxima, presence, n=5)
    eps = epsilon_for(maxima)
    for a in range(presence.shape[1]):
        want_paper, want_dir = naive_distances(maxima, presence[:, a], 5, eps)
        np.testing.assert_allclose(paper[a], want_paper, rtol=1e-12)
        np.testing.assert_allclose(directional[a], want_dir, rtol=1e-12)
    assert directional[1, 5] == 0 and paper[1, 5] > 0  # fires less: the paper counts it, directional not
    assert np.argmax(directional[0]) == 4


def test_auroc_matches_pairwise_loop(arrays):
    maxima, presence = arrays
    got = methods.auroc_scores(maxima, presence)
    for a in range(presence.shape[1]):
        for c in range(maxima.shape[1]):
            assert got[a, c] == pytest.approx(naive_auroc(maxima[:, c], presence[:, a]))


@pytest.mark.parametrize("silent", [0.0, 0.6])
def test_quantile_threshold_and_iou_match_loops(silent):
    """`silent`: share of (image, map) pairs all zero, as on a trained ReLU layer (never upsampled)."""
    rng = np.random.default_rng(5)
    acts = [torch.relu(torch.randn(b, 3, 4, 4)) * torch.as_tensor(rng.random((b, 3, 1, 1)) >= silent)
            for b in (2, 3, 1)]
    thresholds = methods.quantile_thresholds(iter(acts), 6, quantile=0.05)
    values = torch.cat(acts).transpose(0, 1).reshape(3, -1).numpy()
    k = int(np.ceil(0.05 * values.shape[1]))
    np.testing.assert_allclose(thresholds, np.sort(values, axis=1)[:, -k], rtol=1e-6)

    masks = rng.random((6, 2, 8, 8)) < 0.3
    acc = methods.IoUAccumulator(thresholds)
    start = 0
    for act in acts:
        acc.update(act, masks[start:start + len(act)])
        start += len(act)
    counts = acc.arrays()
    presence = np.array([[1, 0], [1, 1], [0, 1], [1, 0], [0, 0], [1, 1]], dtype=bool)
    got = methods.iou_scores(counts, presence)
    images = torch.cat(acts)
    for a in range(2):
        for c in range(3):
            inter = union = fired_total = 0
            for i in range(6):
                if not presence[i, a]:
                    continue
                up = torch.nn.functional.interpolate(images[i:i + 1, c:c + 1], size=(8, 8), mode="bilinear",
                                                     align_corners=False)[0, 0].numpy()
                fired = up > thresholds[c]
                inter += np.logical_and(fired, masks[i, a]).sum()
                union += np.logical_or(fired, masks[i, a]).sum()
                fired_total += fired.sum()
            assert got["iou"][a, c] == pytest.approx(inter / union if union else 0.0)
            if fired_total:
                assert got["inside_share"][a, c] == pytest.approx(inter / fired_total)


def test_partial_effects_match_per_map_normal_equations(arrays):
    maxima, presence = arrays
    got = methods.partial_scores(maxima, presence)
    design = np.column_stack([np.ones(len(presence)), presence]).astype(float)
    for c in range(maxima.shape[1]):
        beta = np.linalg.solve(design.T @ design, design.T @ maxima[:, c])
        np.testing.assert_allclose(got[:, c], beta[1:], atol=1e-9)
    # Frisch-Waugh-Lovell: the partial effect of one AU's labels, the others held, is the same number
    for a in range(presence.shape[1]):
        np.testing.assert_allclose(methods.partial_effect(maxima, presence, a, presence[:, a])[0], got[a], atol=1e-9)
    assert np.argmax(got[0]) == 4 and np.argmin(got[1]) == 5


def test_partial_effect_names_the_map_of_the_au_not_of_its_companion():
    """AU A mostly comes with AU B; map 0 fires with B only, map 1 with A only (more weakly). AUROC
    for A prefers map 0 (B's images are most of A's); the partial effect names map 1."""
    rng = np.random.default_rng(4)
    n = 800
    b = rng.random(n) < 0.4
    a = np.where(b, rng.random(n) < 0.7, rng.random(n) < 0.05)
    maxima = np.column_stack([3.0 * b, 1.0 * a, np.zeros(n)]) + rng.normal(size=(n, 3))
    presence = np.column_stack([a, b])
    assert np.argmax(methods.auroc_scores(maxima, presence)[0]) == 0
    effects = methods.partial_scores(methods.standardize(maxima)[0], presence)
    assert np.argmax(effects[0]) == 1 and np.argmax(effects[1]) == 0
    assert abs(effects[0, 0]) < 0.1 < 0.5 < effects[0, 1]


def test_l1_probe_matches_a_generic_solver():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(120, 6))
    Y = np.stack([(X[:, 0] + 0.5 * rng.normal(size=120)) > 0, (X[:, 3] - X[:, 1] + rng.normal(size=120)) > 0], 1)
    l1 = 0.03
    W, b = methods.fit_l1_logistic(X, Y, l1, iterations=5000, tol=1e-12)
    for k in range(2):
        y = Y[:, k].astype(float)

        def objective(v):  # w = v+ - v-, both >= 0: the L1 term becomes linear (exact reformulation)
            w = v[:6] - v[6:12]
            return methods.l1_logistic_objective(X, y, w, v[12], 0.0) + l1 * v[:12].sum()

        bounds = [(0, None)] * 12 + [(None, None)]
        ref = minimize(objective, np.zeros(13), method="L-BFGS-B", bounds=bounds, options={"ftol": 1e-14, "gtol": 1e-10})
        w_ref = ref.x[:6] - ref.x[6:12]
        assert methods.l1_logistic_objective(X, y, W[:, k], b[k], l1) <= ref.fun + 1e-6
        np.testing.assert_allclose(W[:, k], w_ref, atol=2e-3)
    assert W[2, 0] == 0.0  # sparse: an irrelevant feature gets an exact zero
    assert W[0, 0] > 0 and W[3, 1] > 0 and W[1, 1] < 0


def test_probe_folds_group_subjects():
    subject = np.repeat([f"S{i}" for i in range(10)], 4)
    fold = methods.subject_folds(subject, 5, seed=0)
    for s in np.unique(subject):
        assert len(set(fold[subject == s])) == 1
    assert sorted(np.bincount(fold)) == [8, 8, 8, 8, 8]


def test_permutation_null_matches_per_permutation_loop(arrays):
    maxima, presence = arrays
    sequence = np.repeat(np.arange(20), 2).astype(str)
    frame = np.tile([0, 1], 20)
    presence = np.repeat(presence[::2], 2, axis=0)  # a sequence's frames share their AUs
    rng = np.random.default_rng(0)
    seq_index, seq_aus, carrier = sequence_structure(sequence, presence, frame)
    perms = permutations(len(seq_aus), 6, rng)
    counts = (rng.random((40, 3, 7)) * 3, rng.random((40, 7)) * 9 + 3, rng.random((40, 3)) * 5)
    null = methods.permutation_null(maxima, presence, sequence, frame, 0, perms, n=4, iou_counts=counts,
                                    probe_permutations=3)
    labels = permuted_labels(seq_aus[:, 0], seq_index, carrier, perms).astype(bool)
    X, _, _ = methods.standardize(maxima)
    for p, lab in enumerate(labels):
        paper, directional = methods.distance_scores(maxima, lab[:, None], n=4)
        assert null["distance"][p] == pytest.approx(paper.max())
        assert null["directional"][p] == pytest.approx(directional.max())
        assert null["auroc"][p] == pytest.approx(methods.auroc_scores(maxima, lab[:, None]).max())
        swapped = presence.copy()
        swapped[:, 0] = lab
        assert null["partial"][p] == pytest.approx(methods.partial_scores(X, swapped)[0].max())
        iou = methods.iou_scores((counts[0][:, :1], counts[1], counts[2][:, :1]), lab[:, None])["iou"]
        assert null["iou"][p] == pytest.approx(iou.max())
        if p < 3:
            W, _ = methods.fit_l1_logistic(X, lab[:, None].astype(float))
            assert null["probe"][p] == pytest.approx(W.max(), abs=1e-3)  # both stop at tolerance 1e-5
    assert len(null["probe"]) == 3


class _SkipAcross(torch.nn.Module):
    """conv -> relu -> flatten -> linear, plus a linear path from the input around the cut."""

    def __init__(self):
        super().__init__()
        self.conv, self.relu, self.flat = torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten()
        self.out, self.side = torch.nn.Linear(4 * 6 * 6, 3), torch.nn.Linear(64, 3)

    def forward(self, x):
        return self.out(self.flat(self.relu(self.conv(x)))) + self.side(x.flatten(1))


class _DoubleInPlace(torch.nn.Module):
    def forward(self, x):
        return x.mul_(2)


def _sequential():
    model = torch.nn.Sequential()
    model.add_module("conv", torch.nn.Conv2d(1, 4, 3))
    model.add_module("relu", torch.nn.ReLU())
    model.add_module("flat", torch.nn.Flatten())
    model.add_module("after", _DoubleInPlace())  # works in place on what the cut hands it
    model.add_module("out", torch.nn.Linear(4 * 6 * 6, 3))
    return model


@pytest.mark.parametrize("build, cut", [(_sequential, True), (_SkipAcross, False)])
def test_ablation_drops_match_one_hook_per_map_and_image(build, cut):
    """Cut after the layer (the rest run on ablated copies) or, with a path around the cut, the
    whole model with a hook: both equal one hooked forward per map and image."""
    torch.manual_seed(0)
    model = build().eval()
    assert (methods.after_layer(model, "relu") is not None) == cut
    x = torch.randn(5, 1, 8, 8)
    drops, top = methods.ablation_drops(model, "relu", x, [2, 0, 3], batch_maps=2)
    for m_i, m in enumerate([2, 0, 3]):
        for i in range(5):
            with torch.no_grad():
                intact = model(x[i:i + 1])[0]
                handle = model.relu.register_forward_hook(lambda mod, inp, out, m=m: out * (torch.arange(4) != m).view(1, 4, 1, 1))
                ablated = model(x[i:i + 1])[0]
                handle.remove()
            k = int(intact.argmax())
            assert top[i] == k
            assert drops[m_i, i] == pytest.approx(float(intact[k] - ablated[k]), abs=1e-5)
    assert not model.relu._forward_hooks  # no hook left behind
