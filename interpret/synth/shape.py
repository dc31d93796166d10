"""Face geometry: a mean 68-point shape, identities drawn around it, and each AU's landmark motion.

Coordinates are canonical: units of the inter-ocular distance (IOD, between eye centres),
origin midway between the eyes, x towards the image right, y down. "Outward" below means away
from the facial midline.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

#: Symmetrised mean iBUG-68 shape (neutral, lips closed), canonical units.
MEAN_SHAPE = np.array([
    (-1.166, 0.013), (-1.160, 0.323), (-1.130, 0.636), (-1.068, 0.944),
    (-0.949, 1.231), (-0.764, 1.482), (-0.539, 1.697), (-0.286, 1.871),
    (0.000, 1.922), (0.286, 1.871), (0.539, 1.697), (0.764, 1.482),
    (0.949, 1.231), (1.068, 0.944), (1.130, 0.636), (1.160, 0.323),
    (1.166, 0.013), (-0.924, -0.218), (-0.778, -0.332), (-0.583, -0.362),
    (-0.383, -0.329), (-0.192, -0.248), (0.192, -0.248), (0.383, -0.329),
    (0.583, -0.362), (0.778, -0.332), (0.924, -0.218), (0.000, -0.018),
    (0.000, 0.184), (0.000, 0.387), (0.000, 0.595), (-0.227, 0.725),
    (-0.118, 0.769), (0.000, 0.807), (0.118, 0.769), (0.227, 0.725),
    (-0.693, 0.001), (-0.572, -0.071), (-0.423, -0.068), (-0.298, 0.028),
    (-0.435, 0.055), (-0.580, 0.054), (0.298, 0.028), (0.423, -0.068),
    (0.572, -0.071), (0.693, 0.001), (0.580, 0.054), (0.435, 0.055),
    (-0.453, 1.090), (-0.288, 1.024), (-0.120, 0.995), (0.000, 1.023),
    (0.120, 0.995), (0.288, 1.024), (0.453, 1.090), (0.295, 1.260),
    (0.131, 1.335), (0.000, 1.349), (-0.131, 1.335), (-0.295, 1.260),
    (-0.382, 1.102), (-0.122, 1.120), (0.000, 1.130), (0.122, 1.120),
    (0.382, 1.102), (0.122, 1.120), (0.000, 1.130), (-0.122, 1.120),
])

_SIDE = np.sign(np.round(MEAN_SHAPE[:, 0], 3))


@dataclass(frozen=True)
class Identity:
    """One synthetic subject: neutral landmarks (canonical units) and appearance (grey levels)."""

    shape: np.ndarray
    skin: float
    hair: float
    brow: float
    iris: float
    lip: float
    background: float
    brow_width: float      # IOD units
    hairline: float        # height of the hairline above the eye line, IOD units
    folds: float           # 0..1 static depth of nasolabial and glabellar folds
    texture: np.ndarray    # (H, W) float32 low-frequency skin texture of the canvas, grey levels


def sample_identity(rng: np.random.Generator, frame: tuple[int, int]) -> Identity:
    """Draw face shape, feature sizes and spacing, tones and hair from `rng`; `frame` = (W, H)."""
    p = MEAN_SHAPE.copy()
    u = lambda lo, hi: float(rng.uniform(lo, hi))  # noqa: E731
    # Feature sizes, each around its own centre.
    eye_sx, eye_sy = u(.85, 1.12), u(.8, 1.2)
    for eye in (slice(36, 42), slice(42, 48)):
        c = p[eye].mean(0)
        p[eye] = c + (p[eye] - c) * (eye_sx, eye_sy)
    brow_dy, brow_arch = u(-.07, .07), u(-.05, .05)
    p[17:27, 1] += brow_dy + brow_arch * np.array([1, -.3, -1, -.3, .6, .6, -.3, -1, -.3, 1]) * .5
    nose_sx, nose_len = u(.85, 1.2), u(.9, 1.1)
    p[27:36, 1] = p[27, 1] + (p[27:36, 1] - p[27, 1]) * nose_len
    p[31:36, 0] *= nose_sx
    lower = u(.92, 1.08)  # length of the lower face
    below = p[:, 1] > .3
    p[below, 1] = .3 + (p[below, 1] - .3) * lower
    p[48:68, 1] += (p[33, 1] - MEAN_SHAPE[33, 1]) * .5  # mouth follows the nose base a little
    mouth_sx, upper_lip, lower_lip = u(.85, 1.15), u(.75, 1.3), u(.8, 1.15)
    p[48:68, 0] *= mouth_sx
    inner_y = p[60:68, 1].mean()
    for idx, k in (((49, 50, 51, 52, 53), upper_lip), ((55, 56, 57, 58, 59), lower_lip)):
        idx = list(idx)
        p[idx, 1] = inner_y + (p[idx, 1] - inner_y) * k
    face_w, chin_w = u(.9, 1.1), u(.85, 1.15)
    p[0:17, 0] *= face_w
    p[4:13, 0] *= np.interp(np.abs(np.arange(4, 13) - 8), [0, 4], [chin_w, 1.0])
    p += rng.normal(0, .01, p.shape)  # slight asymmetry
    p[[65, 66, 67]] = p[[63, 62, 61]]  # lips closed at rest
    skin = u(105, 190)
    hair = u(15, 95) if rng.random() < .85 else u(120, 175)
    background = u(30, 225)
    if abs(background - skin) < 30:
        background = skin + 40 if skin < 150 else skin - 60
    return Identity(
        shape=p, skin=skin, hair=hair, brow=min(hair + u(-10, 30), skin - 45), iris=u(25, 90),
        lip=skin - u(18, 45), background=background, brow_width=u(.07, .12), hairline=u(.85, 1.3),
        folds=float(rng.beta(1.2, 4)),
        texture=cv2.resize(rng.normal(0, u(1.5, 4.5), (12, 12)).astype(np.float32), frame,
                           interpolation=cv2.INTER_CUBIC),
    )


# AU -> [(landmarks, outward dx, dy)] at full intensity (E), canonical units.
_JAW_DROP = ((8,), 1.0), ((7, 9), .95), ((6, 10), .8), ((5, 11), .55), ((4, 12), .25), ((3, 13), .06), \
    ((56, 57, 58), .85), ((55, 59), .65), ((65, 66, 67), .85), ((48, 54), .2), ((60, 64), .25)
MOTION: dict[int, list[tuple[tuple[int, ...], float, float]]] = {
    1: [((21, 22), 0, -.20), ((20, 23), 0, -.14), ((19, 24), 0, -.07), ((18, 25), 0, -.02)],
    2: [((17, 26), .02, -.20), ((18, 25), .01, -.17), ((19, 24), 0, -.10), ((20, 23), 0, -.03)],
    4: [((21, 22), -.08, .13), ((20, 23), -.06, .12), ((19, 24), -.04, .10), ((18, 25), -.02, .08),
        ((17, 26), -.01, .06)],
    5: [((37, 38, 43, 44), 0, -.075)],
    6: [((40, 41, 46, 47), 0, -.03), ((36, 45), 0, -.01)],
    7: [((40, 41, 46, 47), 0, -.05), ((37, 38, 43, 44), 0, .02)],
    9: [((31, 35), .02, -.07), ((32, 34), .01, -.055), ((33,), 0, -.045), ((30,), 0, -.03), ((29,), 0, -.015)],
    10: [((50, 51, 52), 0, -.09), ((49, 53), 0, -.065), ((48, 54), 0, -.02), ((61, 62, 63), 0, -.075),
         ((60, 64), 0, -.02)],
    12: [((48, 54), .12, -.14), ((60, 64), .10, -.12), ((49, 53), .05, -.075), ((59, 55), .05, -.08),
         ((50, 52), .01, -.02), ((58, 56), .02, -.03), ((61, 63), .02, -.04), ((67, 65), .02, -.045),
         ((57, 66), 0, -.015)],
    15: [((48, 54), .03, .12), ((60, 64), .03, .10), ((49, 53), .01, .04), ((59, 55), .01, .06)],
    17: [((56, 57, 58), 0, -.07), ((55, 59), 0, -.035), ((65, 66, 67), 0, -.035)],
    20: [((48, 54), .14, .02), ((60, 64), .12, .02), ((49, 53), .07, .01), ((59, 55), .07, 0), ((50, 52), .02, .015),
         ((58, 56), .02, -.03), ((57,), 0, -.035), ((51,), 0, .015), ((61, 63), .02, 0), ((67, 65), .02, 0)],
    23: [((49, 50, 51, 52, 53), 0, .04), ((55, 56, 57, 58, 59), 0, -.07), ((48, 54), -.03, 0), ((60, 64), -.02, 0)],
    24: [((49, 50, 51, 52, 53), 0, .05), ((55, 56, 57, 58, 59), 0, -.08), ((48, 54), -.01, .01)],
    25: [((65, 66, 67), 0, .075), ((55, 56, 57, 58, 59), 0, .05), ((61, 62, 63), 0, -.015)],
    26: [(idx, 0, .28 * w) for idx, w in _JAW_DROP],
    27: [(idx, 0, .55 * w) for idx, w in _JAW_DROP]
        + [((48, 54), -.06, 0), ((60, 64), -.05, 0), ((49, 50, 51, 52, 53), 0, -.03), ((61, 62, 63), 0, -.03)],
}
#: AU14 (dimpler) is planted on one side: (landmarks of the image-left corner, dx, dy); mirrored for the right.
DIMPLER = [((48,), .035, -.06), ((60,), .03, -.05), ((49, 59), .01, -.025)]
_MIRROR = {48: 54, 60: 64, 49: 53, 59: 55}


def _displacements() -> dict[int, np.ndarray]:
    """(68, 2) landmark displacement of each AU at full intensity; AU14 on the image-left corner."""
    out = {}
    for au, moves in MOTION.items():
        d = np.zeros((68, 2))
        for idx, dx, dy in moves:
            idx = list(idx)
            d[idx, 0] += dx * _SIDE[idx]
            d[idx, 1] += dy
        out[au] = d
    d = np.zeros((68, 2))
    for idx, dx, dy in DIMPLER:
        d[list(idx)] += (dx, dy)
    out[14] = d
    return out


_DISPLACEMENT = _displacements()
_MIRROR_INDEX = np.array([_MIRROR.get(i, {v: k for k, v in _MIRROR.items()}.get(i, i)) for i in range(68)])


def deform(shape: np.ndarray, amounts: dict[int, float], dimple_side: int = -1) -> np.ndarray:
    """Move the neutral landmarks by each AU's motion scaled by its amount (0..1).

    `dimple_side` -1 puts AU14 on the image-left mouth corner, +1 on the image-right one.
    """
    out = shape.copy()
    for au, a in amounts.items():
        if a > 0:
            d = _DISPLACEMENT[au]
            if au == 14 and dimple_side > 0:
                d = d[_MIRROR_INDEX] * (-1, 1)
            out += a * d
    return out
