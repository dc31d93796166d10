"""PNG sheets of deconvolutions, composed with numpy + cv2 (hundreds of maps in about a second).

Display conventions: an image patch is the network's input (per-image standardized) shown as
128 + 48 z, clipped; a projection is scaled symmetrically around grey, 128 + 127 p / max|p|
per projection (zero is mid-grey, white positive, black negative). Tiles show the unit's whole
receptive-field window; the part of it beyond the image border (where the network sees zero
padding) is painted dark blue. Patches always come before their deconvolutions, in the same order.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

OUTSIDE = (90, 40, 30)  # BGR
GAP = 4
FONT = cv2.FONT_HERSHEY_SIMPLEX
#: A sheet title at this scale stays readable when the sheet is shown 1400 px wide (shrunk only to fit).
TITLE_HEIGHT, TITLE_SCALE = 30, 0.7


def windows(arrays: np.ndarray, index: np.ndarray, tops: np.ndarray, lefts: np.ndarray,
            size) -> tuple[np.ndarray, np.ndarray]:
    """The windows (n, rows, cols) of arrays[index[i]] (arrays: (N, H, W)) at (tops[i], lefts[i]),
    `size` = side or (rows, cols), zero beyond the array, and masks of their inside."""
    h, w = arrays.shape[-2:]
    rows, cols = (size, size) if np.isscalar(size) else size
    r = np.asarray(tops)[:, None] + np.arange(rows)
    c = np.asarray(lefts)[:, None] + np.arange(cols)
    inside = ((r >= 0) & (r < h))[:, :, None] & ((c >= 0) & (c < w))[:, None, :]
    values = arrays[np.asarray(index)[:, None, None], r.clip(0, h - 1)[:, :, None], c.clip(0, w - 1)[:, None, :]]
    values[~inside] = 0
    return values, inside


def patch_tiles(values: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Standardized input windows (..., rows, cols) -> BGR uint8 tiles (..., rows, cols, 3)."""
    grey = np.clip(128 + 48 * values, 0, 255).astype(np.uint8)
    return _paint(grey, inside)


def projection_tiles(values: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Projection windows (n, rows, cols) -> BGR uint8 tiles, each symmetric around grey."""
    peak = np.abs(values).max(axis=(1, 2), keepdims=True)
    scaled = np.rint(128 + 127 * values / np.where(peak == 0, 1, peak))
    grey = np.where(peak == 0, 128, np.clip(scaled, 0, 255)).astype(np.uint8)
    return _paint(grey, inside)


def _paint(grey: np.ndarray, inside: np.ndarray) -> np.ndarray:
    tiles = np.repeat(grey[..., None], 3, axis=-1)
    tiles[~inside] = OUTSIDE
    return tiles


def _scaled(tiles: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour enlargement of tiles (..., h, w, 3) by an integer factor (stacked into one
    tall image for OpenCV: an integer factor maps whole rows, so tiles do not mix)."""
    if scale == 1:
        return tiles
    *lead, h, w, channels = tiles.shape
    tall = np.ascontiguousarray(tiles).reshape(-1, w, channels)
    big = cv2.resize(tall, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    return big.reshape(*lead, h * scale, w * scale, channels)


def _row(tiles: np.ndarray) -> np.ndarray:
    """Tiles (..., k, h, w, 3) side by side with white gaps: (..., h, k * (w + GAP) - GAP, 3)."""
    *lead, k, h, w, _ = tiles.shape
    out = np.full((*lead, h, k * (w + GAP) - GAP, 3), 255, np.uint8)
    for j in range(k):
        out[..., j * (w + GAP):j * (w + GAP) + w, :] = tiles[..., j, :, :, :]
    return out


def map_sheets(patches: np.ndarray, projections: np.ndarray, titles: list[str], scale: int) -> np.ndarray:
    """The paper's Table 2 layout, one sheet per map: (M, H, W, 3) from tiles (M, k, h, w, 3):
    receptive-field patches on top, their deconvolutions below, under the map's title."""
    top, bottom = _row(_scaled(patches, scale)), _row(_scaled(projections, scale))
    count, width = top.shape[0], top.shape[2]
    gap = np.full((count, GAP, width, 3), 255, np.uint8)
    header = np.full((count, TITLE_HEIGHT, width, 3), 255, np.uint8)
    for title, head in zip(titles, header):
        scale = min(TITLE_SCALE, TITLE_SCALE * (width - 4) / max(1, cv2.getTextSize(title, FONT, TITLE_SCALE, 1)[0][0]))
        cv2.putText(head, title, (2, TITLE_HEIGHT - 9), FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([header, top, gap, bottom], axis=1)


def mosaics(tiles: np.ndarray) -> np.ndarray:
    """Tiles (M, k, h, w, 3) in a ceil(sqrt(k))-wide square grid per map, 1 px white lines between."""
    count, k, h, w, _ = tiles.shape
    side = math.ceil(math.sqrt(k))
    out = np.full((count, side * (h + 1) - 1, side * (w + 1) - 1, 3), 255, np.uint8)
    for i in range(k):
        r, c = divmod(i, side)
        out[:, r * (h + 1):r * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = tiles[:, i]
    return out


def overview_sheet(labels: list[str], patches: np.ndarray, projections: np.ndarray, scale: int) -> np.ndarray:
    """All maps on one sheet, from each map's mosaics (M, h, w, 3): per map its label, the mosaic
    of its patches and the one of their deconvolutions (patches first, as on every map sheet),
    in a roughly square grid."""
    pairs = _row(_scaled(np.stack([patches, projections], axis=1), scale))
    heads = np.full((len(labels), 14, pairs.shape[2], 3), 255, np.uint8)
    for label, head in zip(labels, heads):
        cv2.putText(head, label, (1, 11), FONT, 0.38, (0, 0, 0), 1, cv2.LINE_AA)
    blocks = np.concatenate([heads, pairs], axis=1)
    bh, bw = blocks.shape[1:3]
    columns = max(1, round(math.sqrt(len(blocks) * bh / bw)))
    rows = math.ceil(len(blocks) / columns)
    pad = 2 * GAP
    sheet = np.full((rows * (bh + pad) + pad, columns * (bw + pad) + pad, 3), 255, np.uint8)
    for i, block in enumerate(blocks):
        r, c = divmod(i, columns)
        y, x = pad + r * (bh + pad), pad + c * (bw + pad)
        sheet[y:y + bh, x:x + bw] = block
    return sheet
