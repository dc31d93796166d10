"""Planted detectors, the positive control: train with one extra loss per AU tying a chosen map to it.

`interpret train --plant-detectors` adds, beside the emotion loss, for every planted AU a the
binary cross-entropy between AU presence and the logit `PLANT_SCALE · (m − mean(m)) / (sd(m) + PLANT_EPS)`
of its map's spatial maximum m on the analysed layer, standardized over the batch, averaged over
the AUs that the batch holds with and without (times `PLANT_WEIGHT`). Standardizing makes the
loss about ranking: a fixed shift first drags every maximum towards it (most images lack a given
AU) before the map learns to discriminate. On a ReLU layer m is taken before the ReLU (the same
ranking, max relu(x) = relu(max x)), so a map pushed below zero on every image still learns
instead of dying; there a hinge, the mean of max(0, −m) over the batch's images with the AU, keeps
those images above zero, where the ReLU (and so `validate`) does not flatten them into ties. The
map of each AU is a seeded random choice, distinct across AUs, recorded in config.json as
``planted: {layer, maps: {AU: map}, ...}``: the ground truth `interpret validate` scores methods
on, after checking on held-out subjects which planted maps became detectors.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from interpret.errors import InterpretError
from interpret.facs import au_name
from interpret.layers import get_module, layer_output, resolve_layer

#: `--plant-aus independent`: two AUs are both planted only where the phi coefficient of their
#: presence over the training images is at most this.
INDEPENDENT_PHI = 0.2
PLANT_SCALE = 2.0
PLANT_EPS = 1e-3
PLANT_WEIGHT = 5.0
DEFAULT_LAYER = "relu3"


def choose_maps(n_maps: int, au_codes, seed: int) -> dict[str, int]:
    """{AU name: map}: distinct maps drawn with a generator seeded by (seed, 'plant')."""
    if len(au_codes) > n_maps:
        raise InterpretError(f"cannot plant {len(au_codes)} AUs in a layer of {n_maps} maps")
    rng = np.random.default_rng([int(seed), 0x91A27])
    chosen = rng.choice(n_maps, size=len(au_codes), replace=False)
    return {au_name(code): int(m) for code, m in zip(au_codes, chosen)}


def independent_aus(presence: np.ndarray, codes) -> list[int]:
    """AUs (of `codes`, the columns of `presence` (N, A) bool) no two of which co-occur beyond
    `INDEPENDENT_PHI`: greedily the AU with the fewest conflicts among those left (ties: the lower
    AU number), its conflicting AUs dropped. A planted map of one of two co-occurring AUs detects
    the other too, so which map is 'the' detector of either is ambiguous; this set avoids that."""
    codes = [int(c) for c in codes]
    phi = np.corrcoef(np.asarray(presence, dtype=float).T)
    conflict = (phi > INDEPENDENT_PHI) & ~np.eye(len(codes), dtype=bool)
    left, chosen = set(range(len(codes))), []
    while left:
        pick = min(left, key=lambda i: (int(conflict[i, sorted(left)].sum()), codes[i]))
        chosen.append(codes[pick])
        left -= {pick, *np.flatnonzero(conflict[pick]).tolist()}
    return sorted(chosen)


def parse_plant_aus(text: str):
    """`--plant-aus`: 'all' -> None, 'independent', or AU numbers '1,6,12' -> [1, 6, 12]."""
    text = text.strip().lower()
    if text in ("all", "independent"):
        return None if text == "all" else text
    try:
        aus = [int(part.strip().upper().removeprefix("AU")) for part in text.split(",") if part.strip()]
    except ValueError:
        aus = []
    if not aus:
        raise InterpretError(f"--plant-aus must be all, independent or AU numbers like 1,6,12; got {text!r}")
    return aus


def usable_aus(presence: np.ndarray, codes, aus) -> list[int]:
    """The AU codes to plant: of `aus` (None: all of `codes`; 'independent': `independent_aus`;
    or AU numbers) those present in some but not all training images (`presence` (N, A) bool)."""
    codes = [int(c) for c in codes]
    wanted = codes if aus is None or aus == "independent" else [int(a) for a in aus]
    usable = [c for c in wanted if c in codes and 0 < presence[:, codes.index(c)].sum() < len(presence)]
    if not usable:
        raise InterpretError("planting: no AU asked for is present in some but not all training images")
    if aus == "independent":
        usable = independent_aus(presence[:, [codes.index(c) for c in usable]], usable)
    return usable


class PlantedLoss:
    """The planted-detector loss of a batch, from the retained output of `layer`."""

    def __init__(self, layer: str, columns, maps, presence: torch.Tensor, pre_activation: bool = False):
        self.layers = [layer]
        # `train_epoch` then retains the layer's input: a ReLU's pre-activation, whose maximum
        # has a gradient even where the ReLU's is zero (max relu(x) = relu(max x): same ranking).
        self.inputs = pre_activation
        self.layer = layer
        self.columns = torch.as_tensor(list(columns), device=presence.device)
        self.maps = torch.as_tensor(list(maps), device=presence.device)
        self.presence = presence.float()

    def __call__(self, outputs: dict, index: torch.Tensor) -> torch.Tensor:
        act = outputs[self.layer]
        peak = act[:, self.maps].float().amax(dim=(2, 3))
        target = self.presence[index][:, self.columns]
        logit = PLANT_SCALE * (peak - peak.mean(dim=0)) / (peak.std(dim=0, correction=0) + PLANT_EPS)
        per_au = F.binary_cross_entropy_with_logits(logit, target, reduction="none").mean(dim=0)
        present = target.sum(dim=0)
        if self.inputs:  # the ranking is shift-free, but `validate` reads the maxima after the ReLU: an AU's
            # images whose maximum stays below zero would all be cut to 0, tied with the images without it
            per_au = per_au + (F.relu(-peak) * target).sum(dim=0) / present.clamp(min=1.0)
        # Only AUs with images with and without them in this batch (under torchrun: this rank's
        # part of it) have anything to rank; no host sync, so CUDA steps stay asynchronous.
        ranked = ((present > 0) & (present < len(target))).float()
        return PLANT_WEIGHT * (per_au * ranked).sum() / ranked.sum().clamp(min=1.0)


def planting(layer: str = DEFAULT_LAYER, aus=None):
    """An `auxiliary` for `interpret.training.train`: plants a detector for each AU of `aus` (None:
    every AU present in some but not all training images; 'independent': the `independent_aus` of
    those; or AU numbers) in `layer`, and records the choice in config."""

    def build(model, config, faceset, train_rows, device) -> PlantedLoss:
        name = resolve_layer(model, layer)
        was_training = model.training
        model.eval()
        with torch.no_grad():
            probe = torch.zeros(1, *_input_shape(config), device=device)
            n_maps = layer_output(model, name, probe).shape[1]
        model.train(was_training)
        presence = np.asarray(faceset.au_present, dtype=bool)[train_rows]
        codes = [int(c) for c in faceset.au_codes]
        usable = usable_aus(presence, codes, aus)
        maps = choose_maps(n_maps, usable, config["seed"])
        module = get_module(model, name)
        pre_activation = isinstance(module, torch.nn.ReLU) and not module.inplace  # inplace: its input is overwritten
        config["planted"] = {
            "layer": name, "maps": maps, "seed": int(config["seed"]),
            "aus": (f"independent: no two with phi > {INDEPENDENT_PHI:g} over the training images"
                    if aus == "independent" else "all" if aus is None else "chosen"),
            "loss": f"BCE(AU present, {PLANT_SCALE:g} * batch-standardized spatial max of the map"
                    f"{' before the ReLU, plus mean max(0, -max) over the images with the AU' if pre_activation else ''}"
                    f"), mean over the AUs present and absent in the batch, weight {PLANT_WEIGHT:g}",
        }
        return PlantedLoss(name, [codes.index(c) for c in usable], list(maps.values()),
                           torch.from_numpy(presence).to(device), pre_activation)

    return build


def _input_shape(config) -> tuple[int, int, int]:
    from interpret.runs import run_input

    spec = run_input(config)
    return spec.channels, spec.size, spec.size


def planted_maps(config: dict) -> dict[str, int] | None:
    """{AU name: map} a run's config.json records, None for a run without planted detectors."""
    planted = config.get("planted")
    return {str(k): int(v) for k, v in planted["maps"].items()} if planted else None
