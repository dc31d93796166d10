"""CK+-like sequences of synthetic faces: subjects, sequences ramping from neutral to apex."""

from __future__ import annotations

import numpy as np

from interpret.data.faceset import FaceSet, RawSequence, faceset_from_sequences
from interpret.errors import InterpretError
from interpret.facs import CKPLUS_EMOTIONS, SYNTHETIC_AUS
from interpret.synth.labels import sample_labels
from interpret.synth.render import FRAME, Scene, render
from interpret.synth.shape import Identity, deform, sample_identity

# Sequences per subject, 1..6, weighted towards more (CK+ averages 4.8).
_SEQUENCES_P = np.array([.08, .1, .14, .18, .22, .28])


def _check(subjects: int, frames: tuple[int, int]) -> tuple[int, int]:
    if int(subjects) < 1:
        raise InterpretError(f"synthetic data needs at least 1 subject, got {subjects}")
    lo, hi = (int(f) for f in frames)
    if lo < 2 or hi < lo:
        raise InterpretError(f"frames per sequence must be a range (lo, hi) with 2 <= lo <= hi, got {frames}")
    return lo, hi


def _ramp(n: int, rng: np.random.Generator) -> np.ndarray:
    """Expression amount per frame: 0 at the first frame, 1 at the last, eased, with a random onset."""
    t = np.linspace(0.0, 1.0, n)
    onset = rng.uniform(0.0, .35)
    x = np.clip((t - onset) / (1.0 - onset), 0.0, 1.0)
    s = x * x * (3 - 2 * x)
    s[0] = 0.0
    return s


def _sequence(subject: str, number: int, ident: Identity, rng: np.random.Generator, lo: int, hi: int) -> RawSequence:
    emotion, facs = sample_labels(rng)
    n = int(rng.integers(lo, hi + 1))
    ramp = _ramp(n, rng)
    dimple_side = -1 if rng.random() < .5 else 1
    base = dict(angle=rng.uniform(-5, 5), scale=rng.uniform(.93, 1.05), shift=rng.uniform(-4, 4, 2),
                light=rng.uniform(-.6, .6), light_angle=rng.uniform(0, 2 * np.pi), noise=rng.uniform(1.5, 4.0))
    drift = np.cumsum(rng.normal(0, [.35, .003, .35, .35], size=(n, 4)), axis=0)  # slow head motion
    drift -= drift[0]
    frames, marks = [], []
    for i in range(n):
        amounts = {au: level / 5 * ramp[i] for au, level in facs.items()}
        scene = Scene(angle=base["angle"] + drift[i, 0], scale=base["scale"] + drift[i, 1],
                      shift=tuple(base["shift"] + drift[i, 2:]), light=base["light"],
                      light_angle=base["light_angle"], noise=base["noise"])
        image, points = render(ident, deform(ident.shape, amounts, dimple_side), amounts, scene, rng, dimple_side)
        frames.append(image)
        marks.append(points)
    return RawSequence(subject=subject, number=number, frames=frames, landmarks=marks,
                       frame_numbers=list(range(1, n + 1)), emotion=emotion, facs=facs, paths=[""] * n)


def generate_sequences(subjects: int = 40, seed: int = 0, frames: tuple[int, int] = (6, 12),
                       first: int = 0) -> list[RawSequence]:
    """Full-frame sequences of `subjects` synthetic identities, subjects first .. first + subjects - 1.

    Subject k draws everything from `np.random.default_rng([seed, k])`, so it is the same
    whatever the number of subjects: `first=n` gives n + 1, n + 2, ..., identities that a data
    set of n subjects does not hold, ids included. Ids are non-contiguous like CK+'s (S005, S011, ...).
    """
    lo, hi = _check(subjects, frames)
    if int(first) < 0:
        raise InterpretError(f"the first synthetic subject must be 0 or more, got {first}")
    out: list[RawSequence] = []
    number = 5
    for k in range(int(first) + int(subjects)):
        rng = np.random.default_rng([int(seed), k])
        gap = int(rng.integers(1, 9))
        number = 5 if k == 0 else number + gap
        if k < first:  # only its id gap: the ids of later subjects add up the gaps before them
            continue
        ident = sample_identity(rng, FRAME)
        subject = f"S{number:03d}"
        for j in range(1 + int(rng.choice(6, p=_SEQUENCES_P))):
            out.append(_sequence(subject, j + 1, ident, rng, lo, hi))
    return out


def synthetic_faceset(subjects: int = 40, seed: int = 0, size: int = 99, frames: tuple[int, int] = (6, 12),
                      first: int = 0) -> FaceSet:
    """The synthetic default data set, cropped like CK+ (landmark box, size x size); `first`: see
    `generate_sequences`."""
    return faceset_from_sequences(generate_sequences(subjects, seed, frames, first), au_codes=SYNTHETIC_AUS,
                                  emotions=CKPLUS_EMOTIONS, source="synthetic", size=size)
