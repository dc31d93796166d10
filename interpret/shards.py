"""Sharded analysis: a layer's activation cache built in contiguous row shards, then merged.

`interpret cache --shard i/N` (one job of a batch scheduler) builds shard i of N into
``RUN/activations/<layer>.shard-i-of-N.h5`` (atomic, with `shard_rows` = start, stop, total);
under torchrun `interpret cache` builds one shard per rank. Shards are whole evaluation batches
(`BATCH` rows), so every image goes through the network in the very batch the single-process
build uses: the merged cache equals it bit for bit (every dataset and attribute). The merge runs
when the last shard is written (or `interpret merge-cache`); it streams shard by shard (memory
bounded by one block of rows), checks that every shard exists, belongs to this run (the cache
fingerprints) and that together they cover the rows once, and keeps the shard files.

Deconvolution over many maps shards by map range (`interpret deconv --shard i/N`, or one range
per rank under torchrun): shard i projects its contiguous range of the chosen maps into
``RUN/deconv/<layer>.shard-i-of-N.h5``; when all exist the arrays are concatenated and written
as one deconvolution (HDF5 + sheets), as `interpret deconv` writes it. Its ranking is exact
under a row split as well: `merge_top_k` of per-shard top k is the global top k (ties to the
earlier image, as `deconv.deconvolve_top` ranks).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import h5py
import numpy as np
import torch

from interpret import distributed
from interpret.cache import FINGERPRINTS, build_cache, cache_path, fingerprints
from interpret.errors import InterpretError, located
from interpret.io import atomic_path
from interpret.layers import choose_layer
from interpret.quantiles import keep_top, top_k

#: Rows per evaluation batch of the cache build; shard boundaries fall on multiples of it.
BATCH = 128
#: Rows copied at a time by the merge.
BLOCK = 4096


def parse_shard(text: str) -> tuple[int, int]:
    """'i/N' -> (i, N), shards numbered 0..N-1."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not match or not 0 <= int(match[1]) < int(match[2]):
        raise InterpretError(f"--shard must be i/N with 0 <= i < N (e.g. 0/4), got {text!r}")
    return int(match[1]), int(match[2])


def plan(n: int, count: int, batch: int = BATCH) -> list[tuple[int, int]]:
    """`count` contiguous row ranges [start, stop) covering n rows, on whole batches, sizes within one batch."""
    batches = math.ceil(n / batch)
    if not 1 <= count <= batches:
        raise InterpretError(f"{n} images make {batches} batches of {batch}: use 1..{batches} shards, not {count}")
    ranges = [distributed.shard_range(batches, i, count) for i in range(count)]
    return [(a * batch, min(b * batch, n)) for a, b in ranges]


def shard_path(run, layer: str, index: int, count: int) -> Path:
    return cache_path(run, layer).with_name(f"{layer}.shard-{index}-of-{count}.h5")


def build_shard(run, layer, index: int, count: int, store_maps: bool = False) -> Path:
    """Build shard `index` of `count` of the run's cache of `layer` (a name or declared number)."""
    layer = choose_layer(run.model, layer)
    rows = plan(len(run.dataset), count)[index]
    return build_cache(run, layer=layer, store_maps=store_maps, batch_size=BATCH, rows=rows,
                       path=shard_path(run, layer, index, count))


def _shard_attrs(path: Path, h5: h5py.File) -> dict:
    if "shard_rows" not in h5.attrs:
        raise located(path, "not a cache shard (no shard_rows attribute)")
    return {k: v for k, v in h5.attrs.items() if k != "shard_rows"}


def merge_cache(run, layer, count: int) -> Path:
    """Merge the `count` shards of the run's cache of `layer` into ``RUN/activations/<layer>.h5``."""
    layer = choose_layer(run.model, layer)
    paths = [shard_path(run, layer, i, count) for i in range(count)]
    for i, path in enumerate(paths):
        if not path.is_file():
            raise located(path, f"shard {i} of {count} is missing; build it with "
                                f"`interpret cache --run {run.path} --layer {layer} --shard {i}/{count}`")
    expected = fingerprints(run, layer)
    n = len(run.dataset)
    out = cache_path(run, layer)
    files = []
    try:
        for path in paths:
            try:
                files.append(h5py.File(path, "r"))
            except OSError:
                raise located(path, "unreadable cache shard (truncated or not HDF5)") from None
        attrs = [_shard_attrs(p, h5) for p, h5 in zip(paths, files)]
        for path, h5, shard_attrs in zip(paths, files, attrs):
            stale = [k for k in FINGERPRINTS if shard_attrs.get(k) != expected[k]]
            if stale:
                raise located(path, f"shard computed from something else than this run ({', '.join(stale)} "
                                    "differ); rebuild it")
            if shard_attrs.keys() != attrs[0].keys() or any(
                    not np.array_equal(shard_attrs[k], attrs[0][k]) for k in attrs[0]):
                raise located(path, f"shard attributes differ from {paths[0].name}'s; rebuild it")
        bounds = [tuple(int(v) for v in h5.attrs["shard_rows"]) for h5 in files]
        if [b[:2] for b in bounds] != plan(n, count) or any(b[2] != n for b in bounds):
            bad = next(p for p, b, want in zip(paths, bounds, plan(n, count)) if b != (*want, n))
            raise located(bad, f"shard rows {bounds[paths.index(bad)][:2]} do not fit the plan of {count} shards "
                               f"over {n} images; rebuild it")
        first = files[0]
        with atomic_path(out) as tmp, h5py.File(tmp, "w") as merged:
            merged.attrs.update(attrs[0])
            for name, source in first.items():
                if name == "au_codes":
                    merged.create_dataset(name, data=source[()])
                    continue
                if name == "top_values":  # each shard's top k of every map: their top k is the whole's
                    values = torch.from_numpy(np.concatenate([h5[name][()] for h5 in files], axis=1))
                    k = top_k(attrs[0]["top_quantile"], n, attrs[0]["map_shape"])
                    merged.create_dataset(name, data=keep_top(values, k).numpy())
                    continue
                target = merged.create_dataset(name, (n, *source.shape[1:]), source.dtype, chunks=source.chunks,
                                               compression=source.compression,
                                               compression_opts=source.compression_opts)
                for h5, (start, stop, _) in zip(files, bounds):
                    part = h5[name]
                    for offset in range(0, stop - start, BLOCK):
                        end = min(offset + BLOCK, stop - start)
                        target[start + offset:start + end] = part[offset:end]
    finally:
        for h5 in files:
            h5.close()
    return out


