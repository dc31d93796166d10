"""Cascading model-parameter randomization (Adebayo et al. 2018; REFERENCE §3).

The weights are re-initialised from the top down, cumulatively: first the head (every module
with parameters that runs after the analysed layer, e.g. `out`, `fc`), then each module with
parameters at or below the layer from the top (relu3 of zhu2019: conv3, conv2, conv1; a
BatchNorm goes with the conv before it), each with
the model's own initialisation (a fresh model, `runs.fresh_model`, built from a stream derived
from `seed`, never the training's own starting weights). At every stage the SAME
seeds (the strongest top-1 activation of `n_seeds` maps of the analysed layer, with its image
and position) are projected to pixel space with
`interpret.deconv.project` under three rules: the Zeiler–Fergus deconvnet, the plain gradient
and guided backprop. Each randomized projection is compared with the trained one inside the
seed's receptive field (outside it every projection is zero, which would inflate any
similarity): Spearman rank correlation of absolute values and of signed values, and SSIM of the
absolute maps normalised to [0, 1]. `edge_spearman` is the rank correlation of |projection| with
the Sobel edge magnitude of the input patch (Nie et al.: these rules partly recover the image).

A unit of the layer does not depend on the head: that stage must leave its projection exactly
unchanged, which the result checks (`identical`).
"""

from __future__ import annotations

import copy
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
from matplotlib.figure import Figure
from scipy.stats import ConstantInputWarning, spearmanr
from skimage.filters import sobel
from skimage.metrics import structural_similarity

from interpret import stats
from interpret.deconv import deconv_path, layer_field
from interpret.errors import InterpretError, located
from interpret.io import atomic_path, write_json
from interpret.layers import choose_layer, trace

RULES = ("deconvnet", "gradient", "guided")
RULE_LABELS = {"deconvnet": "deconvnet", "gradient": "gradient", "guided": "guided backprop"}
METRICS = ("spearman_abs", "spearman_signed", "ssim", "edge_spearman")
METRIC_LABELS = {"spearman_abs": "Spearman |.|", "spearman_signed": "Spearman (signed)", "ssim": "SSIM |.|",
                 "edge_spearman": "Spearman with image edges"}
#: Mean of SSIM and Spearman |.| after the full cascade: >= SIMILAR "stays similar", < CHANGED "changes".
SIMILAR = 0.5
CHANGED = 0.3
#: Family-wise level for the au-map permutation check.
ALPHA = 0.05
#: Tag of the re-initialisation's random stream (see `init_seed`).
_STREAM = 0x5A17
#: Seeds drawn in the cascade figure.
FIGURE_SEEDS = 3
#: Normalization modules, re-initialised together with the layer before them.
_NORMS = (torch.nn.modules.batchnorm._BatchNorm, torch.nn.GroupNorm, torch.nn.LayerNorm,
          torch.nn.modules.instancenorm._InstanceNorm)


def cascade_stages(model, layer: str, x: torch.Tensor) -> list[dict]:
    """Stages from the top down: name, label, the modules re-initialised so far (cumulative),
    and whether they can change a projection of `layer` (they run before its output, for batch `x`).

    A normalization module (BatchNorm, GroupNorm, ...) is re-initialised with the module with
    parameters that ran just before it (its conv): one stage per layer, not per module."""
    order = [name for name, _ in trace(model, x)]
    weighted = [name for name in order if any(True for _ in model.get_submodule(name).parameters(recurse=False))]
    cut = order.index(layer)
    groups: list[list[str]] = []
    for name in weighted:
        if groups and isinstance(model.get_submodule(name), _NORMS) and order.index(groups[-1][0]) <= cut \
                and order.index(name) <= cut:
            groups[-1].append(name)
        else:
            groups.append([name])
    below = [g for g in groups if order.index(g[0]) <= cut]
    head = [name for g in groups if order.index(g[0]) > cut for name in g][::-1]
    stages = [{"name": "trained", "label": "trained", "randomized": [], "can_change": False}]
    if head:
        stages.append({"name": "head", "label": "+ head", "randomized": head, "can_change": False})
    for group in below[::-1]:
        stages.append({"name": group[0], "label": f"+ {group[0]}", "randomized": stages[-1]["randomized"] + group,
                       "can_change": True})
    return stages


def init_seed(seed: int) -> int:
    """The torch seed of the re-initialisation: derived from `seed` but not equal to it, so a run
    trained with seed s does not get its own starting weights back (that would measure how far
    training moved the weights, not whether the projection depends on them)."""
    return int(np.random.SeedSequence([int(seed), _STREAM]).generate_state(1)[0])


