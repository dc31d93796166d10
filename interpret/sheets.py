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


def window(image: np.ndarray, top: int, left: int, size) -> tuple[np.ndarray, np.ndarray]:
    """The window of a 2-D array at (top, left), `size` = side or (rows, cols), zero beyond the
    array, and a mask of the inside."""
    h, w = image.shape
    rows, cols = (size, size) if np.isscalar(size) else size
    out = np.zeros((rows, cols), image.dtype)
    inside = np.zeros((rows, cols), bool)
    r0, r1, c0, c1 = max(top, 0), min(top + rows, h), max(left, 0), min(left + cols, w)
    if r0 < r1 and c0 < c1:
        out[r0 - top:r1 - top, c0 - left:c1 - left] = image[r0:r1, c0:c1]
        inside[r0 - top:r1 - top, c0 - left:c1 - left] = True
    return out, inside


def patch_tile(values: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Standardized input values -> BGR uint8 tile."""
    grey = np.clip(128 + 48 * values, 0, 255).astype(np.uint8)
    return _paint(grey, inside)


def projection_tile(values: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """A projection -> BGR uint8 tile, symmetric around grey."""
    peak = float(np.abs(values).max())
    grey = np.full(values.shape, 128, np.uint8) if peak == 0 else \
        np.clip(np.rint(128 + 127 * values / peak), 0, 255).astype(np.uint8)
    return _paint(grey, inside)


def _paint(grey: np.ndarray, inside: np.ndarray) -> np.ndarray:
    tile = np.repeat(grey[..., None], 3, axis=2)
    tile[~inside] = OUTSIDE
    return tile


def _scaled(tile: np.ndarray, scale: int) -> np.ndarray:
    return tile if scale == 1 else cv2.resize(tile, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)


def _row(tiles: list[np.ndarray]) -> np.ndarray:
    h = tiles[0].shape[0]
    gap = np.full((h, GAP, 3), 255, np.uint8)
    parts = [p for t in tiles for p in (t, gap)][:-1]
    return np.concatenate(parts, axis=1)


def map_sheet(patches: list[np.ndarray], projections: list[np.ndarray], title: str, scale: int) -> np.ndarray:
    """The paper's Table 2 layout: receptive-field patches on top, their deconvolutions below."""
    top = _row([_scaled(t, scale) for t in patches])
    bottom = _row([_scaled(t, scale) for t in projections])
    width = top.shape[1]
    header = np.full((TITLE_HEIGHT, width, 3), 255, np.uint8)
    scale = min(TITLE_SCALE, TITLE_SCALE * (width - 4) / max(1, cv2.getTextSize(title, FONT, TITLE_SCALE, 1)[0][0]))
    cv2.putText(header, title, (2, TITLE_HEIGHT - 9), FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)
    gap = np.full((GAP, width, 3), 255, np.uint8)
    return np.concatenate([header, top, gap, bottom], axis=0)


def mosaic(tiles: list[np.ndarray]) -> np.ndarray:
    """Tiles in a ceil(sqrt(k))-wide square grid, 1 px white lines between them."""
    side = math.ceil(math.sqrt(len(tiles)))
    h, w = tiles[0].shape[:2]
    out = np.full((side * (h + 1) - 1, side * (w + 1) - 1, 3), 255, np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, side)
        out[r * (h + 1):r * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = tile
    return out


def overview_sheet(cells: list[tuple[str, np.ndarray, np.ndarray]], scale: int) -> np.ndarray:
    """All maps on one sheet: per map its label, a mosaic of its patches and one of their
    deconvolutions (patches first, as on every map sheet), in a roughly square grid."""
    blocks = []
    for label, projections, patches in cells:
        pair = _row([_scaled(patches, scale), _scaled(projections, scale)])
        head = np.full((14, pair.shape[1], 3), 255, np.uint8)
        cv2.putText(head, label, (1, 11), FONT, 0.38, (0, 0, 0), 1, cv2.LINE_AA)
        blocks.append(np.concatenate([head, pair], axis=0))
    bh, bw = blocks[0].shape[:2]
    columns = max(1, round(math.sqrt(len(blocks) * bh / bw)))
    rows = math.ceil(len(blocks) / columns)
    pad = 2 * GAP
    sheet = np.full((rows * (bh + pad) + pad, columns * (bw + pad) + pad, 3), 255, np.uint8)
    for i, block in enumerate(blocks):
        r, c = divmod(i, columns)
        y, x = pad + r * (bh + pad), pad + c * (bw + pad)
        sheet[y:y + bh, x:x + bw] = block
    return sheet
