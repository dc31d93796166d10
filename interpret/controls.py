"""Negative controls: networks and layers in which a sound mapping method finds few detectors.

- untrained: the run's architecture with the weights its training started from (same seed);
- shuffled: a network trained on emotion labels shuffled across sequences (`shuffle_targets`,
  `interpret train ... --shuffle-labels`);
- rotation: the trained layer with its channel basis mixed by a seeded random orthogonal
  matrix (NetDissect's baseline): the layer holds the same information, spread over all maps.
"""

from __future__ import annotations

import numpy as np
import torch

from interpret.models import build_model

CONTROLS = ("untrained", "rotation", "shuffled")


def shuffle_targets(faceset, targets, seed: int) -> np.ndarray:
    """Class targets with whole sequences' labels permuted among the labelled sequences (seeded).

    A sequence keeps one label for all its labelled frames; unlabelled rows stay -1.
    """
    targets = np.asarray(targets).copy()
    _, seq = np.unique(np.asarray(faceset.sequence).astype(str), return_inverse=True)
    labelled = targets >= 0
    sequences = np.unique(seq[labelled])
    first_label = {s: targets[labelled & (seq == s)][0] for s in sequences}
    order = np.random.default_rng([int(seed), 0x5F1]).permutation(len(sequences))
    new = {s: first_label[sequences[j]] for s, j in zip(sequences, order)}
    targets[labelled] = [new[s] for s in seq[labelled]]
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
