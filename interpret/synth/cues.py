"""Appearance cues of the planted AUs: wrinkles, furrows and bulges, drawn from landmarks.

Each cue's contrast (grey levels) grows with its AU's amount (0..1), so intensity A..E is
graded in appearance as well as in landmark motion. Opaque lines go on the sharp layer,
bulges and hollows on the soft (blurred, additive) layer.
"""

from __future__ import annotations

import numpy as np

from interpret.synth.draw import chaikin, ellipse, line
from interpret.synth.shape import Identity

# Fixed chin-dimpling offsets (canonical units) for the AU17 "orange peel".
_CHIN_DOTS = np.array([(-.12, .05), (-.04, .02), (.05, .06), (.13, .03), (-.08, .12), (.02, .13), (.1, .11)])


def draw(sharp, soft, q, amounts: dict[int, float], ident: Identity, u: float, dimple_side: int) -> None:
    """Draw every cue whose AU has a positive amount, plus the identity's static folds.

    `q` are the pixel landmarks of the canonical canvas, `u` its inter-ocular distance in pixels.
    """
    a = {au: v for au, v in amounts.items() if v > 0}
    skin = ident.skin

    def dark(c: float) -> float:
        return skin - c

    mid_x = q[27:31, 0].mean()
    # Nasolabial folds: static depth of the identity, deepened by AU12.
    depth = 15 * ident.folds + 42 * a.get(12, 0)
    if depth >= 1:
        for s, wing, corner in ((-1, 31, 48), (1, 35, 54)):
            start = q[wing] + (s * .07 * u, -.05 * u)
            end = q[corner] + (s * .1 * u, .1 * u)
            bend = (start + end) / 2 + (s * .08 * u, 0)
            line(sharp, chaikin(np.array([start, bend, end])), dark(depth), 1)
    if 12 in a:
        for s, corner in ((-1, 48), (1, 54)):
            ellipse(soft, q[corner] + (s * .22 * u, -.28 * u), (.17 * u, .13 * u), 16 * a[12])
            ellipse(sharp, q[corner] + (s * .02 * u, 0), (1.2, 1.2), ident.lip - 30 * a[12] - 20)
    if 1 in a:
        top = min(q[21, 1], q[22, 1])
        for k in range(3):
            y = top - (.13 + .1 * k) * u
            xs = np.linspace(-.35, .35, 5) * u
            pts = np.stack([mid_x + xs, y + .05 * u * (xs / u) ** 2 / .12], 1)
            line(sharp, pts, dark(28 * a[1] * (1 - .2 * k)), 1)
    if 2 in a:
        for idx in ((17, 18, 19), (26, 25, 24)):
            for k in range(2):
                pts = q[list(idx)] - (0, (.13 + .1 * k) * u)
                line(sharp, chaikin(pts), dark(24 * a[2] * (1 - .25 * k)), 1)
    if 4 in a:
        for s, brow in ((-1, 21), (1, 22)):
            x = mid_x + s * .065 * u
            top = q[brow, 1] - .03 * u
            pts = np.array([(x + s * .012 * u, top), (x, top + .16 * u)])
            line(sharp, pts, dark(38 * a[4] + 8 * ident.folds), 1)
            ellipse(soft, q[brow] + (-s * .05 * u, .14 * u), (.12 * u, .05 * u), -14 * a[4])
        ellipse(soft, (mid_x, q[27, 1] - .1 * u), (.05 * u, .09 * u), 8 * a[4])
    if 6 in a:
        for s, outer, lid in ((-1, 36, (39, 40, 41, 36)), (1, 45, (42, 47, 46, 45))):
            pts = q[list(lid)] + (0, .09 * u)
            pts[-1] += (s * .04 * u, -.02 * u)
            line(sharp, chaikin(pts), dark(28 * a[6]), 1)
            for ang in (-.45, 0.0, .45):
                d = np.array([s * np.cos(ang), np.sin(ang)]) * u
                start = q[outer] + (s * .05 * u, 0)
                line(sharp, np.array([start, start + .12 * d]), dark(30 * a[6]), 1)
            eye = q[list(lid)].mean(0)
            ellipse(soft, eye + (-s * .02 * u, .3 * u), (.2 * u, .12 * u), 16 * a[6])
    if 7 in a:
        for lid in ((39, 40, 41, 36), (42, 47, 46, 45)):
            line(sharp, chaikin(q[list(lid)] + (0, .045 * u)), dark(22 * a[7]), 1)
            line(sharp, chaikin(q[list(lid)] + (0, .01 * u)), dark(30 + 15 * a[7]), 1)
    if 9 in a:
        for k, y in enumerate((.06, .13, .2)):
            yy = q[27, 1] + y * u
            xs = np.linspace(-.12, .12, 5) * u
            pts = np.stack([mid_x + xs, yy - .35 * np.abs(xs) * (1 - .3 * k)], 1)
            line(sharp, pts, dark(36 * a[9]), 1)
        for s, wing in ((-1, 31), (1, 35)):
            pts = np.array([q[wing] + (s * .03 * u, -.12 * u), q[wing] + (s * .08 * u, .0)])
            line(sharp, pts, dark(26 * a[9]), 1)
        ellipse(soft, q[33] + (0, .07 * u), (.17 * u, .05 * u), -10 * a[9])
    if 10 in a:
        for s, wing in ((-1, 31), (1, 35)):
            pts = chaikin(np.array([q[wing] + (s * .04 * u, -.05 * u), q[wing] + (s * .08 * u, .1 * u),
                                    q[wing] + (s * .08 * u, .22 * u)]))
            line(sharp, pts, dark(26 * a[10]), 1)
        ellipse(soft, (q[51, 0], (q[33, 1] + q[51, 1]) / 2), (.16 * u, .06 * u), -8 * a[10])
    if 14 in a:
        s, corner = (-1, 48) if dimple_side < 0 else (1, 54)
        c = q[corner] + (s * .06 * u, -.01 * u)
        line(sharp, chaikin(np.array([c + (0, -.06 * u), c + (s * .03 * u, 0), c + (0, .06 * u)])), dark(45 * a[14]), 1)
        ellipse(sharp, q[corner] + (s * .015 * u, 0), (1.3, 1.3), ident.lip - 25 * a[14] - 20)
        ellipse(soft, c + (s * .07 * u, -.02 * u), (.06 * u, .09 * u), 12 * a[14])
    if 15 in a:
        for s, corner in ((-1, 48), (1, 54)):
            pts = np.array([q[corner] + (s * .03 * u, .03 * u), q[corner] + (s * .08 * u, .2 * u)])
            line(sharp, pts, dark(28 * a[15]), 1)
            ellipse(soft, q[corner] + (s * .03 * u, .1 * u), (.06 * u, .08 * u), -11 * a[15])
    if 17 in a:
        chin = np.array([q[8, 0], (q[57, 1] + q[8, 1]) / 2 + .04 * u])
        ellipse(soft, chin, (.24 * u, .14 * u), 15 * a[17])
        furrow = np.array([q[59] + (-.02 * u, .12 * u), (q[57, 0], q[57, 1] + (.11 - .05 * a[17]) * u),
                           q[55] + (.02 * u, .12 * u)])
        line(sharp, chaikin(furrow), dark(30 * a[17] + 5 * ident.folds), 1)
        for dx, dy in _CHIN_DOTS:
            ellipse(sharp, chin + (dx * u, dy * u), (1.1, .7), dark(12 * a[17]))
    if 20 in a:
        for s, corner in ((-1, 48), (1, 54)):
            pts = np.array([q[corner] + (s * .05 * u, .01 * u), q[corner] + (s * .2 * u, .05 * u)])
            line(sharp, pts, dark(26 * a[20]), 1)
            ellipse(soft, q[corner] + (s * .12 * u, .06 * u), (.08 * u, .05 * u), -9 * a[20])
    if 23 in a:
        line(sharp, chaikin(q[48:60], closed=True), ident.lip - 24 * a[23], 1, closed=True)
        for s, corner in ((-1, 48), (1, 54)):
            ellipse(soft, q[corner] + (s * .05 * u, 0), (.05 * u, .05 * u), 7 * a[23])
    if 24 in a:
        for top, sign in ((q[[49, 50, 51, 52, 53]], -1), (q[[59, 58, 57, 56, 55]], 1)):
            ellipse(soft, top.mean(0) + (0, sign * .07 * u), (.26 * u, .045 * u), 12 * a[24])
            line(sharp, chaikin(top + (0, sign * .13 * u)), dark(20 * a[24]), 1)