def randomized_model(model, fresh, modules):
    """A copy of `model` whose `modules` carry the weights of the freshly initialised `fresh`."""
    out = copy.deepcopy(model)
    for name in modules:
        out.get_submodule(name).load_state_dict(fresh.get_submodule(name).state_dict())
    return out.eval()


def select_seeds(run, layer: str, n_seeds: int) -> list[dict]:
    """The top-1 activation (image, y, x) of the `n_seeds` maps whose top-1 activation is largest.

    Read from the deconvolution step (``RUN/deconv/<layer>.h5``) when it was made from this
    model, else from the activation cache (training images). Dead maps (top activation 0) are skipped.
    """
    path = deconv_path(run, layer)
    columns = _seeds_from_deconv(run, path) if path.is_file() else None
    maps, activation, image, position = columns if columns is not None else _seeds_from_cache(run, layer)
    order = [i for i in np.argsort(-activation, kind="stable") if activation[i] > 0][:n_seeds]
    if not order:
        raise InterpretError(f"{run.path}: every map of {layer} has a zero top activation; nothing to project")
    return [{"map": int(maps[i]), "image_index": int(image[i]), "y": int(position[i][0]),
             "x": int(position[i][1]), "activation": float(activation[i])} for i in order]


def _seeds_from_deconv(run, path: Path):
    """(maps, top-1 activation, image, (y, x)) per map from a deconv file; None if made from other weights."""
    with h5py.File(path, "r") as h5:
        made_from = h5.attrs.get("model_sha256")
        if made_from is not None and Path(run.model_file).is_file() and made_from != run.model_sha256:
            return None
        activation = np.asarray(h5["activation"][:, 0], dtype=np.float64)
        maps = np.asarray(h5["maps"][()]) if "maps" in h5 else np.arange(len(activation))
        return maps, activation, np.asarray(h5["image_index"][:, 0]), np.asarray(h5["position"][:, 0])


def _seeds_from_cache(run, layer: str):
    """(maps, top-1 activation, image, (y, x)) per map from the activation cache's training images."""
    from interpret.cache import open_cache

    cache = open_cache(run, layer)
    rows = np.flatnonzero(cache.split == "train")
    if rows.size == 0:
        rows = np.arange(len(cache.max))
    maps = np.arange(cache.max.shape[1])
    best = rows[np.argmax(cache.max[rows], axis=0)]
    return maps, cache.max[best, maps].astype(np.float64), best, cache.positions(best, maps)


def _unit(a: np.ndarray) -> np.ndarray:
    peak = float(a.max())
    return a / peak if peak > 0 else np.zeros_like(a)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation; 0 when either side is constant (no shared ordering)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantInputWarning)
        rho = spearmanr(a.ravel(), b.ravel()).statistic
    return 0.0 if not np.isfinite(rho) else float(rho)


def similarity(trained: np.ndarray, other: np.ndarray) -> dict:
    """Spearman |.|, Spearman signed and SSIM (|.| normalised to [0, 1]) of two same-shape patches."""
    win = min(7, *trained.shape)
    win -= 1 - win % 2
    return {
        "spearman_abs": _spearman(np.abs(trained), np.abs(other)),
        "spearman_signed": _spearman(trained, other),
        "ssim": float(structural_similarity(_unit(np.abs(trained)), _unit(np.abs(other)), data_range=1.0,
                                            win_size=win)),
    }


def compare(projections: dict, stages: list[dict], boxes, edges) -> tuple[dict, dict]:
    """Per-seed values and per-stage summaries of every metric, each rule against its trained projections."""
    per_seed, metrics = {}, {}
    for rule, by_stage in projections.items():
        trained = by_stage["trained"]
        per_seed[rule], metrics[rule] = {}, {}
        for st in stages:
            proj = by_stage[st["name"]]
            values = {m: [] for m in METRICS}
            for i, (t, l, b, r) in enumerate(boxes):
                for key, val in similarity(trained[i, t:b, l:r], proj[i, t:b, l:r]).items():
                    values[key].append(val)
                values["edge_spearman"].append(_spearman(np.abs(proj[i, t:b, l:r]), edges[i]))
            live = np.abs(proj).reshape(len(proj), -1).max(1) > 0
            per_seed[rule][st["name"]] = values
            metrics[rule][st["name"]] = {
                **{m: float(np.mean(v)) for m, v in values.items()},
                **{f"{m}_sd": float(np.std(v)) for m, v in values.items()},
                "identical": bool(np.array_equal(trained, proj)),
                "zero_projections": int((~live).sum()),
                "live": {"n": int(live.sum()), **{m: float(np.mean(np.asarray(values[m])[live])) if live.any()
                                                  else None for m in ("spearman_abs", "ssim")}},
            }
    return per_seed, metrics


