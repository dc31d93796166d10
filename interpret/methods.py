"""Mapping methods side by side: every method scores (AU x map) from arrays, vectorised.

Scores are oriented so that larger = "this map detects this AU" and each method's winner is
the argmax over maps:

- ``distance``: the paper's symmetric top-n distance (`interpret.aumap`, unchanged).
- ``directional``: the same distance, counted only for maps that fire MORE with the AU
  (Σ_k R_k − Q_k > 0), else 0.
- ``auroc``: AUROC of each map's per-image maxima for AU presence (scale-free).
- ``iou``: NetDissect-style IoU of the map's top-quantile activation (upsampled to the network
  input) with the AU's region mask, summed over AU-present images (`IoUAccumulator`).
- ``partial``: the AU's partial effect on each map's standardized maxima, co-occurring AUs held
  fixed (its coefficient in a least-squares fit on every AU's presence, `partial_scores`): a map
  that tracks a co-occurring AU scores near 0 for this one, where AUROC and the distances rank
  it high.
- ``probe``: coefficient of the map in a sparse (L1) logistic probe of the AU on all maps'
  standardized maxima (`fit_l1_logistic`, proximal gradient in numpy: scikit-learn stays out
  of the dependencies); its subject-grouped cross-validated AUROC says how well the layer
  encodes the AU at all.

`permutation_null` scores sequence-level label permutations (as `interpret.aumap`) for every
method and gives each winner a family-wise p (max over maps). `ablation_drops` is the causal
check: zero a map with a forward hook and measure the drop of the emotion logit.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import rankdata

from interpret import stats
from interpret.aumap import RankedMaps, pair_distance, permuted_labels, sequence_structure
from interpret.layers import get_module, layer_output, resolve_layer
from interpret.quantiles import IOU_QUANTILE, TopQuantile

METHODS = ("distance", "directional", "auroc", "partial", "iou", "probe")
#: L1 penalty of the probe (on standardized maxima, mean logistic loss).
PROBE_L1 = 0.01


# ---------------------------------------------------------------- distances and AUROC


def distance_scores(maxima, presence, n: int = 9) -> tuple[np.ndarray, np.ndarray]:
    """(paper distance (A, C), directional distance (A, C)) for presence (N, A) in one pass."""
    ranked = RankedMaps(maxima)
    return _distances(ranked, _inside(presence), n, ranked.epsilon)


def _inside(presence) -> np.ndarray:
    return np.asarray(presence).astype(bool).T.astype(np.int64)


def _distances(ranked: RankedMaps, inside, n: int, eps: float) -> tuple[np.ndarray, np.ndarray]:
    top_in, top_out = ranked.top(inside, n), ranked.top(1 - inside, n)
    paper = pair_distance(top_in, top_out, eps)
    more = np.nansum(top_in - top_out, axis=-1) > 0
    return paper, np.where(more, paper, 0.0)


def auroc_scores(maxima, presence) -> np.ndarray:
    """(A, C) AUROC of every map's maxima for every AU (NaN where an AU has no positives or negatives)."""
    ranks = rankdata(np.asarray(maxima, dtype=np.float64), axis=0)
    return _auroc_from_ranks(ranks, np.asarray(presence).astype(bool).T)


