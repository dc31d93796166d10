"""How each architecture trains and is scored: recipes, labels, augmentation, loss, inference.

`train_spec(arch)` is what `interpret.training.train` asks for. Core architectures get the
paper's pipeline (`transforms.augment`, cross-entropy, the `fast`/`paper` recipes); the seed
systems get theirs (SEEDS.md):

| arch | labels | augmentation | loss | recipes |
|---|---|---|---|---|
| liu2019 | 9 valence levels | none | CE + 0.05 sum(w^2) on FC1/FC2 (Keras) | paper: Adam 1e-3, batch 32, 30 epochs |
| djellali2021 | the data's emotions | none | CE | paper: Adam 1e-4, batch 64, 50 epochs; fast: Adam 1e-3, 12 epochs |
| wu2019 | the data's emotions | none | CE, then the sequence head | paper: Adam 1e-3, batch 32, <= 100 epochs, patience 10; fast: 20 epochs |
| wang2022 | five classes | one of ten crops (online) | CE | paper: Adam 1e-3, batch 32, 50 epochs; fast: 15 epochs |

Evaluation transform: the architecture's `InputSpec` (centre crop); `tta='ten-crop'` averages
the softmax of the ten crops (any architecture whose crop is smaller than its resized face).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from interpret.data.transforms import InputSpec, augment, evaluate
from interpret.errors import InterpretError
from interpret.systems import valence as val
from interpret.systems.ferplus_labels import MODES as FERPLUS_MODES
from interpret.systems.liu2019 import l2_penalty
from interpret.systems.wang2022 import FIVE_CLASSES, random_crop_of_ten, ten_crop_logits
from interpret.training import RECIPES, Recipe

TTA = ("none", "ten-crop")

_SELECT = "best validation accuracy (ties: lower validation loss)"


def _adam(name: str, lr: float, batch: int, epochs: int, patience: int | None = None, augmentation: str = "none",
          selection: str = _SELECT) -> Recipe:
    return Recipe(name, "adam", lr, "constant", 0.9, False, 0.0, batch, epochs=epochs,
                  patience=epochs if patience is None else patience, warmup=0.0, final_lr_ratio=1.0,
                  augmentation=augmentation, selection=selection)


@dataclass(frozen=True)
class TrainSpec:
    """An architecture's training and scoring pipeline (see the module table)."""

    recipes: dict[str, Recipe]
    default_recipe: str
    labels: str = "emotion"
    classes: tuple[str, ...] | None = None
    penalty: Callable[[torch.nn.Module], torch.Tensor] | None = None
    configure: Callable[[dict | None], dict] | None = None
    finish: Callable | None = None

    def recipe(self, name: str | None, epochs: int | None = None) -> Recipe:
        name = name or self.default_recipe
        if name not in self.recipes:
            raise InterpretError(f"unknown recipe {name!r} for this architecture; choose one of {', '.join(self.recipes)}")
        chosen = self.recipes[name]
        return chosen if epochs is None else replace(chosen, epochs=int(epochs))

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, model: torch.nn.Module) -> torch.Tensor:
        loss = F.cross_entropy(logits.float(), targets)
        return loss if self.penalty is None else loss + self.penalty(model)

    def labels_config(self, data_seed: int, valence_csv=None, ferplus_mode: str | None = None) -> dict | None:
        if ferplus_mode is not None:
            if self.labels != "emotion":
                raise InterpretError(f"FER+ label modes train emotion classes; this architecture trains {self.labels}")
            if ferplus_mode not in FERPLUS_MODES:
                raise InterpretError(f"--labels ferplus-MODE: MODE must be one of {', '.join(FERPLUS_MODES)}, "
                                     f"got {ferplus_mode!r}")
            return {"kind": "ferplus", "mode": ferplus_mode}
        if self.labels == "valence":
            return {"kind": "valence", "seed": int(data_seed), "raters": val.RATERS,
                    "csv": str(Path(valence_csv).expanduser().resolve()) if valence_csv else None}
        if self.labels == "five":
            return {"kind": "five"}
        return None


def train_transform(recipe: Recipe, spec: InputSpec) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor]:
    """(B, S, S) uint8 training faces -> network input per `recipe.augmentation`, random choices
    from the generator: 'paper' (the core paper's rotation/flip/crop), 'none' (the evaluation
    transform), 'ten-crop' (one of the ten crops per image, drawn anew each time: 'online')."""
    if recipe.augmentation == "paper":
        return augment
    if recipe.augmentation == "none":
        return lambda images, generator: evaluate(images, spec)
    if recipe.augmentation == "ten-crop":
        full = replace(spec, size=spec.resize or spec.size)
        return lambda images, generator: random_crop_of_ten(evaluate(images, full), spec.size, generator)
    raise ValueError(f"unknown augmentation {recipe.augmentation!r}")


def infer(model: torch.nn.Module, images: torch.Tensor, spec: InputSpec, tta: str = "none") -> torch.Tensor:
    """Float32 logits (or log-probabilities under ten-crop) of (B, S, S) uint8 faces."""
    if tta == "none":
        return model(evaluate(images, spec)).float()
    if tta == "ten-crop":
        full = spec.resize or images.shape[-1]
        if full <= spec.size:
            raise InterpretError(f"--tta ten-crop needs a crop smaller than the face; this network takes the "
                                 f"whole {spec.size}x{spec.size} face")
        return ten_crop_logits(model, evaluate(images, replace(spec, size=full)), spec.size)
    raise InterpretError(f"--tta must be one of {', '.join(TTA)}, got {tta!r}")


def _wu_configure(options):
    from interpret.systems.sequences import sequence_config

    return sequence_config(options)


def _wu_finish(*args, **kwargs):
    from interpret.systems.sequences import finish_wu2019

    return finish_wu2019(*args, **kwargs)


SPECS = {
    "liu2019": TrainSpec(
        {"paper": _adam("paper", 1e-3, 32, 30)}, "paper", labels="valence", classes=val.LEVEL_NAMES,
        penalty=l2_penalty),
    "djellali2021": TrainSpec(
        {"paper": _adam("paper", 1e-4, 64, 50), "fast": _adam("fast", 1e-3, 64, 12, patience=4)}, "paper"),
    "wu2019": TrainSpec(
        {"paper": _adam("paper", 1e-3, 32, 100, patience=10), "fast": _adam("fast", 1e-3, 32, 20, patience=5)},
        "paper", configure=_wu_configure, finish=_wu_finish),
    "wang2022": TrainSpec(
        {"paper": _adam("paper", 1e-3, 32, 50, augmentation="ten-crop"),
         "fast": _adam("fast", 1e-3, 32, 15, patience=5, augmentation="ten-crop")},
        "paper", labels="five", classes=FIVE_CLASSES),
}


def train_spec(arch: str, l2_convention: str | None = None) -> TrainSpec:
    """The arch's spec; every other architecture trains the core paper's way. `l2_convention`
    ('keras' or 'half', SEEDS.md §1.5) sets liu2019's penalty; other architectures have none."""
    spec = SPECS.get(arch, TrainSpec(RECIPES, "fast"))
    if l2_convention is None:
        return spec
    if spec.penalty is None:
        raise InterpretError(f"--l2-convention applies to liu2019's FC penalty; {arch} has none")
    if l2_convention not in ("keras", "half"):
        raise InterpretError(f"--l2-convention must be keras or half, got {l2_convention!r}")
    return replace(spec, penalty=functools.partial(l2_penalty, convention=l2_convention))