@dataclass(frozen=True)
class SanityResult:
    """What `run_sanity` wrote: ``sanity.json``, the layer, and its content."""

    path: Path
    layer: str
    result: dict


def run_sanity(run, *, layer=None, seed: int = 0, n_seeds: int = 32) -> SanityResult:
    """Cascading randomization of `run`'s model for `n_seeds` seeds of `layer`; writes ``RUN/sanity/``.

    ``sanity.json`` holds the seeds, the stages, per-rule per-stage means and per-seed values
    of every metric, the identity check of the stages that cannot matter, a computed verdict,
    and the au-map permutation check when ``RUN/aumap/`` exists.
    """
    from interpret.deconv import project
    from interpret.runs import fresh_model

    model = run.model.eval()
    layer = choose_layer(model, layer)
    seeds = select_seeds(run, layer, n_seeds)
    index = [s["image_index"] for s in seeds]
    images = run.dataset.rows(index).to(run.device)
    seed_tensor = torch.tensor([[s["map"], s["y"], s["x"]] for s in seeds], dtype=torch.long, device=run.device)
    positions = np.array([[s["y"], s["x"]] for s in seeds])
    boxes = layer_field(run, layer).boxes(positions, tuple(images.shape[-2:])).tolist()
    for s, box in zip(seeds, boxes):
        s["rf_box"] = list(box)
    grey = images.mean(1).cpu().numpy().astype(np.float64)
    edges = [sobel(grey[i])[t:b, l:r] for i, (t, l, b, r) in enumerate(boxes)]

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed(seed))
        fresh = fresh_model(run.config).to(run.device)
    stages = cascade_stages(model, layer, images[:1])
    projections = {rule: {} for rule in RULES}  # rule -> stage -> (B, H, W)
    for st in stages:
        net = randomized_model(model, fresh, st["randomized"])
        for rule in RULES:
            out = project(net, layer, images, seed_tensor, rule=rule)
            projections[rule][st["name"]] = out.detach().cpu().numpy().astype(np.float64)

    per_seed, metrics = compare(projections, stages, boxes, edges)
    result = {
        "run": str(run.path),
        "arch": run.config["arch"],
        "layer": layer,
        "seed": int(seed),
        "n_seeds": len(seeds),
        "rules": list(RULES),
        "metrics_compared": {m: METRIC_LABELS[m] for m in METRICS},
        "region": "each seed's receptive-field box (clipped to the image); outside it every projection is 0",
        "init": ("the model's own initialisation (its constructor, or the imported factory) of a fresh model, "
                 f"torch seed {init_seed(seed)} derived from the seed (not the training's stream)"),
        "stages": stages,
        "seeds": seeds,
        "metrics": metrics,
        "per_seed": per_seed,
        "thresholds": {"similar": SIMILAR, "changed": CHANGED,
                       "score": "mean of SSIM and Spearman |.| after the full cascade"},
    }
    result["notes"] = _notes(result)
    result["verdict"] = _verdicts(result)
    result["aumap_check"] = aumap_check(Path(run.path) / "aumap")
    # the report refuses another model's results
    result["model_sha256"] = run.model_sha256 if Path(run.model_file).is_file() else None
    out = Path(run.path) / "sanity"
    result["figures"] = {"cascade": "sanity/cascade.png", "similarity": "sanity/similarity.png"}
    plot_cascade(out / "cascade.png", result, grey, projections)
    plot_similarity(out / "similarity.png", result)
    write_json(out / "sanity.json", result)
    return SanityResult(path=out / "sanity.json", layer=layer, result=result)


