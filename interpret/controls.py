"""Negative controls: networks and layers in which a sound mapping method finds few detectors.

- untrained: the run's architecture with the weights its training started from (same seed);
- shuffled: a network trained on emotion labels permuted across images (`shuffle_targets`,
  `interpret train ... --shuffle-labels`);
- rotation: the trained layer with its channel basis mixed by a seeded random orthogonal
  matrix (NetDissect's baseline): the layer holds the same information, spread over all maps.
"""

from __future__ import annotations

import numpy as np
import torch

from interpret.models import build_model

CONTROLS = ("untrained", "rotation", "shuffled")


def shuffle_targets(targets, seed: int) -> np.ndarray:
    """Class targets of the labelled images permuted among them (seeded); unlabelled rows stay -1.

    Per image, as the data randomization test of Adebayo et al. (2018): no label keeps any link
    to its image, the neutral first frames of sequences included (moving whole sequences would
    keep "first frame = neutral", an expression-vs-neutral signal a network learns from the AUs).
    """
    targets = np.asarray(targets).copy()
    labelled = np.flatnonzero(targets >= 0)
    order = np.random.default_rng([int(seed), 0x5F1]).permutation(len(labelled))
    targets[labelled] = targets[labelled[order]]
    return targets


def untrained_model(run) -> torch.nn.Module:
    """The run's network as training initialised it (same seed), in eval mode on the run's device."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(run.config["seed"]))
        model = build_model(run.config["arch"], len(run.config["classes"]))
    return model.to(run.device).eval()


def random_rotation(n: int, seed: int) -> torch.Tensor:
    """(n, n) Haar-random orthogonal matrix (QR of a seeded Gaussian, signs fixed)."""
    rng = np.random.default_rng([int(seed), 0x207])
    q, r = np.linalg.qr(rng.normal(size=(n, n)))
    return torch.from_numpy(q * np.sign(np.diag(r))).float()


def rotate(act: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """Mix the channels of (B, C, h, w) maps: out[:, i] = Σ_j R[i, j] act[:, j]."""
    return torch.einsum("ij,bjhw->bihw", rotation.to(act.dtype), act)
