"""Small OpenCV drawing helpers with sub-pixel, anti-aliased geometry (pixel-float input)."""

from __future__ import annotations

import functools

import cv2
import numpy as np

_SHIFT = 4
_ONE = 1 << _SHIFT


def fixed(points: np.ndarray) -> np.ndarray:
    """Pixel-float points -> OpenCV fixed-point int32 (N, 1, 2)."""
    return np.round(np.asarray(points, np.float64) * _ONE).astype(np.int32).reshape(-1, 1, 2)


def chaikin(points: np.ndarray, closed: bool = False, iterations: int = 2) -> np.ndarray:
    """Corner-cutting smoothing: a polyline through landmarks becomes a smooth curve."""
    points = np.asarray(points, np.float64)
    return _chaikin_matrix(len(points), closed, iterations) @ points


@functools.lru_cache(maxsize=None)
def _chaikin_matrix(n: int, closed: bool, iterations: int) -> np.ndarray:
    """The linear map of `iterations` Chaikin steps on n points."""
    p = np.eye(n)
    for _ in range(iterations):
        nxt = np.roll(p, -1, axis=0) if closed else p[1:]
        cur = p if closed else p[:-1]
        q = np.empty((2 * len(cur), n))
        q[0::2] = .75 * cur + .25 * nxt
        q[1::2] = .25 * cur + .75 * nxt
        p = q if closed else np.vstack([p[:1], q, p[-1:]])
    return p


def fill(img: np.ndarray, points: np.ndarray, tone: float) -> None:
    """Filled polygon; anti-aliased on uint8 images."""
    aa = cv2.LINE_AA if img.dtype == np.uint8 else cv2.LINE_8
    cv2.fillPoly(img, [fixed(points)], _tone(img, tone), aa, _SHIFT)


def line(img: np.ndarray, points: np.ndarray, tone: float, thickness: int = 1, closed: bool = False) -> None:
    """Polyline; anti-aliased on uint8 images."""
    aa = cv2.LINE_AA if img.dtype == np.uint8 else cv2.LINE_8
    cv2.polylines(img, [fixed(points)], closed, _tone(img, tone), max(1, int(round(thickness))), aa, _SHIFT)


def ellipse(img: np.ndarray, centre, axes, tone: float, angle: float = 0.0) -> None:
    """Filled ellipse (axes are semi-axes in pixels)."""
    aa = cv2.LINE_AA if img.dtype == np.uint8 else cv2.LINE_8
    c = (int(round(centre[0] * _ONE)), int(round(centre[1] * _ONE)))
    ax = (max(1, int(round(axes[0] * _ONE))), max(1, int(round(axes[1] * _ONE))))
    cv2.ellipse(img, c, ax, float(angle), 0, 360, _tone(img, tone), -1, aa, _SHIFT)


def _tone(img: np.ndarray, tone: float):
    return min(255, max(0, int(round(tone)))) if img.dtype == np.uint8 else float(tone)


def clip_paint(img: np.ndarray, region: np.ndarray, paint) -> None:
    """Apply `paint(patch)` to a copy of the bounding box of polygon `region`; keep it inside the polygon."""
    h, w = img.shape
    x0, y0 = np.maximum(np.floor(region.min(0)).astype(int) - 1, 0)
    x1, y1 = np.minimum(np.ceil(region.max(0)).astype(int) + 2, (w, h))
    if x1 <= x0 or y1 <= y0:
        return
    patch = img[y0:y1, x0:x1].copy()
    paint(patch, np.array([x0, y0], np.float64))
    mask = np.zeros(patch.shape, np.uint8)
    cv2.fillPoly(mask, [fixed(region - (x0, y0))], 255, cv2.LINE_AA, _SHIFT)
    alpha = mask.astype(np.float32) / 255.0
    base = img[y0:y1, x0:x1].astype(np.float32)
    img[y0:y1, x0:x1] = np.round(base + alpha * (patch.astype(np.float32) - base)).astype(img.dtype)