def _notes(result: dict) -> list[str]:
    layer, notes = result["layer"], []
    informative = [st["name"] for st in result["stages"] if st["can_change"]]
    span = f"{informative[0]}..{informative[-1]}" if len(informative) > 1 else informative[0]
    for st in result["stages"][1:]:
        if st["can_change"]:
            continue
        same = [RULE_LABELS[r] for r in RULES if result["metrics"][r][st["name"]]["identical"]]
        status = ("unchanged, bit for bit, for " + ", ".join(same)) if len(same) == len(RULES) else \
            f"CHANGED for {', '.join(RULE_LABELS[r] for r in RULES if RULE_LABELS[r] not in same)} (a bug)"
        notes.append(f"stage '{st['label']}': a {layer} unit does not depend on "
                     f"{', '.join(st['randomized'])}, so its "
                     f"projections must stay identical (correlation 1): {status}. "
                     f"The informative stages are {span}.")
    n = result["n_seeds"]
    for rule in RULES:
        cells = [(st["label"], result["metrics"][rule][st["name"]]) for st in result["stages"]]
        dead = [f"{m['zero_projections']} after '{label}'" for label, m in cells if m["zero_projections"]]
        if dead:
            label, m = cells[-1]
            live = m["live"]
            rest = (f"over the {live['n']} seeds still firing after '{label}': SSIM {live['ssim']:.2f}, "
                    f"Spearman |.| {live['spearman_abs']:.2f}") if live["n"] else "no seed still fires"
            notes.append(f"{RULE_LABELS[rule]}: all-zero projections (of {n}): {', '.join(dead)}. The randomized "
                         "unit no longer fires on its image, and the gradient and guided backprop pass nothing "
                         "through an inactive unit (the deconvnet ignores that mask); such a seed counts as "
                         f"correlation 0; {rest}.")
    return notes


def _score(metrics: dict) -> float:
    return (metrics["ssim"] + metrics["spearman_abs"]) / 2


def _verdicts(result: dict) -> dict:
    """A computed sentence per rule, from the similarity after the full cascade."""
    stages = result["stages"]
    last, first = stages[-1]["name"], next(s["name"] for s in stages if s["can_change"])
    informative = [s["name"] for s in stages if s["can_change"]]
    span = f"{informative[0]}..{informative[-1]}" if len(informative) > 1 else informative[0]
    out = {}
    for rule in RULES:
        m, f = result["metrics"][rule][last], result["metrics"][rule][first]
        figures = f"SSIM {m['ssim']:.2f}, Spearman |.| {m['spearman_abs']:.2f}"
        score = _score(m)
        if score >= SIMILAR:
            kind, text = "similar", (f"the {RULE_LABELS[rule]} projections stay similar ({figures}) after randomizing "
                                     f"{span}: they mostly reflect the image and the architecture, not learned features")
        elif score < CHANGED:
            kind, text = "changed", (f"the {RULE_LABELS[rule]} projections change ({figures}) after randomizing "
                                     f"{span}: they depend on the learned weights")
        else:
            kind, text = "partly", (f"the {RULE_LABELS[rule]} projections change only partly ({figures}) after "
                                    f"randomizing {span}: they mix learned structure with image/architecture structure")
        text += (f"; randomizing {first} alone leaves SSIM {f['ssim']:.2f}, Spearman |.| {f['spearman_abs']:.2f}"
                 f"; correlation of |projection| with the image's edges: trained {result['metrics'][rule]['trained']['edge_spearman']:.2f}, "
                 f"randomized {m['edge_spearman']:.2f}")
        if m["zero_projections"] and m["live"]["n"]:
            text += (f" ({m['zero_projections']} of {result['n_seeds']} units stop firing and project to zero; "
                     f"over the rest SSIM {m['live']['ssim']:.2f}, Spearman |.| {m['live']['spearman_abs']:.2f})")
        out[rule] = {"kind": kind, "score": score, "text": text}
    return out


def aumap_check(folder) -> dict | None:
    """Family-wise permutation p-values of every AU in ``RUN/aumap/AUxx.json``; None when absent."""
    folder = Path(folder)
    files = sorted(folder.glob("AU*.json")) if folder.is_dir() else []
    if not files:
        return None
    rows = []
    for path in files:
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise located(path, f"malformed JSON ({err.msg})", err.lineno) from None
        rows.append({"au": data.get("au", path.stem), "best_map": data.get("best_map"),
                     "p_family": data.get("p_family"), "best_auroc": data.get("best_auroc"),
                     "permutations": data.get("permutations")})
    tested = [r for r in rows if r["p_family"] is not None]
    q = stats.benjamini_hochberg([r["p_family"] for r in tested]) if tested else []
    for r, qv in zip(tested, q):
        r["q_across_aus"] = float(qv)
    return {
        "alpha": ALPHA,
        "n_aus": len(rows),
        "n_tested": len(tested),
        "survive_family": sum(r["p_family"] < ALPHA for r in tested),
        "survive_bh": sum(r["q_across_aus"] < ALPHA for r in tested),
        "aus": rows,
    }


