"""Sequence labels with CK+-like statistics: emotion, peak AU set and AU intensities."""

from __future__ import annotations

import numpy as np

from interpret.facs import CKPLUS_AU_COUNTS, CKPLUS_EMOTIONS, SYNTHETIC_AUS

#: Share of CK+ sequences with an emotion label (327 of 593).
LABELLED_SHARE = 327 / 593

_EMOTION_NAMES = tuple(CKPLUS_AU_COUNTS)
_EMOTION_P = np.array([CKPLUS_AU_COUNTS[e][0] for e in _EMOTION_NAMES], float)
_EMOTION_P /= _EMOTION_P.sum()

# AU peaks over all 593 CK+ sequences (REFERENCE §5, Lucey 2010 Table 1). What the labelled
# sequences do not account for gives the AU rates of the 266 unlabelled ones.
_ALL_COUNTS = {1: 173, 2: 116, 4: 191, 5: 102, 6: 122, 7: 119, 9: 74, 10: 21, 12: 111, 14: 29, 15: 89,
               17: 196, 20: 77, 23: 59, 24: 57, 25: 287, 26: 48, 27: 81}
_UNLABELLED_P = {
    au: max(.03, (n - sum(counts.get(au, 0) for _, counts in CKPLUS_AU_COUNTS.values())) / 266)
    for au, n in _ALL_COUNTS.items() if au in SYNTHETIC_AUS
}

#: Defining AUs per emotion (CK+ criteria, Lucey 2010 Table 2): any one alternative suffices.
CRITERIA: dict[str, tuple[frozenset[int], ...]] = {
    "anger": (frozenset({23}), frozenset({24})),
    "contempt": (frozenset({14}),),
    "disgust": (frozenset({9}), frozenset({10})),
    "fear": (frozenset({20}), frozenset({1, 2, 4})),
    "happy": (frozenset({12}),),
    "sadness": (frozenset({15}), frozenset({1, 4})),
    "surprise": (frozenset({1, 2}), frozenset({5})),
}

# Intensity A..E of a present AU.
_LEVEL_P = np.array([.07, .16, .29, .29, .19])


def _meets(emotion: str, aus: set[int]) -> bool:
    return any(need <= aus for need in CRITERIA[emotion])


def _couple(aus: set[int]) -> set[int]:
    """FACS-consistent co-occurrence: 26 and 27 exclude each other; a dropped jaw parts the lips."""
    if 27 in aus:
        aus.discard(26)
    if aus & {26, 27}:
        aus.add(25)
    return aus


def sample_labels(rng: np.random.Generator) -> tuple[int | None, dict[int, int]]:
    """(CK+ emotion code or None, {AU: intensity 1..5}) of one sequence.

    Labelled (CK+'s share): emotion in CK+'s proportions, each AU drawn at its CK+ rate for that
    emotion, redrawn until the emotion's defining AUs (`CRITERIA`) are present. Unlabelled: each
    AU at the rate CK+'s 266 unlabelled sequences imply, AU2 mostly with AU1, at least one AU.
    """
    if rng.random() < LABELLED_SHARE:
        name = _EMOTION_NAMES[rng.choice(len(_EMOTION_NAMES), p=_EMOTION_P)]
        n, counts = CKPLUS_AU_COUNTS[name]
        rates = {au: c / n for au, c in counts.items() if au in SYNTHETIC_AUS}
        if 26 in rates and 27 in rates:  # one or the other: draw AU26 among the sequences without AU27
            rates[26] = min(1.0, rates[26] / (1.0 - rates[27]))
        for _ in range(200):  # resample until the emotion's defining AUs are there
            aus = _couple({au for au, p in rates.items() if rng.random() < p})
            if _meets(name, aus):
                break
        emotion = CKPLUS_EMOTIONS.index(name)
    else:
        emotion = None
        aus = set()
        while not aus:
            aus = {au for au, p in _UNLABELLED_P.items() if rng.random() < p}
            if 2 in aus and rng.random() < .8:
                aus.add(1)
            aus = _couple(aus)
    levels = 1 + rng.choice(5, size=len(aus), p=_LEVEL_P)
    return emotion, {au: int(k) for au, k in zip(sorted(aus), levels)}
