"""Which conv map detects an action unit: the paper's distance, its permutation null, and checks.

Zhu, Fan & Yuan (2019, eqs. 8–15; REFERENCE §1): for AU j and map i, S = images with the AU,
S^c = images without it, R_1 ≥ … ≥ R_n and Q_1 ≥ … ≥ Q_n the n largest per-image maxima of
map i over S and S^c, and

    D_ij = Σ_k (R_k − Q_k) · log((R_k + ε) / (Q_k + ε)).

ε (not in the paper; ReLU maxima are often exactly 0) is `EPSILON_FRACTION` times the median
of the layer's positive per-image maxima: it scales with the layer, so D is unit-free up to a
factor (D(λR, λQ; λε) = λ D(R, Q; ε)), it caps the log-ratio of a zero against a typical
activation at log(1 + 1/0.01) ≈ 4.6, every term stays ≥ 0, and an all-zero map against an
all-zero map gives exactly 0. When a set has fewer than n images, only the first
min(n, |S|, |S^c|) pairs are summed. Maps are numbered from 0. The logs need activations ≥ 0 (a
ReLU's output, as in the paper); signed maxima (a layer before its ReLU, the rotated control's
mixed maps) are measured from the layer's minimum (`RankedMaps` applies `from_floor`), recorded
as `distance_floor`.

Beyond the paper (`au_statistics`): a sequence-level permutation null (family-wise p for the
best map, per-map p with Benjamini–Hochberg q), AUROC of every map over all images, the AU
co-occurrence table and the best map re-scored with the most co-occurring AU held out, and the
winner's stability over subject bootstraps. `run_au_map` adds deconvolution localization
(read from the deconvolution step's file when it holds the maps, else computed), writes
``RUN/aumap/`` and draws the paper-style figures.

Per-frame AU labels (DISFA, BP4D, OpenFace / py-feat: AUs come and go within a sequence) get
a different null unit, `circular_sources`: each sequence's label track is shifted circularly
against its frames. Per-frame labels are strongly autocorrelated (an AU stays on for dozens of
frames), so permuting frames would make a null that is far too narrow; whole tracks cannot
move between sequences of different lengths; a circular shift keeps each track's
autocorrelation, its AU base rate and its co-occurrences, and breaks only the frame-to-label
alignment. It also keeps every sequence's (subject's) share of the AU, so a map that merely
recognizes who is filmed is not significant. Frames whose AU is UNKNOWN (BP4D's 9) are in
neither set; their unknown status shifts with the track.
"""

from __future__ import annotations

import csv
import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from interpret import stats
from interpret.errors import InterpretError
from interpret.facs import au_name, parse_au_list, region_mask
from interpret.io import atomic_path, sha256_file, write_json, write_text

log = logging.getLogger(__name__)

#: ε = EPSILON_FRACTION × median positive per-image maximum of the layer.
EPSILON_FRACTION = 0.01
#: Bytes of one working array: sets are scored, drawn and sorted in batches of about this size
#: ((batch, N) int64, (batch, C, depth) uint8), which bounds the work memory to tens of MB.
_BUDGET = 1 << 22