def _auroc_from_ranks(ranks, labels) -> np.ndarray:
    """(B, C) AUROC for B label vectors (B, N) from the column ranks (N, C) (Mann–Whitney U)."""
    labels = np.asarray(labels, dtype=np.float64)
    n_pos = labels.sum(axis=1, keepdims=True)
    n_neg = labels.shape[1] - n_pos
    with np.errstate(invalid="ignore", divide="ignore"):
        return (labels @ ranks - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


# ---------------------------------------------------------------- partial effects


def partial_scores(maxima, presence) -> np.ndarray:
    """(A, C) every AU's partial effect on every map's maxima (N, C): its coefficient in one least
    squares of the maxima on all AUs' presence (N, A) with an intercept (on standardized maxima: in
    SDs of the map)."""
    X = np.column_stack([np.ones(len(presence)), np.asarray(presence).astype(np.float64)])
    return np.linalg.lstsq(X, np.asarray(maxima, dtype=np.float64), rcond=None)[0][1:]


def partial_effect(maxima, presence, a: int, labels) -> np.ndarray:
    """(P, C) AU a's partial effect with each row of labels (P, N) in its place, the other AUs'
    presence held as it is (Frisch-Waugh-Lovell: the labels' residual on the others, regressed
    onto the maxima); NaN for labels the other AUs explain entirely."""
    others = np.column_stack([np.ones(len(presence)), np.delete(np.asarray(presence), a, axis=1)]).astype(np.float64)
    labels = np.atleast_2d(np.asarray(labels, dtype=np.float64))
    residual = labels - (labels @ np.linalg.pinv(others).T) @ others.T
    norm = np.einsum("pn,pn->p", residual, residual)
    norm = np.where(norm > 1e-9 * len(presence), norm, np.nan)
    return (residual @ np.asarray(maxima, dtype=np.float64)) / norm[:, None]


# ---------------------------------------------------------------- NetDissect IoU


def region_masks(landmarks, au_codes, face_size: int, spec) -> np.ndarray:
    """(N, A, H, W) bool region masks in network-input coordinates (resize, then centre crop, as `evaluate`)."""
    import cv2

    from interpret.errors import InterpretError
    from interpret.facs import region_mask

    side = spec.resize or face_size
    o = (side - spec.size) // 2
    out = np.zeros((len(landmarks), len(au_codes), spec.size, spec.size), dtype=bool)
    for i, points in enumerate(np.asarray(landmarks, dtype=np.float64)):
        for a, code in enumerate(au_codes):
            try:
                mask = region_mask(points * side / face_size, int(code), (side, side))
            except InterpretError:  # no region defined for this AU: an empty mask
                continue
            out[i, a] = mask[o:o + spec.size, o:o + spec.size]
    return out


def quantile_thresholds(batches, n_images: int, quantile: float = IOU_QUANTILE) -> np.ndarray:
    """(C,) per map, the value exceeded by a `quantile` share of its activations over all batches
    (`TopQuantile` over the iterable of (B, C, h, w) tensors, not upsampled)."""
    top = TopQuantile(n_images, quantile)
    for act in batches:
        top.update(act)
    return top.thresholds()


class IoUAccumulator:
    """Per-image intersection, fired and mask pixel counts, so any AU-present set gives its IoU.

    `update(act, masks)` takes a batch of layer maps (B, C, h, w) and region masks (B, A, H, W):
    each map is upsampled (bilinear) to H x W and thresholded (> its threshold). Stored per
    image: inter (N, A, C), fired (N, C), area (N, A). For weights w (N,) of AU a:
    IoU = Σ w·inter / Σ w·(fired + area − inter), and inside share = Σ w·inter / Σ w·fired.
    """

    def __init__(self, thresholds):
        self.thresholds = torch.as_tensor(np.asarray(thresholds), dtype=torch.float32)
        self._inter, self._fired, self._area = [], [], []

    def update(self, act: torch.Tensor, masks) -> None:
        masks = torch.as_tensor(np.asarray(masks))
        B, A, H, W = masks.shape
        act = act.detach().float()
        C = act.shape[1]
        m = masks.reshape(B, A, H * W).float()
        inter, fired_count = torch.zeros(B, A, C), torch.zeros(B, C)
        # Bilinear upsampling is a convex combination of the map's values: a map whose maximum is not
        # above its threshold fires nowhere (the margin covers rounding). On a trained ReLU layer most
        # (image, map) pairs are such; only the others are upsampled.
        peak = act.amax(dim=(2, 3))
        image, channel = (peak + peak.abs() * 1e-5 > self.thresholds.view(1, -1)).nonzero(as_tuple=True)
        if len(image):
            up = F.interpolate(act[image, channel].unsqueeze(1), size=(H, W), mode="bilinear", align_corners=False)
            fired = (up.reshape(len(image), H * W) > self.thresholds[channel].view(-1, 1)).float()
            fired_count[image, channel] = fired.sum(dim=1)
            for b in torch.unique(image).tolist():
                rows = (image == b).nonzero(as_tuple=True)[0]
                inter[b][:, channel[rows]] = m[b] @ fired[rows].t()
        self._inter.append(inter.numpy())
        self._fired.append(fired_count.numpy())
        self._area.append(m.sum(dim=2).numpy())

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (np.concatenate(self._inter).astype(np.float64), np.concatenate(self._fired).astype(np.float64),
                np.concatenate(self._area).astype(np.float64))


def iou_from_counts(inter, fired, area, weights) -> tuple[np.ndarray, np.ndarray]:
    """(IoU, inside share), each (B, C), of one AU's counts inter (N, C), area (N,) for weights (B, N)."""
    weights = np.asarray(weights, dtype=np.float64)
    num = weights @ inter
    union = weights @ fired + (weights @ area)[:, None] - num
    fired_total = weights @ fired
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, num / union, 0.0), np.where(fired_total > 0, num / fired_total, np.nan)