def all_shards_exist(run, layer: str, count: int) -> bool:
    return all(shard_path(run, layer, i, count).is_file() for i in range(count))


def on_local_device(run, ranks: distributed.Ranks):
    """The run with its model moved to this rank's GPU (`cuda:LOCAL_RANK`) when it runs on CUDA."""
    device = distributed.local_device(run.device, ranks)
    if device != run.device:
        run.model.to(device)
        run.device = device
    return run


def sharded_cache(run, layer=None, store_maps: bool = False, shard: tuple[int, int] | None = None) -> Path:
    """Build shard `shard` = (i, N) and merge when all N exist; under torchrun (no `shard`), each
    rank builds its own shard and rank 0 merges after a barrier. Returns the file written last."""
    ranks = distributed.current()
    layer = choose_layer(run.model, layer)
    if shard is None:
        shard = (ranks.rank, ranks.world_size)
    path = build_shard(run, layer, *shard, store_maps=store_maps)
    if ranks.active:
        import torch.distributed as dist

        dist.barrier()
        return merge_cache(run, layer, shard[1]) if ranks.is_main else path
    return merge_cache(run, layer, shard[1]) if all_shards_exist(run, layer, shard[1]) else path


DECONV_ARRAYS = ("projection", "image_index", "activation", "position", "rf_box", "maps")


def deconv_shard_path(run, layer: str, index: int, count: int) -> Path:
    return Path(run.path) / "deconv" / f"{layer}.shard-{index}-of-{count}.h5"


def sharded_deconv(run, layer=None, top: int = 9, maps="all", shard: tuple[int, int] | None = None):
    """Project map range `shard` = (i, N) of the chosen maps (under torchrun: the rank's range);
    merge into ``RUN/deconv/<layer>.h5`` and its sheets when all N shards exist (returns the
    `DeconvResult`; else the shard's path). Build the activation cache first (`interpret cache`):
    each shard reads it."""
    from interpret.cache import open_cache
    from interpret.deconv import deconvolve_top, layer_field, parse_maps, write_deconv

    ranks = distributed.current()
    layer = choose_layer(run.model, layer)
    index, count = (ranks.rank, ranks.world_size) if shard is None else shard
    chosen = parse_maps(maps, open_cache(run, layer).max.shape[1], layer)
    if count > len(chosen):
        raise InterpretError(f"{len(chosen)} maps cannot make {count} shards")
    start, stop = distributed.shard_range(len(chosen), index, count)
    field = layer_field(run, layer)
    result = deconvolve_top(run, layer=layer, top=top, maps=chosen[start:stop].tolist(), field=field)
    expected = fingerprints(run, layer)
    path = deconv_shard_path(run, layer, index, count)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        h5.attrs.update({**expected, "top": top, "maps": json.dumps(chosen.tolist()), "shard_maps": (start, stop),
                         "split": result["split"], "path": result["path"]})
        for name in DECONV_ARRAYS:
            h5.create_dataset(name, data=result[name])
    if ranks.active:
        import torch.distributed as dist

        dist.barrier()
        if not ranks.is_main:
            return path
    elif not all(deconv_shard_path(run, layer, i, count).is_file() for i in range(count)):
        return path
    parts = []
    for i in range(count):
        part_path = deconv_shard_path(run, layer, i, count)
        with h5py.File(part_path, "r") as h5:
            if (any(h5.attrs[k] != expected[k] for k in FINGERPRINTS) or int(h5.attrs["top"]) != top
                    or h5.attrs["maps"] != json.dumps(chosen.tolist())
                    or tuple(h5.attrs["shard_maps"]) != distributed.shard_range(len(chosen), i, count)):
                raise located(part_path, "deconvolution shard of another run, layer, --top or --maps; rebuild it")
            parts.append({name: h5[name][()] for name in DECONV_ARRAYS})
            split, used = h5.attrs["split"], h5.attrs["path"]
    merged = {name: np.concatenate([part[name] for part in parts]) for name in DECONV_ARRAYS}
    return write_deconv(run, {**merged, "layer": layer, "split": split, "path": used}, top=top, field=field)


def merge_top_k(values: list[np.ndarray], rows: list[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
    """The global top k per column from per-shard candidates.

    values[s] (k_s, M) a shard's top activations per map (descending), rows[s] (k_s, M) their
    dataset rows. Returns (k, M) rows and values: the k largest over all shards, ties to the
    smaller row (the earlier image), i.e. what ranking all rows at once gives.
    """
    value = np.concatenate(values)
    row = np.concatenate(rows)
    order = np.lexsort((row, -value), axis=0)[:k]
    return np.take_along_axis(value, order, 0), np.take_along_axis(row, order, 0)