def _save(fig, path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")


def plot_cascade(path, result: dict, images: np.ndarray, projections: dict) -> None:
    """Adebayo-style grid: for a few seeds, rows = rules, columns = input patch + cascade stages."""
    stages = result["stages"]
    chosen = range(min(FIGURE_SEEDS, len(result["seeds"])))
    rows = [(i, rule) for i in chosen for rule in RULES]
    fig = Figure(figsize=(1.45 * (len(stages) + 1), 1.45 * len(rows)))
    axes = fig.subplots(len(rows), len(stages) + 1, squeeze=False)
    for r, (i, rule) in enumerate(rows):
        s = result["seeds"][i]
        t, l, b, rr = s["rf_box"]
        patch = images[i, t:b, l:rr]
        axes[r, 0].imshow(patch, cmap="gray")
        axes[r, 0].set_ylabel(f"map {s['map']}\n{RULE_LABELS[rule]}", fontsize=7)
        for c, st in enumerate(stages, start=1):
            p = projections[rule][st["name"]][i, t:b, l:rr]
            peak = float(np.abs(p).max()) or 1.0
            axes[r, c].imshow(p / peak, cmap="gray", vmin=-1, vmax=1)
            if r == 0:
                axes[r, c].set_title(st["label"], fontsize=8)
            m = result["per_seed"][rule][st["name"]]
            axes[r, c].set_xlabel(f"SSIM {m['ssim'][i]:.2f}", fontsize=6, labelpad=1)
        if r == 0:
            axes[r, 0].set_title("input patch", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"Cascading randomization, {result['layer']} seeds (receptive-field patches)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    _save(fig, path)


def plot_similarity(path, result: dict) -> None:
    """Mean (± sd over seeds) of each metric across the cascade stages, one line per rule."""
    stages = result["stages"]
    x = np.arange(len(stages))
    fig = Figure(figsize=(3.3 * len(METRICS), 3.0))
    axes = fig.subplots(1, len(METRICS), sharey=True)
    for ax, metric in zip(axes, METRICS):
        for rule in RULES:
            mean = [result["metrics"][rule][s["name"]][metric] for s in stages]
            sd = [result["metrics"][rule][s["name"]][f"{metric}_sd"] for s in stages]
            ax.errorbar(x, mean, yerr=sd, marker="o", ms=3, capsize=2, label=RULE_LABELS[rule])
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_xticks(x, [s["label"] for s in stages], rotation=40, ha="right", fontsize=7)
        ax.set_title(METRIC_LABELS[metric], fontsize=9)
        ax.set_ylim(-1.05, 1.05)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("similarity to the trained projection")
    axes[0].legend(fontsize=7, loc="lower left")
    _save(fig, path)


def format_sanity(result: dict) -> str:
    """A plain-text table (SSIM / Spearman |.| / Spearman signed per rule and stage) and the verdicts."""
    rules = result["rules"]
    head = f"{'stage':<12}" + "".join(f"{RULE_LABELS[r]:>28}" for r in rules)
    sub = f"{'':<12}" + "".join(f"{'SSIM  rho|.|  rho':>28}" for _ in rules)
    lines = [f"cascading randomization, {result['layer']}, {result['n_seeds']} seeds, seed {result['seed']}",
             head, sub]
    for st in result["stages"]:
        cells = []
        for r in rules:
            m = result["metrics"][r][st["name"]]
            cells.append(f"{m['ssim']:6.2f} {m['spearman_abs']:7.2f} {m['spearman_signed']:6.2f}"
                         + (" =" if m["identical"] else "  "))
        lines.append(f"{st['label']:<12}" + "".join(f"{c:>28}" for c in cells))
    lines.append("(= : identical to the trained projections)")
    lines += ["", *result["notes"], ""]
    lines += [f"verdict ({RULE_LABELS[r]}): {result['verdict'][r]['text']}" for r in rules]
    check = result.get("aumap_check")
    lines.append("")
    if check is None:
        lines.append("au-map permutation check: no RUN/aumap/AU*.json yet (run `interpret au-map`)")
    else:
        lines.append(f"au-map permutation check: {check['survive_family']} of {check['n_tested']} AUs have a "
                     f"family-wise p < {check['alpha']} for their best map ({check['survive_bh']} after "
                     "Benjamini-Hochberg across AUs)")
        for r in check["aus"]:
            p = "n/a" if r["p_family"] is None else f"{r['p_family']:.3g}"
            lines.append(f"  {r['au']}: best map {r['best_map']}, p_family {p}")
    return "\n".join(lines)
