"""Zeiler–Fergus deconvolution of single conv units, batched and restricted to receptive fields.

`project` sends one unit of `relu{layer}` back to input pixels per seed. Every seed's work is
done on its receptive-field window only (a conv3 unit of zhu2019 sees 32x32 pixels): the window
is cut from the image (zero beyond the border), the forward runs with valid convolutions, and
every intermediate map is zeroed where it falls outside the real map, so the window reproduces
the full network's zero padding at every layer; pooling windows stay on the global pool grid,
so the switches are the full network's. The backward then runs on the window and is pasted
into the image frame. Result equals captum's `NeuronDeconvolution` (resp. `NeuronGradient`,
`NeuronGuidedBackprop`) on `model.relu{layer}` with neuron (c, y, x) — the gradient of the unit
under the rule, for a unit signal.

`deconvolve_top` ranks images by the cached per-image maxima (`interpret.cache`), so the top k
of a map are k *distinct* images, each projected at its own maximum; the stored projections are
scaled by the unit's activation (Zeiler–Fergus keep the activation's value and zero the rest).
`run_deconv` writes ``RUN/deconv/conv{layer}.h5`` and the Table-2-style PNG sheets.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from interpret.errors import InterpretError
from interpret.io import atomic_path
from interpret.models import receptive_field, stage


RULES = ("deconvnet", "gradient", "guided")
#: Seeds per batched pass; bounds memory (about 200 MB for zhu2019 layer 3).
CHUNK = 256


@dataclass(frozen=True)
class _Level:
    """Geometry of conv stage k inside one seed's window (rows; columns are the same).

    The conv input window starts at input-of-stage coordinate ``scale * y + start`` and is
    `size` wide; `height` is the real height of that input map (beyond it lies padding).
    """

    conv: torch.nn.Conv2d
    pool: int  # pooling factor applied to this stage's output before the next stage (0 at the top)
    scale: int
    start: int
    size: int
    height: int


def _levels(model, layer: int, side: int) -> list[_Level]:
    """Window geometry of stages 1..layer for a unit (y, x) of relu{layer} (top-down walk)."""
    heights = [side]
    for k in range(1, layer):
        st = stage(model, k)
        _check_stage(st)
        conv_out = heights[-1] + 2 * st.conv.padding[0] - st.conv.kernel_size[0] + 1
        heights.append(conv_out // st.pool.kernel_size)
    _check_stage(stage(model, layer))
    levels = []
    scale, start, n = 1, 0, 1  # relu{k} window: rows scale*y + start ... + n - 1
    for k in range(layer, 0, -1):
        conv = stage(model, k).conv
        start, size = start - conv.padding[0], n + conv.kernel_size[0] - 1
        pool = stage(model, k).pool.kernel_size if k < layer else 0
        levels.append(_Level(conv, pool, scale, start, size, heights[k - 1]))
        if k > 1:
            p = stage(model, k - 1).pool.kernel_size
            scale, start, n = scale * p, start * p, size * p
    return levels[::-1]


def _check_stage(st) -> None:
    conv, pool = st.conv, st.pool
    if conv.stride != (1, 1) or conv.dilation != (1, 1) or conv.groups != 1 or conv.kernel_size[0] != conv.kernel_size[1]:
        raise ValueError("project() supports square stride-1 convolutions only")
    if not isinstance(pool.kernel_size, int) or pool.stride != pool.kernel_size or pool.padding != 0:
        raise ValueError("project() supports non-overlapping square max-pools only")


def _grid(level: _Level, y: torch.Tensor, x: torch.Tensor):
    """Window rows and columns (B, size) of stage `level`'s input, and whether each is inside."""
    offsets = torch.arange(level.size, device=y.device)
    rows = level.scale * y[:, None] + level.start + offsets
    cols = level.scale * x[:, None] + level.start + offsets
    return rows, cols, (rows >= 0) & (rows < level.height), (cols >= 0) & (cols < level.height)


