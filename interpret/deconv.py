"""Zeiler–Fergus deconvolution of single units of a layer, by layer name.

`project` is the one dispatch point: it sends one unit of a layer back to input pixels per
seed, on the receptive-field fast path where the layer's stack is a plain chain of conv -> ReLU
(-> max-pool) modules (`fast_stack`, read from the `torch.fx` graph; zhu2019, khorrami2015),
else on the exact general path `interpret.projection.project_general`. The path used is
recorded in the deconvolution file.

The fast path does every seed's work on its receptive-field window only (a relu3 unit of
zhu2019 sees 32x32 pixels): the window is cut from the image (zero beyond the border), the
forward runs with valid convolutions, and every intermediate map is zeroed where it falls
outside the real map, so the window reproduces the full network's zero padding at every layer;
pooling windows stay on the global pool grid, so the switches are the full network's. The
backward then runs on the window and is pasted into the image frame (summed over the input
channels). Result equals captum's `NeuronDeconvolution` (resp. `NeuronGradient`,
`NeuronGuidedBackprop`) on the layer's module with neuron (c, y, x) — the gradient of the unit
under the rule, for a unit signal.

`deconvolve_top` ranks images by the cached per-image maxima (`interpret.cache`), so the top k
of a map are k *distinct* images, each projected at its own maximum; the stored projections are
scaled by the unit's activation (Zeiler–Fergus keep the activation's value and zero the rest).
`run_deconv` writes ``RUN/deconv/<layer>.h5`` and the Table-2-style PNG sheets.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from interpret.errors import InterpretError
from interpret.io import atomic_path
from interpret.layers import choose_layer, resolve_layer


RULES = ("deconvnet", "gradient", "guided")
#: Seeds per batched pass. At 64 the largest temporary of zhu2019 layer 3 is 13 MB, under glibc's
#: mmap threshold: freed buffers are reused, where 256 (51 MB ones) page-faulted every buffer
#: afresh and took a third longer on the CPU.
CHUNK = 64
#: Maps whose PNG sheets are composed at a time (about 20 MB of sheets per block at top 9).
SHEET_BLOCK = 32


@dataclass(frozen=True)
class _Stage:
    """One conv -> ReLU (-> max-pool) stage of a fast-path stack; `pool` is 0 at the top."""

    conv: nn.Conv2d
    padding: int
    pool: int


@dataclass(frozen=True)
class _Level:
    """Geometry of conv stage k inside one seed's window (rows; columns are the same).

    The conv input window starts at input-of-stage coordinate ``scale * y + start`` and is
    `size` wide; `height` is the real height of that input map (beyond it lies padding).
    """

    conv: nn.Conv2d
    pool: int  # pooling factor applied to this stage's output before the next stage (0 at the top)
    scale: int
    start: int
    size: int
    height: int


def _square(value) -> int | None:
    values = (value, value) if isinstance(value, int) else tuple(value)
    return values[0] if len(values) == 2 and values[0] == values[1] else None


def _fast_stage(conv, pool) -> _Stage | None:
    """The stage if the fast path can run it: square stride-1 ungrouped convs with zero padding,
    non-overlapping square max-pools."""
    if not isinstance(conv, nn.Conv2d) or conv.padding_mode != "zeros" or conv.groups != 1:
        return None
    kernel = _square(conv.kernel_size)
    if kernel is None or _square(conv.stride) != 1 or _square(conv.dilation) != 1:
        return None
    padding = {"valid": 0, "same": kernel // 2 if kernel % 2 else None}.get(conv.padding) \
        if isinstance(conv.padding, str) else _square(conv.padding)
    if padding is None:
        return None
    if pool is None:
        return _Stage(conv, padding, 0)
    size = _square(pool.kernel_size)
    if (not isinstance(pool, nn.MaxPool2d) or size is None or _square(pool.stride) != size
            or _square(pool.padding) != 0 or _square(pool.dilation) != 1 or pool.ceil_mode):
        return None
    return _Stage(conv, padding, size)


def fast_stack(model, layer) -> list[_Stage] | None:
    """The stages from the input to `layer` when its output is computed by a plain chain
    conv -> ReLU (-> max-pool -> conv -> ReLU)* of modules (read from the `torch.fx` graph),
    each of which the fast path supports; None otherwise (the general path applies)."""
    name = resolve_layer(model, layer)
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception:  # a forward fx cannot trace: its structure is unknown, so not the fast path
        return None
    node = next((n for n in graph.nodes if n.op == "call_module" and n.target == name), None)
    chain = []
    while node is not None and node.op == "call_module":
        if len(node.args) != 1 or node.kwargs or not isinstance(node.args[0], torch.fx.Node):
            return None
        chain.append(model.get_submodule(node.target))
        node = node.args[0]
    if node is None or node.op != "placeholder" or len(chain) < 2:
        return None
    chain.reverse()
    kinds = "".join("c" if isinstance(m, nn.Conv2d) else "r" if type(m) is nn.ReLU
                    else "p" if isinstance(m, nn.MaxPool2d) else "?" for m in chain)
    if not re.fullmatch(r"cr(pcr)*", kinds):
        return None
    stages = [_fast_stage(chain[i], chain[i + 2] if i + 2 < len(chain) else None) for i in range(0, len(chain), 3)]
    return None if any(s is None for s in stages) else stages


def fast_path_applies(model, layer) -> bool:
    """Whether `project` runs the receptive-field fast path for `layer` (else the general path)."""
    return fast_stack(model, layer) is not None


def projection_path(model, layer) -> str:
    """'fast-rf' or 'general': the path `project` takes for `layer`."""
    return "fast-rf" if fast_path_applies(model, layer) else "general"


def _levels(stages: list[_Stage], side: int) -> list[_Level]:
    """Window geometry of every stage for a unit (y, x) of the top ReLU (top-down walk)."""
    heights = [side]
    for st in stages[:-1]:
        conv_out = heights[-1] + 2 * st.padding - st.conv.kernel_size[0] + 1
        heights.append(conv_out // st.pool)
    levels = []
    scale, start, n = 1, 0, 1  # relu{k} window: rows scale*y + start ... + n - 1
    for k in range(len(stages) - 1, -1, -1):
        conv = stages[k].conv
        start, size = start - stages[k].padding, n + conv.kernel_size[0] - 1
        levels.append(_Level(conv, stages[k].pool, scale, start, size, heights[k]))
        if k > 0:
            p = stages[k - 1].pool
            scale, start, n = scale * p, start * p, size * p
    return levels[::-1]


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


def project(model, layer, images, seeds, rule: str = "deconvnet", owner=None) -> torch.Tensor:
    """Project single units of `layer` (a module name or declared number) to input pixels:
    (B, H, W) float32, summed over the input channels.

    The one dispatch point: the receptive-field fast path where `fast_path_applies`, else
    `interpret.projection.project_general` (same arguments, same result). images (B, C, H, W):
    the image of each seed, or with `owner` (B,) the image of seed i is images[owner[i]].
    seeds (B, 3) ints (c, y, x) on the layer's output. rule: 'deconvnet' (the backward ReLU
    rectifies the signal, Zeiler–Fergus), 'gradient' (plain gradient) or 'guided' (guided
    backprop, both). The top signal is 1 (a unit signal).
    """
    name = resolve_layer(model, layer)
    if fast_path_applies(model, name):
        return project_fast(model, name, images, seeds, rule=rule, owner=owner)
    from interpret.projection import project_general

    return project_general(model, name, images, seeds, rule=rule, owner=owner)


def project_fast(model, layer, images, seeds, rule: str = "deconvnet", owner=None) -> torch.Tensor:
    """`project` on the receptive-field fast path (see the module docstring); a layer it does
    not apply to is a ValueError. The pooling switches are each image's own; biases enter
    the forward pass only."""
    if rule not in RULES:
        raise ValueError(f"rule must be one of {', '.join(RULES)}, got {rule!r}")
    name = resolve_layer(model, layer)
    stages = fast_stack(model, name)
    if stages is None:
        raise ValueError(f"{name}: not a conv/ReLU/max-pool stack the fast path supports")
    device = next(model.parameters()).device
    images = torch.as_tensor(images, dtype=torch.float32).to(device)
    seeds = torch.as_tensor(np.asarray(seeds), dtype=torch.long).reshape(-1, 3).to(device)
    owner = torch.arange(len(seeds), device=device) if owner is None else \
        torch.as_tensor(np.asarray(owner), dtype=torch.long).to(device)
    if images.ndim != 4 or images.shape[2] != images.shape[3]:
        raise ValueError(f"images must be (B, C, H, H), got {tuple(images.shape)}")
    if owner.shape != (len(seeds),) or (len(seeds) and not 0 <= int(owner.min()) <= int(owner.max()) < len(images)):
        raise ValueError(f"{len(seeds)} seeds need one image each: {len(images)} images, owner {tuple(owner.shape)}")
    side = images.shape[-1]
    levels = _levels(stages, side)
    top = levels[-1]
    top_side = top.height + 2 * stages[-1].padding - top.conv.kernel_size[0] + 1
    channels = top.conv.out_channels
    c, y, x = seeds.unbind(1)
    if len(seeds) and (c.min() < 0 or c.max() >= channels or y.min() < 0 or x.min() < 0
                       or y.max() >= top_side or x.max() >= top_side):
        raise ValueError(f"seeds must lie in {name}: channels 0..{channels - 1}, positions 0..{top_side - 1}")
    # seeds of one window side by side, so that chunks share forward passes
    order = torch.argsort((owner * top_side + y) * top_side + x, stable=True)
    out = torch.empty(len(seeds), side, side, device=device)
    flags = (torch.backends.cudnn.flags(enabled=True, allow_tf32=False) if device.type == "cuda"
             else contextlib.nullcontext())
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
    h = images[wo[:, None, None], :, rows.clamp(0, side - 1)[:, :, None], cols.clamp(0, side - 1)[:, None, :]]
    h = h.permute(0, 3, 1, 2) * inside.unsqueeze(1)  # (U, C, size, size), zero beyond the image
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
    seed_index = torch.arange(len(c), device=c.device)[:, None, None]
    canvas[seed_index, rows[:, :, None] + pad, cols[:, None, :] + pad] = s.sum(1)
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


def parse_maps(maps, n_maps: int, layer: str) -> np.ndarray:
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
        raise InterpretError(f"map {bad[0]} is out of range: {layer} has maps 0..{n_maps - 1}")
    return np.array(chosen, dtype=np.int64)


def fast_field(model, layer, side: int):
    """The receptive field of `layer` for square inputs of `side` from the fast path's window
    geometry (exact, no forward pass); None where the fast path does not apply."""
    from interpret.receptive import ReceptiveField

    stages = fast_stack(model, layer)
    if stages is None:
        return None
    first = _levels(stages, side)[0]
    return ReceptiveField((first.size,) * 2, (first.scale,) * 2, (first.start,) * 2, clipped=False)


def layer_field(run, layer: str):
    """The receptive field of `layer` for the run's input: `fast_field` where it applies, else
    measured (`interpret.receptive`)."""
    from interpret.receptive import receptive_field

    shape = tuple(run.dataset.images(0, 1).shape[1:])
    field = fast_field(run.model, layer, shape[1]) if shape[1] == shape[2] else None
    return field or receptive_field(run.model, layer, shape)


def ranking_rows(split_of: np.ndarray, split: str | None) -> tuple[np.ndarray, str]:
    """Rows ranked for the top activations, and the split they are: 'train', 'test', ...,
    None = every row, 'auto' = the training rows, or every row of a run without any (imported)."""
    if split == "auto":
        split = "train" if np.any(split_of == "train") else None
    rows = np.arange(len(split_of)) if split is None else np.flatnonzero(split_of == split)
    return rows, split or "all"


def deconvolve_top(run, layer=None, top: int = 9, maps="all", rule: str = "deconvnet",
                   split: str | None = "auto", field=None) -> dict:
    """Project each chosen map's `top` largest activations to pixels.

    Images are ranked by the cached per-image maximum of the map (`open_cache`), among the rows
    of `split` (see `ranking_rows`; 'auto': the training rows, as the paper), so the top k are
    k distinct images, each projected at its own maximum; ties go to the earlier image. Returns
    arrays over (maps M, top k): `projection` (M, k, H, W) float32 = activation x unit
    projection (Zeiler–Fergus keep the activation's value; a zero activation projects to zero),
    `image_index` (M, k) into the dataset order, `activation` (M, k), `position` (M, k, 2)
    (row, col) on the layer, `rf_box` (M, k, 4) (`ReceptiveField.boxes` of `field`, the layer's
    receptive field, measured when not given), `maps` (M,); and the scalars `layer`, `split` and
    `path` ('fast-rf' or 'general').
    """
    from interpret.cache import open_cache

    name = choose_layer(run.model, layer)
    cache = open_cache(run, name)
    chosen = parse_maps(maps, cache.max.shape[1], name)
    rows, split_used = ranking_rows(cache.split, split)
    if len(rows) < top:
        raise InterpretError(f"{cache.path}: top {top} asked for, but only {len(rows)} images "
                             f"{'' if split_used == 'all' else f'in split {split_used!r} '}are cached")
    order = np.argsort(-cache.max[:, chosen][rows], axis=0, kind="stable")[:top]
    image_index = rows[order].T  # (M, k)
    activation = cache.max[image_index, chosen[:, None]]
    position = cache.positions(image_index, chosen[:, None]).astype(np.int64)
    seeds = np.column_stack([np.repeat(chosen, top), position.reshape(-1, 2)])
    live = np.flatnonzero(activation.ravel() > 0)  # a zero activation projects to zero
    unique, owner = np.unique(image_index.ravel()[live], return_inverse=True)
    height, width = run.dataset.images(0, 1).shape[-2:]
    projection = np.zeros((seeds.shape[0], height, width), np.float32) if len(live) < len(seeds) else None
    if len(live):
        images = run.dataset.rows(unique)
        unit = project(run.model, name, images, seeds[live], rule=rule, owner=owner).cpu().numpy()
        unit *= activation.ravel()[live, None, None]
        if projection is None:
            projection = unit
        else:
            projection[live] = unit
    return {
        "projection": projection.reshape(len(chosen), top, height, width),
        "image_index": image_index.astype(np.int64),
        "activation": activation.astype(np.float32),
        "position": position,
        "rf_box": (field or layer_field(run, name)).boxes(position, (height, width)),
        "maps": chosen,
        "layer": name,
        "split": split_used,
        "path": projection_path(run.model, name),
    }


@dataclass(frozen=True)
class DeconvResult:
    """What `run_deconv` wrote: the HDF5 file, the sheet folder, the layer, the projection path used."""

    path: Path
    sheets: Path
    layer: str
    projection_path: str
    maps: int
    top: int


def deconv_path(run, layer: str) -> Path:
    return Path(run.path) / "deconv" / f"{layer}.h5"


def run_deconv(run, *, layer=None, top: int = 9, maps="all", rule: str = "deconvnet",
               split: str | None = "auto") -> DeconvResult:
    """Write ``RUN/deconv/<layer>.h5`` (the arrays of `deconvolve_top`; attrs: the cache's
    fingerprints, top, rule, split, path, receptive field), a PNG per map
    ``RUN/deconv/<layer>/map_XXX.png`` and ``RUN/deconv/<layer>_overview.png``."""
    name = choose_layer(run.model, layer)
    field = layer_field(run, name)
    result = deconvolve_top(run, layer=name, top=top, maps=maps, rule=rule, split=split, field=field)
    return write_deconv(run, result, top=top, rule=rule, field=field)


def write_deconv(run, result: dict, top: int, rule: str = "deconvnet", field=None) -> DeconvResult:
    """Write a `deconvolve_top` result (one job's, or merged shards'): ``RUN/deconv/<layer>.h5``
    and the PNG sheets."""
    import h5py

    from interpret.cache import fingerprints

    result = dict(result)
    name = result.pop("layer")
    field = layer_field(run, name) if field is None else field
    attrs = {"split": result.pop("split"), "path": result.pop("path")}
    folder = Path(run.path) / "deconv"
    path = deconv_path(run, name)
    def write_file():
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
            for key, value in fingerprints(run, name).items():
                h5.attrs[key] = value
            h5.attrs.update({"format": "interpret.deconv/1", "top": top, "rule": rule, **attrs,
                             "receptive_field": json.dumps({"size": field.size, "stride": field.stride,
                                                            "offset": field.offset}),
                             "projection_scale": "activation x unit-signal projection",
                             "rf_box": "top, left, bottom, right; clipped to the image; bottom/right exclusive",
                             "position": f"row, col on {name}"})
            for key, value in result.items():
                options = {"chunks": (1,) + value.shape[1:], "compression": "gzip", "compression_opts": 1,
                           "shuffle": True} if key == "projection" else {}
                h5.create_dataset(key, data=value, **options)

    _write_sheets(run, name, field, result, folder, meanwhile=write_file)
    return DeconvResult(path=path, sheets=folder / name, layer=name, projection_path=attrs["path"],
                        maps=len(result["maps"]), top=top)


def read_deconv(run, layer: str, maps, k: int) -> dict[int, dict] | None:
    """The first `k` projections, images and boxes of each of `maps` from ``RUN/deconv/<layer>.h5``,
    by map; None unless that file was made from this model's deconvnet rule and holds them all."""
    import h5py

    from interpret.cache import fingerprints

    path = deconv_path(run, layer)
    if not path.is_file():
        return None
    expected = fingerprints(run, layer)
    with h5py.File(path, "r") as h5:
        if (any(h5.attrs.get(key) != value for key, value in expected.items()) or h5.attrs.get("rule") != "deconvnet"
                or int(h5.attrs.get("top", 0)) < k):
            return None
        stored = {int(m): i for i, m in enumerate(h5["maps"][()])}
        if any(int(m) not in stored for m in maps):
            return None
        keys = ("projection", "image_index", "rf_box")
        return {int(m): {key: h5[key][stored[int(m)], :k] for key in keys} for m in maps}


def _display(images: torch.Tensor, spec) -> np.ndarray:
    """(B, C, H, W) network inputs -> (B, H, W) per-image standardized grey for the sheets."""
    grey = images.mean(1, keepdim=True)
    if spec.normalize != "standardize" or images.shape[1] != 1:
        from interpret.data.transforms import standardize

        grey = standardize(grey)
    return grey[:, 0].cpu().numpy()


def _write_sheets(run, layer: str, field, result: dict, folder: Path, meanwhile=lambda: None) -> None:
    """The per-map PNGs (replacing the folder as a whole) and the overview sheet. Composed with
    numpy `SHEET_BLOCK` maps at a time, encoded on a few threads (OpenCV's encoder releases the
    GIL) while the next block is composed; `meanwhile()` runs while the last ones are encoded."""
    from concurrent.futures import ThreadPoolExecutor

    from interpret.sheets import map_sheets, mosaics, overview_sheet, patch_tiles, projection_tiles, windows

    index, maps, activation = result["image_index"], result["maps"], result["activation"]
    count, top = index.shape
    unique, owner = np.unique(index, return_inverse=True)
    owner = owner.reshape(index.shape)
    images = _display(run.dataset.rows(unique), run.dataset.spec)
    projection = result["projection"]
    corners = np.asarray(field.stride) * result["position"] + np.asarray(field.offset)  # (M, k, 2)
    scale = max(1, images.shape[-1] // max(field.size))
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{layer}.", dir=folder))
    labels, patch_mosaics, projection_mosaics, writing = [], [], [], []
    try:
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            for lo in range(0, count, SHEET_BLOCK):
                block = slice(lo, min(lo + SHEET_BLOCK, count))
                n = block.stop - block.start
                tops, lefts = corners[block, :, 0].ravel(), corners[block, :, 1].ravel()
                values, inside = windows(images, owner[block].ravel(), tops, lefts, field.size)
                patches = patch_tiles(values, inside)
                values, _ = windows(projection[block].reshape(n * top, *projection.shape[2:]), np.arange(n * top),
                                    tops, lefts, field.size)
                projections = projection_tiles(values, inside)
                patches, projections = (t.reshape(n, top, *t.shape[1:]) for t in (patches, projections))
                acts = activation[block]
                titles = [f"{layer} map {number}: top {top} activations {a[0]:.3g} .. {a[-1]:.3g}"
                          for number, a in zip(maps[block], acts)]
                done = writing
                writing = [pool.submit(_write_png, staging / f"map_{number:03d}.png", sheet)
                           for number, sheet in zip(maps[block], map_sheets(patches, projections, titles, scale))]
                for future in done:  # at most two blocks of sheets held at once
                    future.result()
                labels += [f"{number}" + (" (dead)" if a[0] <= 0 else "") for number, a in zip(maps[block], acts)]
                patch_mosaics.append(mosaics(patches))
                projection_mosaics.append(mosaics(projections))
            overview = pool.submit(_png, overview_sheet(labels, np.concatenate(patch_mosaics),
                                                        np.concatenate(projection_mosaics),
                                                        max(1, round(32 / max(field.size)))))
            meanwhile()
            for future in writing:
                future.result()
            overview = overview.result()
        final = folder / layer
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    with atomic_path(folder / f"{layer}_overview.png") as tmp:
        tmp.write_bytes(overview)


def _write_png(path: Path, image: np.ndarray) -> None:
    path.write_bytes(_png(image))


def _png(image: np.ndarray) -> bytes:
    """Lossless PNG; zlib's filtered strategy suits these sheets (flat tiles, smooth maps): a
    third of OpenCV's default (RLE) size, in less time."""
    import cv2

    ok, data = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_FILTERED])
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return data.tobytes()