def iou_scores(counts, presence) -> dict:
    """IoU (A, C), inside share (A, C) and area share (A,) on AU-present images."""
    inter, fired, area = counts
    presence = np.asarray(presence).astype(bool)
    ious, shares, areas = [], [], []
    for a in range(presence.shape[1]):
        w = presence[None, :, a].astype(np.float64)
        iou, share = iou_from_counts(inter[:, a], fired, area[:, a], w)
        ious.append(iou[0])
        shares.append(share[0])
        areas.append(float(area[presence[:, a], a].sum()))
    return {"iou": np.array(ious), "inside_share": np.array(shares), "mask_pixels": np.array(areas)}


def stream_layer(model, layer, fetch, n: int, batch_size: int = 64):
    """Yield the named layer's output (B, C, h, w) for consecutive batches `fetch(start, stop)` of n rows."""
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            yield layer_output(model, layer, fetch(start, min(n, start + batch_size)))


# ---------------------------------------------------------------- sparse probe


def standardize(X, mean=None, std=None):
    X = np.asarray(X, dtype=np.float64)
    mean = X.mean(axis=0) if mean is None else mean
    std = X.std(axis=0) if std is None else std
    std = np.where(std > 0, std, 1.0)
    return (X - mean) / std, mean, std


def probe_step(X) -> float:
    """FISTA's step for the logistic loss on X (N, C) with an intercept: 1 / its Lipschitz constant."""
    Xb = np.hstack([np.asarray(X, dtype=np.float64), np.ones((len(X), 1))])
    return 1.0 / (0.25 * np.linalg.eigvalsh(Xb.T @ Xb)[-1] / len(X) + 1e-12)


def fit_l1_logistic(X, Y, l1: float = PROBE_L1, iterations: int = 300, tol: float = 1e-5, step: float | None = None):
    """Minimise mean logistic loss + l1·|w|_1 for every column of Y (N, K) at once (FISTA).

    X (N, C) (standardize it first); intercepts are not penalised; `step`: `probe_step(X)`, when
    already known. Returns (W (C, K), b (K,)).
    """
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    N, C = X.shape
    Xb = np.hstack([X, np.ones((N, 1))])
    step = probe_step(X) if step is None else step
    theta = np.zeros((C + 1, Y.shape[1]))
    z, t = theta.copy(), 1.0
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(Xb @ z)))
        new = z - step * (Xb.T @ (p - Y)) / N
        new[:C] = np.sign(new[:C]) * np.maximum(np.abs(new[:C]) - step * l1, 0.0)
        t_next = (1 + np.sqrt(1 + 4 * t * t)) / 2
        z = new + ((t - 1) / t_next) * (new - theta)
        change = np.abs(new - theta).max()
        theta, t = new, t_next
        if change < tol:
            break
    return theta[:C], theta[C]


def l1_logistic_objective(X, y, w, b, l1: float) -> float:
    margin = (np.asarray(X) @ w + b)
    loss = np.logaddexp(0.0, margin) - np.asarray(y) * margin
    return float(loss.mean() + l1 * np.abs(w).sum())