def _inside(level: _Level, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(B, 1, size, size) 1.0 where the window lies on the real input map of the stage, else 0."""
    _, _, in_r, in_c = _grid(level, y, x)
    return (in_r[:, :, None] & in_c[:, None, :]).unsqueeze(1).float()


def project(model, layer: int, images, seeds, rule: str = "deconvnet", owner=None) -> torch.Tensor:
    """Project single units of `relu{layer}` to input pixels: (B, H, W) float32.

    images (B, 1, H, W) square: the image of each seed, or with `owner` (B,) the image of seed
    i is images[owner[i]] (seeds sharing an image and position share their forward pass).
    seeds (B, 3) ints (c, y, x) on relu{layer}. rule: 'deconvnet' (the backward ReLU
    rectifies the signal, Zeiler–Fergus), 'gradient' (plain gradient, signal * [x > 0]) or
    'guided' (guided backprop, both). The top signal is 1 (a unit signal); the pooling
    switches are each image's own; biases enter the forward pass only.
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {', '.join(RULES)}, got {rule!r}")
    device = next(model.parameters()).device
    images = torch.as_tensor(images, dtype=torch.float32).to(device)
    seeds = torch.as_tensor(np.asarray(seeds), dtype=torch.long).reshape(-1, 3).to(device)
    owner = torch.arange(len(seeds), device=device) if owner is None else \
        torch.as_tensor(np.asarray(owner), dtype=torch.long).to(device)
    if images.ndim != 4 or images.shape[1] != 1 or images.shape[2] != images.shape[3]:
        raise ValueError(f"images must be (B, 1, H, H), got {tuple(images.shape)}")
    if owner.shape != (len(seeds),) or (len(seeds) and not 0 <= int(owner.min()) <= int(owner.max()) < len(images)):
        raise ValueError(f"{len(seeds)} seeds need one image each: {len(images)} images, owner {tuple(owner.shape)}")
    side = images.shape[-1]
    levels = _levels(model, layer, side)
    top = levels[-1]
    top_side = top.height + 2 * top.conv.padding[0] - top.conv.kernel_size[0] + 1
    channels = top.conv.out_channels
    c, y, x = seeds.unbind(1)
    if len(seeds) and (c.min() < 0 or c.max() >= channels or y.min() < 0 or x.min() < 0
                       or y.max() >= top_side or x.max() >= top_side):
        raise ValueError(f"seeds must lie in relu{layer}: channels 0..{channels - 1}, positions 0..{top_side - 1}")
    # seeds of one window side by side, so that chunks share forward passes
    order = torch.argsort((owner * top_side + y) * top_side + x, stable=True)
    out = torch.empty(len(seeds), side, side, device=device)
    flags = torch.backends.cudnn.flags(enabled=True, allow_tf32=False) if device.type == "cuda" else contextlib.nullcontext()
    with torch.no_grad(), flags:
        for lo in range(0, len(seeds), CHUNK):
            i = order[lo:lo + CHUNK]
            out[i] = _project_chunk(levels, images, owner[i], c[i], y[i], x[i], rule)
    return out


def _project_chunk(levels, images, owner, c, y, x, rule):
    first, top = levels[0], levels[-1]
    side = images.shape[-1]
    # one forward per distinct window (image, y, x)
    key = (owner * side + y) * side + x
    unique, inverse = torch.unique(key, return_inverse=True)
    pick = torch.empty(len(unique), dtype=torch.long, device=key.device).scatter_(
        0, inverse, torch.arange(len(key), device=key.device))
    wo, wy, wx = owner[pick], y[pick], x[pick]
    rows, cols, in_r, in_c = _grid(first, wy, wx)
    inside = (in_r[:, :, None] & in_c[:, None, :]).float()
    h = images[wo[:, None, None], 0, rows.clamp(0, side - 1)[:, :, None], cols.clamp(0, side - 1)[:, None, :]]
    h = (h * inside).unsqueeze(1)  # (U, 1, size, size), zero beyond the image
    saved = []
    for k, level in enumerate(levels[:-1]):
        act = F.relu_(F.conv2d(h, level.conv.weight, level.conv.bias))
        pooled, switches = F.max_pool2d(act, level.pool, return_indices=True)
        mask = _inside(levels[k + 1], wy, wx)
        saved.append((act > 0 if rule != "deconvnet" else None, switches, mask, act.shape[-1]))
        h = pooled.mul_(mask)
    weight = top.conv.weight[c]  # (B, C_in, K, K): each seed's filter
    signal = torch.ones(len(c), device=images.device)
    if rule != "deconvnet":
        pre = (h[inverse] * weight).flatten(1).sum(1) + (top.conv.bias[c] if top.conv.bias is not None else 0)
        signal = signal * (pre > 0)
    s = signal[:, None, None, None] * weight
    for level, (alive, switches, mask, n) in zip(reversed(levels[:-1]), reversed(saved)):
        s = s * mask[inverse]
        # unpool: each pooled value goes back to its switch (the forward's argmax)
        s = s.new_zeros(s.shape[0], s.shape[1], n * n).scatter_(2, switches[inverse].flatten(2), s.flatten(2))
        s = s.view(s.shape[0], s.shape[1], n, n)
        if rule != "gradient":
            s = F.relu_(s)
        if alive is not None:
            s = s.mul_(alive[inverse])
        s = _transposed_conv(s, level.conv.weight)
    # paste the windows into the image frame
    pad = first.size
    rows, cols, _, _ = _grid(first, y, x)
    canvas = torch.zeros(len(c), side + 2 * pad, side + 2 * pad, device=images.device)
    canvas[torch.arange(len(c), device=c.device)[:, None, None], rows[:, :, None] + pad, cols[:, None, :] + pad] = s[:, 0]
    return canvas[:, pad:pad + side, pad:pad + side]


def _transposed_conv(s: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """conv_transpose2d(s, weight) (valid, no bias); for one output channel (the image) as a
    matmul + fold, about 4x faster on the CPU than the transposed-convolution kernel."""
    if weight.shape[1] != 1:
        return F.conv_transpose2d(s, weight)
    batch, channels, side, _ = s.shape
    kernel = weight.shape[-1]
    cols = weight.reshape(channels, kernel * kernel).t() @ s.reshape(batch, channels, side * side)
    return F.fold(cols, (side + kernel - 1,) * 2, kernel)


def parse_maps(maps, n_maps: int, layer: int) -> np.ndarray:
    """'all', '0,5,113', or a list of ints -> map numbers (from 0), order kept, duplicates dropped."""
    if isinstance(maps, str):
        if maps.strip().lower() == "all":
            return np.arange(n_maps)
        try:
            maps = [int(part) for part in maps.split(",") if part.strip()]
        except ValueError:
            raise InterpretError(f"--maps must be 'all' or map numbers like 0,5,113, got {maps!r}") from None
    chosen = list(dict.fromkeys(int(m) for m in maps))
    if not chosen:
        raise InterpretError("--maps names no map")
    bad = [m for m in chosen if not 0 <= m < n_maps]
    if bad:
        raise InterpretError(f"map {bad[0]} is out of range: conv{layer} has maps 0..{n_maps - 1}")
    return np.array(chosen, dtype=np.int64)


def rf_boxes(model, layer: int, position: np.ndarray, side: int) -> np.ndarray:
    """(..., 4) receptive-field boxes (top, left, bottom, right) clipped to the image; bottom
    and right are exclusive (``image[top:bottom, left:right]``)."""
    size, stride, offset = receptive_field(model, layer)
    start = stride * np.asarray(position) + offset
    lo, hi = np.clip(start, 0, side), np.clip(start + size, 0, side)
    return np.concatenate([lo, hi], axis=-1).astype(np.int32)


def _dataset_images(dataset, index: np.ndarray) -> torch.Tensor:
    return torch.cat([dataset.images(int(i), int(i) + 1) for i in index])


def deconvolve_top(run, layer: int = 3, top: int = 9, maps="all", rule: str = "deconvnet",
                   split: str | None = "train") -> dict:
    """Project each chosen map's `top` largest activations to pixels.

    Images are ranked by the cached per-image maximum of the map (`open_cache`), among the rows
    of `split` ('train', as the paper; None: all rows), so the top k are k distinct images,
    each projected at its own maximum; ties go to the earlier image. Returns arrays over
    (maps M, top k): `projection` (M, k, H, W) float32 = activation x unit projection (Zeiler–
    Fergus keep the activation's value; a zero activation projects to zero), `image_index`
    (M, k) into the dataset order, `activation` (M, k), `position` (M, k, 2) (row, col) on
    relu{layer}, `rf_box` (M, k, 4) (see `rf_boxes`), `maps` (M,).
    """
    from interpret.cache import open_cache

    cache = open_cache(run, layer)
    chosen = parse_maps(maps, cache.max.shape[1], layer)
    rows = np.arange(len(cache.max)) if split is None else np.flatnonzero(cache.split == split)
    if len(rows) < top:
        raise InterpretError(f"{cache.path}: top {top} asked for, but only {len(rows)} images "
                             f"{'' if split is None else f'in split {split!r} '}are cached")
    order = np.argsort(-cache.max[rows][:, chosen], axis=0, kind="stable")[:top]
    image_index = rows[order].T  # (M, k)
    activation = cache.max[image_index, chosen[:, None]]
    position = cache.argmax[image_index, chosen[:, None]].astype(np.int64)
    seeds = np.column_stack([np.repeat(chosen, top), position.reshape(-1, 2)])
    live = np.flatnonzero(activation.ravel() > 0)  # a zero activation projects to zero
    unique, owner = np.unique(image_index.ravel()[live], return_inverse=True)
    side = run.dataset.images(0, 1).shape[-1]
    projection = np.zeros((seeds.shape[0], side, side), np.float32)
    if len(live):
        images = _dataset_images(run.dataset, unique)
        unit = project(run.model, layer, images, seeds[live], rule=rule, owner=owner).cpu().numpy()
        projection[live] = unit * activation.ravel()[live, None, None]
    return {
        "projection": projection.reshape(len(chosen), top, side, side),
        "image_index": image_index.astype(np.int64),
        "activation": activation.astype(np.float32),
        "position": position,
        "rf_box": rf_boxes(run.model, layer, position, side),
        "maps": chosen,
    }


def run_deconv(run, layer: int = 3, top: int = 9, maps="all", rule: str = "deconvnet",
               split: str | None = "train") -> Path:
    """Write ``RUN/deconv/conv{layer}.h5`` (the arrays of `deconvolve_top`), a PNG per map
    ``RUN/deconv/conv{layer}/map_XXX.png`` and ``RUN/deconv/conv{layer}_overview.png``."""
    result = deconvolve_top(run, layer=layer, top=top, maps=maps, rule=rule, split=split)
    return write_deconv(run, layer, result, top=top, rule=rule, split=split)


def write_deconv(run, layer: int, result: dict, top: int, rule: str = "deconvnet", split: str | None = "train") -> Path:
    """Write a `deconvolve_top` result: ``RUN/deconv/conv{layer}.h5`` and the PNG sheets."""
    import h5py

    from interpret.cache import fingerprints

    folder = Path(run.path) / "deconv"
    path = folder / f"conv{layer}.h5"
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        for key, value in fingerprints(run, layer).items():
            h5.attrs[key] = value
        h5.attrs.update({"format": "interpret.deconv/1", "top": top, "rule": rule, "split": split or "all",
                         "projection_scale": "activation x unit-signal projection",
                         "rf_box": "top, left, bottom, right; clipped to the image; bottom/right exclusive",
                         "position": "row, col on relu layer"})
        for name, value in result.items():
            options = {"chunks": (1,) + value.shape[1:], "compression": "gzip", "compression_opts": 1,
                       "shuffle": True} if name == "projection" else {}
            h5.create_dataset(name, data=value, **options)
    _write_sheets(run, layer, result, folder)
    return path


def _write_sheets(run, layer: int, result: dict, folder: Path) -> None:
    """The per-map PNGs (replacing the folder as a whole) and the overview sheet."""
    from interpret.sheets import map_sheet, mosaic, overview_sheet, patch_tile, projection_tile, window

    size, stride, offset = receptive_field(run.model, layer)
    unique = np.unique(result["image_index"])
    images = dict(zip(unique.tolist(), _dataset_images(run.dataset, unique)[:, 0].cpu().numpy()))
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".conv{layer}.", dir=folder))
    cells = []
    try:
        for m, number in enumerate(result["maps"]):
            patches, projections = [], []
            for j, image_index in enumerate(result["image_index"][m]):
                r0, c0 = stride * result["position"][m, j] + offset
                values, inside = window(images[int(image_index)], r0, c0, size)
                patches.append(patch_tile(values, inside))
                projections.append(projection_tile(window(result["projection"][m, j], r0, c0, size)[0], inside))
            acts = result["activation"][m]
            title = f"conv{layer} map {number}: top {len(acts)} activations {acts[0]:.3g} .. {acts[-1]:.3g}"
            sheet = map_sheet(patches, projections, title, max(1, 96 // size))
            (staging / f"map_{number:03d}.png").write_bytes(_png(sheet))
            cells.append((f"{number}" + (" (dead)" if acts[0] <= 0 else ""), mosaic(projections), mosaic(patches)))
        final = folder / f"conv{layer}"
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    overview = overview_sheet(cells, max(1, round(32 / size)))
    with atomic_path(folder / f"conv{layer}_overview.png") as tmp:
        tmp.write_bytes(_png(overview))


def _png(image: np.ndarray) -> bytes:
    import cv2

    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return data.tobytes()
