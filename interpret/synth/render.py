"""Draw one grey frame from landmarks: face, features, AU cues, pose, light and noise.

Everything is drawn from the landmark positions in an upright canonical canvas, then the pose
(a similarity transform) moves image and landmarks together, so the returned landmarks are
where the drawn features are.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from interpret.synth import cues
from interpret.synth.draw import chaikin, clip_paint, ellipse, fill, line
from interpret.synth.shape import Identity

#: Full frame size (width, height) in pixels; the landmark box of a face is about 90 x 95 px.
FRAME = (144, 176)
#: Canonical placement: the point between the eyes, and the inter-ocular distance, in pixels.
ORIGIN = np.array([72.0, 64.0])
IOD_PX = 38.0
_POSE_CENTRE = (72.0, 100.0)


@dataclass(frozen=True)
class Scene:
    """Pose, light and sensor of one frame."""

    angle: float = 0.0       # degrees, counter-clockwise
    scale: float = 1.0
    shift: tuple[float, float] = (0.0, 0.0)
    light: float = 0.0       # strength of the linear light gradient (relative, per frame width)
    light_angle: float = 0.0  # radians, direction the light comes from
    noise: float = 2.0       # grey levels, Gaussian sensor noise


def pose_matrix(scene: Scene) -> np.ndarray:
    """2x3 canonical-canvas -> image affine map of `scene`."""
    m = cv2.getRotationMatrix2D(_POSE_CENTRE, scene.angle, scene.scale)
    m[:, 2] += scene.shift
    return m


def render(ident: Identity, points: np.ndarray, amounts: dict[int, float], scene: Scene,
           noise_rng: np.random.Generator, dimple_side: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) uint8 frame and its (68, 2) float32 image landmarks.

    `points` are the (deformed) canonical landmarks; `amounts` the AU amounts 0..1 that set the
    appearance cues' strength.
    """
    q = ORIGIN + points * IOD_PX
    q0 = ORIGIN + ident.shape * IOD_PX
    w, h = FRAME
    sharp = np.full((h, w), int(round(ident.background)), np.uint8)
    soft = np.zeros((h, w), np.float32)
    _head(sharp, soft, q, ident)
    _brows(sharp, q, ident)
    _eyes(sharp, soft, q, q0, ident)
    _nose(sharp, soft, q, ident)
    _mouth(sharp, soft, q, ident)
    cues.draw(sharp, soft, q, amounts, ident, IOD_PX, dimple_side)

    img = sharp.astype(np.float32)
    img += cv2.GaussianBlur(soft, (0, 0), 2.2)
    img += ident.texture
    m = pose_matrix(scene)
    img = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    gx = (np.arange(w, dtype=np.float32) - w / 2) * (scene.light * np.cos(scene.light_angle) / w)
    gy = (np.arange(h, dtype=np.float32) - h / 2) * (scene.light * np.sin(scene.light_angle) / w)
    img *= 1.0 + gy[:, None] + gx[None, :]
    img = cv2.GaussianBlur(img, (0, 0), 0.6)
    img += noise_rng.standard_normal((h, w), dtype=np.float32) * scene.noise
    image = np.clip(img + .5, 0, 255).astype(np.uint8)
    marks = q @ m[:, :2].T + m[:, 2]
    return image, marks.astype(np.float32)



def _head(sharp, soft, q, ident: Identity) -> None:
    """Hair, ears, neck, face skin and the broad 3D shading of the face."""
    u = IOD_PX
    skin = ident.skin
    cx = (q[0, 0] + q[16, 0]) / 2
    ax = (q[16, 0] - q[0, 0]) / 2
    eye_y = (q[0, 1] + q[16, 1]) / 2
    ay = 1.75 * u
    ellipse(sharp, (cx, eye_y - .05 * u), (ax * 1.13, ay * 1.08), ident.hair)
    for s, j in ((-1, 1), (1, 15)):
        ellipse(sharp, (q[j, 0] + s * .06 * u, q[j, 1] - .05 * u), (.13 * u, .3 * u), skin * .9)
    neck_bottom = FRAME[1] + 2.0
    neck = [q[5], q[11], (q[11, 0] + .05 * u, neck_bottom), (q[5, 0] - .05 * u, neck_bottom)]
    fill(sharp, np.array(neck), skin * .88)
    t = np.linspace(np.pi, 2 * np.pi, 24)
    arc = np.stack([cx - ax * np.cos(t), eye_y + ay * np.sin(t)], 1)
    fill(sharp, np.vstack([q[0:17], arc]), skin)
    # Hair above the hairline (lower at the temples), inside the hair's outline.
    hy = eye_y - ident.hairline * u
    xs = np.linspace(-1, 1, 17)
    hairline = np.stack([cx + xs * ax * 1.02, hy + .35 * u * xs ** 2], 1)
    t = np.linspace(0, np.pi, 24)
    top = np.stack([cx + ax * 1.13 * np.cos(t), eye_y - .05 * u - ay * 1.08 * np.sin(t)], 1)
    fill(sharp, np.vstack([hairline, top]), ident.hair)
    # Broad shading (blurred later).
    line(soft, q[0:17], -18, int(.25 * u))
    line(soft, q[4:13] + (0, .14 * u), -28, int(.16 * u))
    for s in (-1, 1):
        ellipse(soft, (cx + s * .6 * u, eye_y + .45 * u), (.25 * u, .15 * u), 6)