def subject_folds(subject, folds: int, seed: int) -> np.ndarray:
    """(N,) fold of each row: subjects dealt to `folds` folds in a seeded random order."""
    names, index = np.unique(np.asarray(subject).astype(str), return_inverse=True)
    order = np.random.default_rng([seed, 7]).permutation(len(names))
    fold_of_subject = np.empty(len(names), dtype=np.int64)
    fold_of_subject[order] = np.arange(len(names)) % folds
    return fold_of_subject[index]


def probe_scores(maxima, presence, subject, folds: int = 5, l1: float = PROBE_L1, seed: int = 0) -> dict:
    """Full-data probe coefficients (A, C) and subject-grouped cross-validated AUROC (A,)."""
    X, _, _ = standardize(maxima)
    Y = np.asarray(presence).astype(np.float64)
    W, b = fit_l1_logistic(X, Y, l1)
    fold = subject_folds(subject, folds, seed)
    held = np.zeros_like(Y)
    for f in range(folds):
        test = fold == f
        if not test.any() or test.all():
            continue
        Xtr, mean, std = standardize(np.asarray(maxima)[~test])
        Wf, bf = fit_l1_logistic(Xtr, Y[~test], l1)
        held[test] = standardize(np.asarray(maxima)[test], mean, std)[0] @ Wf + bf
    cv = np.array([stats.auroc(held[:, [a]], Y[:, a].astype(bool))[0] for a in range(Y.shape[1])])
    return {"coef": W.T, "intercept": b, "cv_auroc": cv, "l1": l1, "folds": folds}


# ---------------------------------------------------------------- permutation null


class SharedMaxima:
    """A layer's per-image maxima prepared once for all AUs, their scores and permutation nulls:
    each map's sorted maxima (`RankedMaps`, with the layer's floor and ε), their column ranks, the
    standardized maxima and the probe's step."""

    def __init__(self, maxima):
        maxima = np.asarray(maxima, dtype=np.float64)
        self.ranked = RankedMaps(maxima)
        self.ranks = rankdata(maxima, axis=0)
        self.X = standardize(maxima)[0]
        self._step = None

    @property
    def step(self) -> float:
        if self._step is None:
            self._step = probe_step(self.X)
        return self._step

    def distance_scores(self, presence, n: int = 9) -> tuple[np.ndarray, np.ndarray]:
        """As `distance_scores`, from the shared sorted maxima."""
        return _distances(self.ranked, _inside(presence), n, self.ranked.epsilon)

    def auroc_scores(self, presence) -> np.ndarray:
        """As `auroc_scores`, from the shared ranks."""
        return _auroc_from_ranks(self.ranks, np.asarray(presence).astype(bool).T)

    def partial_scores(self, presence) -> np.ndarray:
        """As `partial_scores`, on the standardized maxima."""
        return partial_scores(self.X, presence)


def permutation_null(maxima, presence, sequence, frame, au_index: int, perms: np.ndarray, n: int = 9,
                     iou_counts=None, probe_permutations: int = 0, l1: float = PROBE_L1,
                     inputs: SharedMaxima | None = None) -> dict:
    """Per method, the (P,) maximum over maps of its score under sequence-level permutations of one AU.

    perms (P, S) permute the sequences (as `aumap.au_statistics`); `partial` holds the other AUs'
    presence as it is; the probe is refitted on the first `probe_permutations` of them only (one
    fit per permutation, all at once). `inputs`: the layer's `SharedMaxima`, shared across AUs.
    """
    inputs = inputs or SharedMaxima(maxima)
    present_all = np.asarray(presence).astype(bool)
    seq_index, seq_aus, carrier = sequence_structure(sequence, present_all, frame)
    labels = permuted_labels(seq_aus[:, au_index], seq_index, carrier, perms)
    paper, directional = _distances(inputs.ranked, labels.astype(np.int64), n, inputs.ranked.epsilon)
    null = {"distance": paper.max(axis=1), "directional": directional.max(axis=1),
            "auroc": np.nan_to_num(_auroc_from_ranks(inputs.ranks, labels), nan=0.5).max(axis=1),
            "partial": np.nan_to_num(partial_effect(inputs.X, present_all, au_index, labels), nan=-np.inf).max(axis=1)}
    if iou_counts is not None:
        inter, fired, area = iou_counts
        null["iou"] = iou_from_counts(inter[:, au_index], fired, area[:, au_index], labels)[0].max(axis=1)
    if probe_permutations:
        W, _ = fit_l1_logistic(inputs.X, labels[:probe_permutations].T, l1, step=inputs.step)
        null["probe"] = W.max(axis=0)
    return null