def _batches(total: int, width: int) -> list[tuple[int, int]]:
    """(start, count) covering range(total) in batches whose (count, width) int64 arrays hold _BUDGET bytes."""
    step = max(1, _BUDGET // (8 * max(1, width)))
    return [(s, min(step, total - s)) for s in range(0, total, step)]


def epsilon_for(maxima) -> float:
    """The ε of a layer: 1% of the median of its positive per-image maxima (1.0 if none).

    The median is taken in float64 whatever the maxima's dtype (float32 from the cache gives
    the same ε as its float64 copy)."""
    maxima = np.asarray(maxima)
    positive = maxima[maxima > 0]
    if not positive.size:
        return 1.0
    middle = sorted({(positive.size - 1) // 2, positive.size // 2})
    positive.partition(middle)
    return EPSILON_FRACTION * float(np.median(positive[middle].astype(np.float64)))


def from_floor(maxima) -> tuple[np.ndarray, float]:
    """(maxima the distance can take logs of, the floor subtracted): non-negative maxima as given
    (floor 0.0); signed ones minus the layer's minimum, which becomes 0."""
    maxima = np.asarray(maxima)
    floor = float(maxima.min()) if maxima.size else 0.0
    if floor >= 0:
        return maxima, 0.0
    return maxima - maxima.dtype.type(floor), floor


def pair_distance(top_in, top_out, epsilon: float) -> np.ndarray:
    """Σ_k (R_k − Q_k) log((R_k + ε)/(Q_k + ε)) over the last axis; NaN (missing) pairs are skipped."""
    terms = (top_in - top_out) * (np.log(top_in + epsilon) - np.log(top_out + epsilon))
    return np.nansum(terms, axis=-1)


class RankedMaps:
    """Each map's per-image maxima sorted once (descending); sets are then read off that order.

    `distances` scores many sets at once (a batch of permuted or bootstrap-weighted labels)
    by looking only at the first M positions of each map's order (deeper where a set's top n
    lies deeper); a set with few members (a rare AU's images) is read off its members' maxima
    instead. Holds `order` (C, N) int32 and `values` (C, N) in the maxima's
    float32 (as cached) or else float64: 8 bytes per entry for float32 maxima, beside the
    maxima themselves (kept by reference, not copied); what is read off is float64, equal to
    the float64 maxima's. Signed maxima are held from the layer's floor (`from_floor`; `floor`
    records what was subtracted), so that the distance's logs are defined; `epsilon` is the
    layer's ε (`epsilon_for`) of what is held.
    """

    def __init__(self, maxima):
        maxima = np.asarray(maxima)
        if maxima.ndim != 2:
            raise ValueError(f"maxima must be (N, C), got {maxima.shape}")
        if maxima.dtype != np.float32:
            maxima = np.asarray(maxima, dtype=np.float64)
        maxima, self.floor = from_floor(maxima)
        self.maxima = maxima  # a reference (non-negative maxima): small sets read their members' values off it
        self.n_images, self.n_maps = maxima.shape
        self.order = np.empty((self.n_maps, self.n_images), np.int32 if self.n_images < 2**31 else np.int64)
        self.values = np.empty((self.n_maps, self.n_images), maxima.dtype)
        for s, count in _batches(self.n_maps, self.n_images):  # a block of maps at a time
            block = maxima[:, s:s + count].T
            order = np.argsort(-block, axis=1, kind="stable")
            self.order[s:s + count] = order
            self.values[s:s + count] = np.take_along_axis(block, order, axis=1)

    @functools.cached_property
    def epsilon(self) -> float:
        return epsilon_for(self.maxima)

    def top(self, weights, n: int) -> np.ndarray:
        """(B, C, n) n largest members per map of the weighted sets `weights` (B, N) ints; NaN-padded.

        A set reads the first M ≈ 2n / (smallest set share) positions of each map's order, and a
        (set, map) whose top n lies deeper reads on, twice as deep each time; a set with at most
        2M members (copies counted) is read off its members' maxima instead (a partition of its
        members against a gather of M positions and a cumulative sum: same numbers, less work).
        """
        weights = np.asarray(weights)
        weights = weights.astype(np.uint8 if weights.max(initial=0) < 256 else np.int32)
        B, N = weights.shape
        if N == 0:
            return np.full((B, self.n_maps, n), np.nan)
        sizes = weights.sum(axis=1, dtype=np.int64)
        need = np.minimum(sizes, n)
        out = np.empty((B, self.n_maps, n))
        share = weights.astype(bool).mean(axis=1)
        floor = share[share > 0].min() if (share > 0).any() else 1.0
        depth = min(N, int(np.ceil(2 * n / floor)) + n)
        small = (sizes <= 2 * depth) | (depth == N)
        if small.any():
            out[small] = self._top_of_members(weights, n, np.flatnonzero(small))
        todo = np.flatnonzero(~small)
        step = max(1, _BUDGET // (self.n_maps * depth))
        for s in range(0, todo.size, step):
            rows = todo[s:s + step]
            gathered = weights[rows][:, self.order[:, :depth]]
            out[rows], found = stats.top_n_weighted(self.values[:, :depth], gathered, n)
            short_set, short_map = np.nonzero(found < need[rows, None])
            if short_set.size:
                out[rows[short_set], short_map] = self._top_deeper(weights, n, rows[short_set], short_map,
                                                                   need[rows[short_set]], 2 * depth)
        return out

    def _top_deeper(self, weights, n: int, sets, maps, need, depth: int) -> np.ndarray:
        """(P, n) the top n of (set, map) pairs whose top n lies deeper than the positions read:
        each pair reads its map's order `depth` deep, and twice as deep again while still short."""
        out = np.empty((len(sets), n))
        todo = np.arange(len(sets))
        while todo.size:
            depth = min(self.n_images, depth)
            step = max(1, _BUDGET // (8 * depth))
            short = []
            for s in range(0, todo.size, step):
                pairs = todo[s:s + step]
                gathered = weights[sets[pairs, None], self.order[maps[pairs], :depth]]  # (p, depth)
                top, found = stats.top_n_weighted(self.values[maps[pairs], :depth], gathered[None], n)
                ok = (found[0] >= need[pairs]) | (depth == self.n_images)
                out[pairs[ok]] = top[0, ok]
                short.append(pairs[~ok])
            todo = np.concatenate(short)
            depth *= 2
        return out

    def _top_of_members(self, weights, n: int, sets) -> np.ndarray:
        """(len(sets), C, n) the top n of the sets `weights[sets]` read off their members' maxima
        (copies repeated), partitioned and sorted; NaN-padded."""
        sizes = weights[sets].sum(axis=1, dtype=np.int64)
        width = max(int(sizes.max(initial=0)), n)
        out = np.empty((len(sets), self.n_maps, n))
        step = max(1, _BUDGET // (self.maxima.itemsize * width * self.n_maps))
        for s in range(0, len(sets), step):
            members, real = _members(weights[sets[s:s + step]], width)
            gathered = self.maxima[members]  # (b, width, C)
            gathered[~real] = -np.inf
            top = np.partition(gathered, width - n, axis=1)[:, width - n:] if width > n else gathered
            out[s:s + step] = np.sort(top, axis=1)[:, ::-1].transpose(0, 2, 1)
        out[np.isneginf(out)] = np.nan
        return out

    def distances(self, inside, outside, n: int, epsilon: float) -> np.ndarray:
        """(B, C) paper distance of each map for B pairs of weighted sets (B, N) each."""
        return pair_distance(self.top(inside, n), self.top(outside, n), epsilon)

    def auroc(self, labels, rows) -> np.ndarray:
        """(C,) `stats.auroc` of every map over the images `rows` (N,) bool for `labels` (N,) bool,
        read off the stored order (no sort); equal to it, the rank sums being exact in float64."""
        labels, rows = np.asarray(labels, dtype=bool), np.asarray(rows, dtype=bool)
        m, n_pos = int(rows.sum()), int((labels & rows).sum())
        n_neg = m - n_pos
        if n_pos == 0 or n_neg == 0:
            return np.full(self.n_maps, np.nan)
        sums = np.empty(self.n_maps)
        for s, count in _batches(self.n_maps, self.n_images):
            order = self.order[s:s + count]
            keep = rows[order]
            sums[s:s + count] = _rank_sums(self.values[s:s + count][keep].reshape(count, m),
                                           labels[order][keep].reshape(count, m))
        return (sums - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def _members(weights, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(B, width) the members of each weighted set (B, N), one entry per copy, and which entries
    are real (the rest pad the row with member 0)."""
    rows, cols = np.nonzero(weights)
    copies = weights[rows, cols].astype(np.int64)
    rows, cols = np.repeat(rows, copies), np.repeat(cols, copies)
    sizes = np.bincount(rows, minlength=len(weights))
    slots = np.arange(len(rows)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    members = np.zeros((len(weights), width), dtype=np.int64)
    real = np.zeros((len(weights), width), dtype=bool)
    members[rows, slots] = cols
    real[rows, slots] = True
    return members, real


def _rank_sums(values, positive) -> np.ndarray:
    """(B,) sum over `positive` (B, m) bool of the ascending average ranks (ties share theirs) of
    `values` (B, m), each row sorted descending. A tie run at positions lo..hi has rank m − (lo + hi)/2."""
    B, m = values.shape
    index = np.arange(m)
    first = np.ones((B, m), bool)
    first[:, 1:] = values[:, 1:] != values[:, :-1]
    last = np.ones((B, m), bool)
    last[:, :-1] = first[:, 1:]
    lo = np.maximum.accumulate(np.where(first, index, 0), axis=1)
    hi = np.minimum.accumulate(np.where(last, index, m)[:, ::-1], axis=1)[:, ::-1]
    return positive.sum(axis=1) * m - ((lo + hi) * positive).sum(axis=1) / 2


def au_distance(maxima, present, n: int = 9, epsilon: float | None = None) -> np.ndarray:
    """(C,) the paper's distance of every map for one AU presence vector (N,)."""
    ranked = RankedMaps(np.asarray(maxima, dtype=np.float64))
    inside = np.asarray(present, dtype=bool)[None].astype(np.int64)
    return ranked.distances(inside, 1 - inside, n, ranked.epsilon if epsilon is None else epsilon)[0]


def sequence_structure(sequence, aus, frame):
    """How AU labels attach to sequences, for the sequence-level permutation.

    Returns (seq_index (N,), seq_aus (S, A) bool: OR over each sequence's frames, carrier (N,)
    bool: frames that carry their sequence's AUs). Carriers are frames with any AU; in a
    sequence with none, every frame but its first (the neutral one in the paper's protocol),
    or its only frame. Assumes a sequence's labelled frames share one AU vector, as the CK+
    protocols give (every labelled frame carries the peak-frame AUs).
    """
    present = np.asarray(aus).astype(bool)
    frame = np.asarray(frame)
    _, seq_index = np.unique(np.asarray(sequence).astype(str), return_inverse=True)
    n_seq = int(seq_index.max()) + 1 if len(seq_index) else 0
    seq_aus = np.zeros((n_seq, present.shape[1]), dtype=bool)
    np.logical_or.at(seq_aus, seq_index, present)
    first = np.full(n_seq, np.iinfo(np.int64).max)
    np.minimum.at(first, seq_index, frame.astype(np.int64))
    sizes = np.bincount(seq_index, minlength=n_seq)
    unlabelled = ~seq_aus.any(axis=1)[seq_index]
    carrier = present.any(axis=1) | (unlabelled & ((frame != first[seq_index]) | (sizes[seq_index] == 1)))
    return seq_index, seq_aus, carrier


def permuted_labels(seq_labels, seq_index, carrier, perms) -> np.ndarray:
    """(P, N) uint8: sequence s's carrier frames get the label of sequence perms[p, s]."""
    return (np.asarray(seq_labels, dtype=bool)[perms][:, seq_index] & carrier).astype(np.uint8)


PERMUTATION_UNITS = {"sequence": "sequence", "circular": "circular shift within sequence"}


def circular_sources(seq_index, frame, shifts) -> np.ndarray:
    """(P, N) row whose label each row takes: within its sequence (rows ordered by frame), the
    label `shifts[p, s]` positions earlier, wrapping around. shifts (P, S) ints in [0, length)."""
    seq_index = np.asarray(seq_index)
    n = len(seq_index)
    order = np.lexsort((np.asarray(frame), seq_index))
    sizes = np.bincount(seq_index, minlength=np.asarray(shifts).shape[1])
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    pos = np.empty(n, dtype=np.int64)
    pos[order] = np.arange(n) - starts[seq_index[order]]
    length = sizes[seq_index]
    source_pos = (pos[None] - np.asarray(shifts)[:, seq_index]) % length
    return order[starts[seq_index] + source_pos]


def cooccurrence(aus) -> tuple[np.ndarray, np.ndarray]:
    """Image-level AU co-occurrence: counts (A, A) and P(column AU | row AU) (A, A)."""
    present = np.asarray(aus).astype(np.int64)
    counts = present.T @ present
    diag = np.diag(counts).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        conditional = np.where(diag[:, None] > 0, counts / diag[:, None], np.nan)
    return counts, conditional


def _rank_of(values, index) -> int:
    """1-based rank of values[index] (largest = 1)."""
    return int((np.asarray(values) > values[index]).sum()) + 1


def au_statistics(maxima, aus, au_codes, sequence, frame, subject, codes, n: int = 9,
                  permutations: int = 1000, bootstrap: int = 200, seed: int = 0,
                  layer: str | None = None, known=None, unit: str = "sequence") -> dict[str, dict]:
    """Distance, ranking, permutation null, AUROC, confound and stability for each AU in `codes`.

    Plain arrays: maxima (N, C) per-image maxima, aus (N, A) presence with columns `au_codes`,
    sequence / frame / subject (N,); `layer` is only recorded. `known` (N, A) bool, default
    all: frames whose AU is unknown are in neither set. `unit`: 'sequence' (labels of whole
    sequences permuted, the CK+ protocols) or 'circular' (per-frame labels shifted circularly
    within their sequence; see the module docstring). Each AU draws from its own seeded
    streams ([seed, AU]), so AU1 gives the same numbers alone or within `--au all`. Memory: the
    sorted maxima (`RankedMaps`) and batches of `_BUDGET` bytes, whatever the numbers of
    permutations and bootstraps.
    """
    if unit not in PERMUTATION_UNITS:
        raise InterpretError(f"permutation unit must be one of {', '.join(PERMUTATION_UNITS)}, got {unit!r}")
    known_all = np.ones(np.shape(aus), bool) if known is None else np.asarray(known, dtype=bool)
    present_all = np.asarray(aus).astype(bool) & known_all
    au_codes = [int(a) for a in au_codes]
    ranked = RankedMaps(maxima)
    eps = ranked.epsilon
    seq_index, seq_aus, carrier = sequence_structure(sequence, present_all, frame)
    _, subject_index = np.unique(np.asarray(subject).astype(str), return_inverse=True)
    counts, conditional = cooccurrence(present_all)
    union = np.diag(counts)[:, None] + np.diag(counts)[None, :] - counts
    with np.errstate(invalid="ignore", divide="ignore"):
        jaccard = np.where(union > 0, counts / union, 0.0)
    results = {}
    for code in codes:
        a = au_codes.index(int(code))
        present, known_a = present_all[:, a], known_all[:, a]
        absent = known_a & ~present
        n_present, n_absent = int(present.sum()), int(absent.sum())
        if n_present == 0 or n_absent == 0:
            raise InterpretError(f"{au_name(code)} is present in {n_present} of {n_present + n_absent} cached "
                                 "images with a known label; the distance needs images with and without it")
        inside = present[None].astype(np.int64)
        top_in, top_out = ranked.top(inside, n)[0], ranked.top(absent[None].astype(np.int64), n)[0]
        distance = pair_distance(top_in, top_out, eps)
        higher = np.nansum(top_in - top_out, axis=-1) > 0  # D is blind to the direction
        best = int(np.argmax(distance))
        order = np.argsort(-distance, kind="stable")

        # permutations and bootstraps are drawn batch by batch: the same streams as one (P, S) draw
        rng_perm = np.random.default_rng([seed, int(code), 0])
        sizes = np.bincount(seq_index, minlength=len(seq_aus))
        null = np.empty((permutations, ranked.n_maps))
        for s, count in _batches(permutations, len(present)):
            if unit == "sequence":
                perms = stats.permutations(len(seq_aus), count, rng_perm)
                labels = permuted_labels(seq_aus[:, a], seq_index, carrier, perms)
                outside = known_a & (labels == 0)
            else:
                shifts = (rng_perm.random((count, len(seq_aus))) * sizes).astype(np.int64)
                source = circular_sources(seq_index, frame, shifts)
                labels, outside = present[source], absent[source]
            null[s:s + count] = ranked.distances(labels.astype(np.uint8), outside.astype(np.uint8), n, eps)
        null_max = null.max(axis=1) if permutations else np.zeros(0)
        p_map = stats.permutation_pvalues(distance, null)
        p_family = float(stats.permutation_pvalues(distance[best], null_max))

        auroc = ranked.auroc(present, known_a)

        rng_boot = np.random.default_rng([seed, int(code), 1])
        boot = np.empty((bootstrap, ranked.n_maps))
        for s, count in _batches(bootstrap, len(present)):
            weights = stats.cluster_bootstrap_weights(subject_index, count, rng_boot)
            boot[s:s + count] = ranked.distances(weights * present, weights * absent, n, eps)
        winners = np.bincount(boot.argmax(axis=1), minlength=ranked.n_maps) if bootstrap else None

        others = [b for b in range(len(au_codes)) if b != a and counts[a, b] > 0]
        others.sort(key=lambda b: (-jaccard[a, b], -counts[a, b]))
        held = _held_out(ranked, present_all, au_codes, a, others, best, n, eps, known_all)

        results[au_name(code)] = {
            "au": au_name(code),
            "au_code": int(code),
            "layer": layer,
            "n": int(n),
            "epsilon": eps,
            "epsilon_rule": f"{EPSILON_FRACTION} x median positive per-image maximum of the layer",
            "distance_floor": ranked.floor,
            "n_present": n_present,
            "n_absent": n_absent,
            "n_unknown": int((~known_a).sum()),
            "n_sequences_present": int(seq_aus[:, a].sum()),
            "n_sequences": int(len(seq_aus)),
            "distance": distance.tolist(),
            "best_map": best,
            "best_direction": "higher with the AU" if higher[best] else "lower with the AU",
            "ranking": [{"map": int(i), "distance": float(distance[i])} for i in order[:10]],
            "permutations": int(permutations),
            "permutation_unit": PERMUTATION_UNITS[unit],
            "p_family": p_family,
            "null_max_95": float(np.quantile(null_max, 0.95)) if permutations else None,
            "p_map": p_map.tolist(),
            "q_map": stats.benjamini_hochberg(p_map).tolist(),
            "auroc": auroc.tolist(),
            "best_auroc": float(auroc[best]),
            "auroc_map": int(np.argmax(auroc)),
            "auroc_map_auroc": float(auroc.max()),
            "auroc_map_distance_rank": _rank_of(distance, int(np.argmax(auroc))),
            "cooccurrence": {
                "counts": {au_name(au_codes[b]): int(counts[a, b]) for b in others},
                "p_other_given_au": {au_name(au_codes[b]): float(conditional[a, b]) for b in others},
                "jaccard": {au_name(au_codes[b]): float(jaccard[a, b]) for b in others},
            },
            **held,
            "bootstrap": int(bootstrap),
            "stability": float(winners[best] / bootstrap) if bootstrap else None,
            "stability_winners": ([{"map": int(i), "share": float(winners[i] / bootstrap)}
                                   for i in np.argsort(-winners, kind="stable")[:5] if winners[i]]
                                  if bootstrap else []),
            "seed": int(seed),
        }
    return results


def _held_out(ranked, present_all, au_codes, a, others, best, n, eps, known_all) -> dict:
    """The best map re-scored without the most co-occurring AU B (by Jaccard), and B without this AU.

    B is the first of `others` that leaves at least n images on each side (images with B
    dropped from S and S^c); "B without this AU" is reported where it too has n a side. Only
    images where both AUs are known take part.
    """
    for b in others:
        both = known_all[:, a] & known_all[:, b]
        A = present_all[:, a] | ~both  # rows not known for both AUs fall in none of the sets below
        B = present_all[:, b] | ~both
        if min(int((A & ~B).sum()), int((~A & ~B).sum())) < n:
            continue
        sides = [(A & ~B, ~A & ~B)]
        reverse = min(int((B & ~A).sum()), int((~B & ~A).sum())) >= n
        if reverse:
            sides.append((B & ~A, ~B & ~A))
        inside = np.stack([s[0] for s in sides]).astype(np.int64)
        outside = np.stack([s[1] for s in sides]).astype(np.int64)
        scores = ranked.distances(inside, outside, n, eps)
        held = scores[0]
        return {
            "held_out_au": int(au_codes[b]),
            "distance_held_out": float(held[best]),
            "rank_held_out": _rank_of(held, best),
            "best_map_held_out": int(np.argmax(held)),
            "other_au_without_this": ({"distance": float(scores[1][best]), "rank": _rank_of(scores[1], best),
                                       "best_map": int(np.argmax(scores[1]))} if reverse else None),
        }
    return {"held_out_au": None, "distance_held_out": None, "rank_held_out": None,
            "best_map_held_out": None, "other_au_without_this": None}


def input_frame(image: np.ndarray, size: int, resize: int | None = None) -> np.ndarray:
    """A face-crop-sized 2-D array in network-input coordinates, as `transforms.evaluate` maps
    the face: area-resized to `resize` (if given and different), then its centre size x size."""
    if resize is not None and resize != image.shape[-1]:
        import torch
        import torch.nn.functional as F

        tensor = torch.as_tensor(np.asarray(image, dtype=np.float32))[None, None]
        image = F.interpolate(tensor, size=(resize, resize), mode="area")[0, 0].numpy()
    o = (image.shape[-1] - size) // 2
    return np.asarray(image)[o:o + size, o:o + size]


def localization(projection, image_index, rf_box, landmarks, au: int, crop_size: int,
                 resize: int | None = None) -> dict:
    """How much of a map's deconvolution energy falls in the AU's region, against area.

    projection (k, H, W) of images `image_index` (k,) in network-input coordinates (`input_frame`
    of the crop_size² crop, whose `landmarks` (N, 68, 2) are given); rf_box (k, 4) (top,
    left, bottom, right), bottom/right exclusive. energy_share = Σ|P|·mask / Σ|P| over all k;
    area_share = each image's mask area fraction weighted by its energy the same way; ratio =
    energy_share / area_share; rf_share = Σ |box ∩ mask| / Σ |box|. Undefined shares (no
    energy, empty boxes) are None.
    """
    projection = np.abs(np.asarray(projection, dtype=np.float64))
    k, H, W = projection.shape
    masks = np.stack([input_frame(region_mask(landmarks[int(i)], au, (crop_size, crop_size)).astype(np.float64),
                                  H, resize) >= 0.5 for i in np.asarray(image_index)])
    energy = projection.sum(axis=(1, 2))
    total = energy.sum()
    area = masks.mean(axis=(1, 2))
    energy_share = float((projection * masks).sum() / total) if total > 0 else None
    area_share = float((energy * area).sum() / total) if total > 0 else float(area.mean())
    box_in = box_area = 0
    for mask, (top, left, bottom, right) in zip(masks, np.asarray(rf_box, dtype=np.int64)):
        top, left = max(top, 0), max(left, 0)
        bottom, right = min(bottom, H), min(right, W)
        box_in += int(mask[top:bottom, left:right].sum())
        box_area += max(0, bottom - top) * max(0, right - left)
    return {
        "energy_share": energy_share,
        "area_share": area_share,
        "ratio": energy_share / area_share if energy_share is not None and area_share > 0 else None,
        "rf_share": box_in / box_area if box_area else None,
        "k": int(k),
    }


@dataclass(frozen=True)
class AuMapResult:
    """What `run_au_map` wrote: the folder, the layer, the JSON dict of each AU."""

    folder: Path
    layer: str
    results: dict[str, dict]


def run_au_map(run, *, layer=None, aus="all", n: int = 9, k: int = 9, permutations: int = 1000,
               bootstrap: int = 200, seed: int = 0) -> AuMapResult:
    """`interpret au-map`: score every map of `layer` for each AU in `aus`, write ``RUN/aumap/``.

    `n`: the top-n activations per set in the distance; `k`: the top-k deconvolutions of a map
    its localization uses. With 'all', AUs present in no cached image (or in every one) are
    skipped with a warning; naming such an AU is an error. Writes ``AUxx.json``,
    ``AUxx_distance.png``, ``AUxx_best.png`` per AU, merges the AUs into ``distances.csv`` and
    writes the image-level ``cooccurrence.csv``.
    """
    cache = _load_cache(run, layer)
    if len(cache["au_codes"]) == 0:
        raise InterpretError(f"{run.path}: the run's data has no AU labels (its images carry emotion labels "
                             "only); au-map needs AU-labelled data such as CK+ or the synthetic faces")
    known, unit, label_options = _label_structure(run.dataset.faceset, cache)
    layer = cache["layer"]
    text = aus if isinstance(aus, str) else ",".join(str(a) for a in aus)
    codes = parse_au_list(text, cache["au_codes"])
    if text.strip().lower() == "all":
        present = np.asarray(cache["aus"]).astype(bool) & known
        with_au = dict(zip(cache["au_codes"].tolist(), present.sum(axis=0).tolist()))
        without = dict(zip(cache["au_codes"].tolist(), (known & ~present).sum(axis=0).tolist()))
        usable = [c for c in codes if with_au[c] > 0 and without[c] > 0]
        if len(usable) < len(codes):
            log.warning("au-map: skipping %s (present in no cached image or in all of them)",
                        ", ".join(au_name(c) for c in codes if c not in usable))
        if not usable:
            raise InterpretError(f"{run.path}: no AU is present in some but not all cached images")
        codes = usable
    faceset = run.dataset.faceset
    if len(faceset.images) != len(cache["max"]):
        raise InterpretError(f"{run.path}: activation cache has {len(cache['max'])} images, the run's "
                             f"data {len(faceset.images)}; rebuild the cache")
    # popped: the maxima are freed before the deconvolution reads the cache again
    results = au_statistics(cache.pop("max"), cache["aus"], cache["au_codes"], cache["sequence"],
                            cache["frame"], cache["subject"], codes, n=n, permutations=permutations,
                            bootstrap=bootstrap, seed=seed, layer=layer, known=known, unit=unit)
    model_file = Path(run.path) / "model.pt"
    model_sha256 = sha256_file(model_file) if model_file.is_file() else None
    for res in results.values():
        res["labels"] = label_options
        res["model_sha256"] = model_sha256  # the report refuses results of another model
    out = Path(run.path) / "aumap"
    maps = {res[key] for res in results.values() for key in ("best_map", "auroc_map")}
    deconvs = _deconvolve(run, layer, sorted(maps), k)
    resize = run.dataset.spec.resize
    for name, res in results.items():
        deconv = deconvs[res["best_map"]]
        res["localization"] = _localize(deconv, faceset, res["au_code"], resize)
        res["auroc_map_localization"] = _localize(deconvs[res["auroc_map"]], faceset, res["au_code"], resize)
        write_json(out / f"{name}.json", res)
        plot_distance(out / f"{name}_distance.png", res)
        plot_best(out / f"{name}_best.png", res, deconv, faceset, resize)
    write_distances(out / "distances.csv", results.values())
    write_cooccurrence(out / "cooccurrence.csv", cache["aus"], cache["au_codes"])
    return AuMapResult(folder=out, layer=layer, results=results)


def _label_structure(faceset, cache) -> tuple[np.ndarray, str, dict]:
    """(known (N, A) per cached AU column, permutation unit, the reader's label options).

    Per-frame AU sources (`interpret.data.PER_FRAME_AU`) get the circular unit; the rest
    (CK+, synthetic) the sequence unit.
    """
    from interpret.data import PER_FRAME_AU
    from interpret.data.faceset import UNKNOWN

    aus = np.asarray(cache["aus"])
    intensity = getattr(faceset, "au_intensity", None)
    if intensity is None:  # a bare dataset without per-AU labels: every cached label is known
        return np.ones(aus.shape, bool), "sequence", {}
    if intensity.shape != aus.shape or list(faceset.au_codes) != list(cache["au_codes"]):
        raise InterpretError("the activation cache does not match the run's data (rows or AU columns); "
                             "rebuild the cache")
    unit = "circular" if faceset.source in PER_FRAME_AU else "sequence"
    return intensity != UNKNOWN, unit, dict(faceset.label_options)


def _load_cache(run, layer) -> dict:
    """The arrays of the run's activation cache (`interpret.cache.open_cache`, built if missing)
    and the resolved `layer` name."""
    from interpret.cache import open_cache

    cache = open_cache(run, layer)
    names = ("max", "aus", "au_codes", "subject", "sequence", "frame")
    return {"layer": cache.layer, **{name: np.asarray(getattr(cache, name)) for name in names}}


def _deconvolve(run, layer: str, maps: list[int], k: int) -> dict[int, dict]:
    """Top-k deconvolutions of each map, by map: read from ``RUN/deconv/<layer>.h5`` when the
    deconvolution step made it from this model and it holds them, else one
    `interpret.deconv.deconvolve_top` call."""
    from interpret.deconv import deconvolve_top, read_deconv

    stored = read_deconv(run, layer, maps, k)
    if stored is not None:
        return stored
    result = deconvolve_top(run, layer, k, maps=maps)
    keys = ("projection", "image_index", "rf_box")
    return {int(m): {key: np.asarray(result[key])[i] for key in keys} for i, m in enumerate(result["maps"])}


def _localize(deconv: dict, faceset, au: int, resize: int | None) -> dict:
    if faceset.landmarks is None:
        return {"note": "the data has no landmarks, so no AU region"}
    try:
        return localization(deconv["projection"], deconv["image_index"], deconv["rf_box"],
                            faceset.landmarks, au, faceset.images.shape[-1], resize)
    except InterpretError as err:
        return {"note": str(err)}


def write_distances(path, results) -> None:
    """Merge rows (au, layer, n, epsilon, map_0..) into the CSV at `path`, one row per (AU, layer)."""
    path = Path(path)
    rows = {}
    if path.is_file():
        with open(path, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                rows[(row["au"], row["layer"])] = row
    for res in results:
        row = {"au": res["au"], "layer": str(res["layer"]), "n": str(res["n"]),
               "epsilon": repr(res["epsilon"])}
        row.update({f"map_{i}": repr(float(d)) for i, d in enumerate(res["distance"])})
        rows[(row["au"], row["layer"])] = row
    width = max(sum(1 for key in row if key.startswith("map_")) for row in rows.values())
    header = ["au", "layer", "n", "epsilon"] + [f"map_{i}" for i in range(width)]
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=header, restval="")
            writer.writeheader()
            for key in sorted(rows, key=lambda k: (int(k[0][2:]), k[1])):
                writer.writerow({h: rows[key].get(h, "") for h in header})


def write_cooccurrence(path, aus, au_codes) -> None:
    """CSV of the image-level AU co-occurrence: rows au, other, count, p_other_given_au."""
    counts, conditional = cooccurrence(aus)
    names = [au_name(a) for a in au_codes]
    lines = ["au,other,count,p_other_given_au"]
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            p = "" if np.isnan(conditional[i, j]) else f"{conditional[i, j]:.6g}"
            lines.append(f"{a},{b},{int(counts[i, j])},{p}")
    write_text(path, "\n".join(lines) + "\n")


def plot_distance(path, res: dict) -> None:
    """Paper Figure 5 style: D over map index, the best map marked, the family-wise 5% line."""
    from matplotlib.figure import Figure

    distance = np.asarray(res["distance"])
    best = res["best_map"]
    fig = Figure(figsize=(9, 3.2))
    ax = fig.subplots()
    ax.bar(np.arange(len(distance)), distance, width=1.0, color="0.55")
    ax.bar([best], [distance[best]], width=1.0, color="tab:red")
    ax.annotate(f"map {best}", (best, distance[best]), textcoords="offset points", xytext=(4, 2),
                color="tab:red", fontsize=9)
    if res.get("null_max_95") is not None:
        ax.axhline(res["null_max_95"], color="tab:blue", ls="--", lw=1,
                   label="95% of permutation max (family-wise 5%)")
        ax.legend(loc="upper right", fontsize=8, frameon=False)
    ax.set_xlim(-1, len(distance))
    ax.set_xlabel(f"{res['layer']} map (from 0)")
    ax.set_ylabel("distance D")
    ax.set_title(f"{res['au']}: best map {best}, D = {distance[best]:.3g}, "
                 f"p_family = {res['p_family']:.3g}, AUROC = {res['best_auroc']:.2f}", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)


def plot_best(path, res: dict, deconv: dict, faceset, resize: int | None = None) -> None:
    """Paper Figure 6 style: the best map's top deconvolutions over the images with the AU region."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    projection = np.asarray(deconv["projection"], dtype=np.float64)
    k, H, W = projection.shape
    fig = Figure(figsize=(1.4 * k, 3.2))
    axes = fig.subplots(2, k, squeeze=False)
    for j in range(k):
        idx = int(deconv["image_index"][j])
        p = projection[j]
        span = p.max() - p.min()
        axes[0, j].imshow((p - p.min()) / span if span > 0 else p, cmap="gray")
        axes[1, j].imshow(input_frame(faceset.images[idx], H, resize), cmap="gray", vmin=0, vmax=255)
        if faceset.landmarks is not None:
            try:
                mask = region_mask(faceset.landmarks[idx], res["au_code"], faceset.images.shape[1:])
                axes[1, j].contour(input_frame(mask.astype(np.float64), H, resize), levels=[0.5], colors="tab:red",
                                   linewidths=1)
            except InterpretError:
                pass
        top, left, bottom, right = np.asarray(deconv["rf_box"][j], dtype=float)
        axes[1, j].add_patch(Rectangle((left - 0.5, top - 0.5), right - left, bottom - top,
                                       fill=False, color="yellow", lw=1))
        for ax in axes[:, j]:
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0, j].set_title(f"#{idx}", fontsize=7)
    axes[0, 0].set_ylabel("deconv", fontsize=8)
    axes[1, 0].set_ylabel("image, region", fontsize=8)
    loc = res.get("localization") or {}
    extra = f", energy in region x{loc['ratio']:.2f} of area" if loc.get("ratio") is not None else ""
    fig.suptitle(f"{res['au']}: {res['layer']} map {res['best_map']}{extra}", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)


def format_table(results: dict) -> str:
    """Plain-text table for the CLI: best map, D, p-values, AUROC, stability, the map with the
    highest AUROC (a scale-free alternative to D), held-out check per AU."""
    head = (f"{'AU':<5} {'map':>4} {'dir':>3} {'D':>9} {'p_family':>8} {'q_map':>7} {'AUROC':>6} "
            f"{'stable':>6} {'AUROC-best map':>15}  held out")
    lines = [head]
    for res in results.values():
        best = res["best_map"]
        stability = "-" if res.get("stability") is None else f"{res['stability']:.2f}"
        held = "-"
        if res.get("held_out_au") is not None:
            held = (f"{au_name(res['held_out_au'])}: D={res['distance_held_out']:.3g} "
                    f"(rank {res['rank_held_out']})")
        sign = "+" if res["best_direction"].startswith("higher") else "-"
        lines.append(f"{res['au']:<5} {best:>4} {sign:>3} {res['distance'][best]:>9.4g} "
                     f"{res['p_family']:>8.3g} "
                     f"{res['q_map'][best]:>7.3g} {res['best_auroc']:>6.3f} {stability:>6} "
                     f"{res['auroc_map']:>6} ({res['auroc_map_auroc']:.3f})  {held}")
    first = next(iter(results.values()), {})
    if first.get("labels"):
        lines.append("labels: " + ", ".join(f"{k}={v}" for k, v in first["labels"].items()) +
                     f"; null: {first['permutation_unit']}")
    return "\n".join(lines)