def _brows(sharp, q, ident: Identity) -> None:
    """Each brow as a band along its five landmarks, thicker at the inner end."""
    t = ident.brow_width * IOD_PX
    for idx in (list(range(17, 22)), list(range(26, 21, -1))):  # outer -> inner
        c = q[idx]
        prof = np.array([.5, .8, .95, 1.0, 1.0])[:, None] * t
        upper = chaikin(c - np.hstack([np.zeros_like(prof), prof * .45]))
        lower = chaikin(c + np.hstack([np.zeros_like(prof), prof * .55]))
        fill(sharp, np.vstack([upper, lower[::-1]]), ident.brow)


def _eyes(sharp, soft, q, q0, ident: Identity) -> None:
    """Sclera, iris clipped by the lids, lash lines and the upper-lid crease."""
    u = IOD_PX
    skin = ident.skin
    for e in (36, 42):
        o, a, b, i, c, d = q[e:e + 6]  # corners o, i; upper lid a, b; lower lid c, d
        centre = (o + i) / 2
        ellipse(soft, centre - (0, .06 * u), (.3 * u, .17 * u), -11)
        upper = chaikin(np.array([o, a, b, i]))
        lower = chaikin(np.array([i, c, d, o]))
        region = np.vstack([upper, lower])
        fill(sharp, region, min(235.0, skin + 45))
        r = .105 * u
        iris_c = centre + (0, .01 * u)

        def paint(patch, off, iris_c=iris_c, r=r):
            ellipse(patch, iris_c - off, (r, r), ident.iris)
            ellipse(patch, iris_c - off, (r * .45, r * .45), 12)
            ellipse(patch, iris_c - off - (.35 * r, .35 * r), (.9, .9), 225)

        clip_paint(sharp, region, paint)
        line(sharp, upper, min(ident.brow, 45.0), 2)
        line(sharp, lower, skin - 38, 1)
        # Crease: a fixed fold above the neutral lid that the lid can push up but not cross.
        lid0 = q0[e + 1:e + 3]
        crease_y = np.minimum(q[e + 1:e + 3, 1] - .03 * u, lid0[:, 1] - .075 * u)
        crease = np.array([o - (0, .03 * u), *np.stack([q[e + 1:e + 3, 0], crease_y], 1), i - (0, .03 * u)])
        line(sharp, chaikin(crease), skin - 24, 1)


def _nose(sharp, soft, q, ident: Identity) -> None:
    """Side shadows, tip highlight, nostrils and alar creases."""
    u = IOD_PX
    skin = ident.skin
    for s, wing, inner in ((-1, 31, 32), (1, 35, 34)):
        line(soft, np.array([q[27] + (s * .12 * u, .1 * u), q[29] + (s * .14 * u, 0), q[wing] + (0, -.08 * u)]), -9, 3)
        nostril = q[wing] * .5 + q[inner] * .5 + (0, -.015 * u)
        ellipse(sharp, nostril, (.065 * u, .03 * u), max(10.0, skin - 75), angle=-s * 18)
        alar = np.array([q[wing] + (0, -.14 * u), q[wing] + (s * .035 * u, -.06 * u), q[wing], q[inner] + (0, .01 * u)])
        line(sharp, chaikin(alar), skin - 30, 1)
    ellipse(soft, q[30], (.09 * u, .07 * u), 9)
    ellipse(soft, q[33] + (0, .08 * u), (.17 * u, .05 * u), -12)


def _mouth(sharp, soft, q, ident: Identity) -> None:
    """Lips from the outer contour; dark opening and teeth when the inner lips part."""
    u = IOD_PX
    skin = ident.skin
    fill(sharp, chaikin(q[48:60], closed=True), ident.lip)
    upper = chaikin(q[[60, 61, 62, 63, 64]])
    lower = chaikin(q[[64, 65, 66, 67, 60]])
    gap = float(np.max(q[[67, 66, 65], 1] - q[[61, 62, 63], 1]))
    if gap > .4:
        cavity = np.vstack([upper, lower])
        fill(sharp, cavity, 22)
        teeth = min(235.0, skin + 40)

        def paint(patch, off):
            th = min(.15 * u, .5 * gap)
            fill(patch, np.vstack([upper, upper[::-1] + (0, th)]) - off, teeth)
            if gap > .2 * u:
                fill(patch, np.vstack([lower, lower[::-1] - (0, .05 * u)]) - off, teeth - 30)

        clip_paint(sharp, cavity, paint)
        line(sharp, cavity, ident.lip - 25, 1, closed=True)
    else:
        line(sharp, upper, ident.lip - 40, 1)
    for k in (48, 54):
        ellipse(sharp, q[k], (.9, .9), ident.lip - 30)
    ellipse(soft, q[57] + (0, .07 * u), (.2 * u, .05 * u), -11)
    ellipse(soft, q[57] - (0, .07 * u), (.12 * u, .04 * u), 7)