def family_p(observed_max: float, null_max) -> float:
    """(1 + #{null ≥ observed}) / (1 + P); NaN without a null."""
    null_max = np.asarray(null_max, dtype=np.float64)
    if null_max.size == 0:
        return float("nan")
    return float(stats.permutation_pvalues(observed_max, null_max))


# ---------------------------------------------------------------- causal check


def after_layer(model, layer):
    """The part of `model` after `layer` as a module taking the layer's output (a `torch.fx`
    graph cut there), or None where fx cannot trace the model, the layer runs more than once, or
    anything else computed before it is used after it (a skip connection across the cut)."""
    name = resolve_layer(model, layer)
    try:
        traced = torch.fx.symbolic_trace(model)
    except Exception:  # a forward fx cannot trace: no cut, the caller runs the whole model
        return None
    nodes = list(traced.graph.nodes)
    at = [i for i, node in enumerate(nodes) if node.op == "call_module" and node.target == name]
    if len(at) != 1:
        return None
    before, cut = set(nodes[:at[0] + 1]), nodes[at[0]]
    after = nodes[at[0] + 1:]
    if any(arg in before and arg is not cut for node in after for arg in node.all_input_nodes):
        return None
    graph = torch.fx.Graph()
    env = {cut: graph.placeholder("activation")}
    for node in after:
        env[node] = graph.node_copy(node, lambda arg: env[arg])
    return torch.fx.GraphModule(traced, graph)


def ablation_drops(model, layer, x: torch.Tensor, maps, batch_maps: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Zero each map of `maps` at `layer` and measure the emotion logit drop.

    For each map: per image, the intact network's top logit minus the ablated network's logit
    of that same class. Returns (drops (M, B), intact top classes (B,)). Maps are ablated
    `batch_maps` at a time on replicas of the batch. The network before the layer runs once
    (`after_layer` runs the rest on ablated copies); where the model cannot be cut there, the
    whole model runs with a forward hook zeroing the map.
    """
    name = resolve_layer(model, layer)
    module = get_module(model, name)
    maps = [int(m) for m in maps]
    suffix = after_layer(model, name)
    with torch.inference_mode():
        if suffix is not None:
            act = layer_output(model, name, x)
            intact = suffix(act.clone())  # the rest may work in place
        else:
            intact = model(x)
    top = intact.argmax(dim=1)
    base = intact.gather(1, top[:, None])[:, 0]
    B = len(x)
    drops = np.zeros((len(maps), B))
    for s in range(0, len(maps), batch_maps):
        chunk = maps[s:s + batch_maps]
        channel = torch.tensor(chunk).repeat_interleave(B)

        def zero_(output, channel=channel):
            output[torch.arange(len(channel)), channel] = 0
            return output

        with torch.inference_mode():
            if suffix is not None:  # the replicas are a new tensor: zeroed in place
                logits = suffix(zero_(act.repeat(len(chunk), *([1] * (act.dim() - 1)))))
            else:
                handle = module.register_forward_hook(lambda _module, _inputs, output: zero_(output.clone()))
                try:
                    logits = model(x.repeat(len(chunk), *([1] * (x.dim() - 1))))
                finally:
                    handle.remove()
        after = logits.gather(1, top.repeat(len(chunk))[:, None])[:, 0]
        drops[s:s + len(chunk)] = (base.repeat(len(chunk)) - after).reshape(len(chunk), B).numpy()
    return drops, top.numpy()
