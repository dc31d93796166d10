"""Per-image activation maxima of one layer (by module name), cached in HDF5 beside the run.

``RUN/activations/<layer>.h5`` holds, for every row of the run's dataset (in `run.dataset`
order): `max` (N, C) float32, each image's maximum of each map of the layer's output (captured
with `interpret.layers.layer_output`); `argmax` (N, C, 2)
int32, its (row, col) on the map (the first maximum in row-major order; (0, 0) for an all-zero
map); `map_shape` attribute (H, W); `emotion` (N,) class index (-1 unlabelled), `aus` (N, A)
uint8 presence, `au_codes` (A,),
`subject`, `sequence` (N,) str, `frame` (N,) int64, `split` (N,) str; with ``store_maps=True`` also
`maps` (N, C, H, W) float16, one image per chunk, lzf-compressed (values above float16's
range saturate, with a warning); `top_values` (C, k) float32, each map's k largest values over
all rows, k = ceil(`top_quantile` x N x H x W) (`interpret.quantiles.TopQuantile`; the k-th is
NetDissect's top-quantile threshold, so `interpret validate` streams the layer once, not twice).
Its attributes fingerprint
what it was computed from (model.pt's SHA-256, layer name, architecture, dataset, labels and
split, preprocessing including the input spec, package version); `open_cache` rebuilds the file whenever one differs.

The file is written batch by batch into pre-sized datasets (memory bounded by the batch, not
by N) under a temporary name, renamed when complete: an interrupted build leaves no cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import torch

import interpret
from interpret.data import transforms
from interpret.errors import InterpretError, located
from interpret.io import atomic_path, read_rows
from interpret.layers import choose_layer, layer_output
from interpret.quantiles import IOU_QUANTILE, TopQuantile, top_k

log = logging.getLogger(__name__)

FORMAT = "interpret.activations/1"
STRING = h5py.string_dtype("utf-8")
ARRAYS = ("max", "argmax", "emotion", "aus", "au_codes", "subject", "sequence", "frame", "split")
FLOAT16_MAX = float(np.finfo(np.float16).max)
FINGERPRINTS = ("model_sha256", "layer", "arch", "dataset", "labels", "preprocessing", "package_version")


def cache_path(run, layer: str) -> Path:
    return Path(run.path) / "activations" / f"{layer}.h5"


def _sha(*parts) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(np.ascontiguousarray(part).astype(str).tobytes() if isinstance(part, np.ndarray)
                      else str(part).encode())
        digest.update(b"\0")
    return digest.hexdigest()


def transforms_id() -> str:
    """Identifies the evaluation transform by the source of the functions that implement it."""
    source = "".join(inspect.getsource(f) for f in (transforms.evaluate, transforms.standardize,
                                                    transforms.eval_offset))
    return "interpret.data.transforms.evaluate@" + _sha(source)[:16]


def fingerprints(run, layer: str) -> dict:
    """What a cache of `run`'s layer is computed from; equal fingerprints, equal cache."""
    model_file = Path(run.path) / "model.pt"
    if not model_file.is_file():
        raise located(model_file, "checkpoint not found: the cache is keyed by its SHA-256")
    data = run.dataset
    preprocessing = {"size": run.config.get("size"), "protocol": run.config.get("protocol"),
                     "transform": transforms_id(), "input": data.spec.to_dict()}
    return {
        "model_sha256": run.model_sha256,
        "layer": str(layer),
        "arch": str(run.config.get("arch")),
        "dataset": data.faceset.fingerprint(),
        "labels": _sha(np.asarray(data.split), json.dumps(list(data.classes))),
        "preprocessing": _sha(json.dumps(preprocessing, sort_keys=True)),
        "package_version": interpret.__version__,
    }


def build_cache(run, layer=None, store_maps: bool = False, batch_size: int = 128,
                rows: tuple[int, int] | None = None, path=None) -> Path:
    """Run every image of `run.dataset` through the model once; write ``RUN/activations/<layer>.h5``.

    `layer`: a module name or declared number (None: the architecture's default). `rows` (start,
    stop): only those rows (a shard, `interpret.shards`), written to `path`, with the attribute
    `shard_rows` = (start, stop, rows in the dataset)."""
    layer = choose_layer(run.model, layer)
    path = cache_path(run, layer) if path is None else Path(path)
    prints = fingerprints(run, layer)
    data, model = run.dataset, run.model
    device = next(model.parameters()).device
    first, last = (0, len(data)) if rows is None else rows
    n, fs = last - first, data.faceset
    log.info("caching %s activations of %d images to %s", layer, n, path)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        h5.attrs["format"] = FORMAT
        for key, value in prints.items():
            h5.attrs[key] = value
        h5.attrs["classes"] = json.dumps(list(data.classes))
        if rows is not None:
            h5.attrs["shard_rows"] = (first, last, len(data))
        h5.create_dataset("emotion", data=np.asarray(data.targets[first:last], dtype=np.int64))
        h5.create_dataset("aus", data=np.asarray(data.au_presence[first:last], dtype=np.uint8))
        h5.create_dataset("au_codes", data=np.asarray(fs.au_codes, dtype=np.int64))
        for name, values in (("subject", fs.subject), ("sequence", fs.sequence), ("split", data.split)):
            h5.create_dataset(name, data=np.asarray(values[first:last], dtype=str).astype(object), dtype=STRING)
        h5.create_dataset("frame", data=np.asarray(fs.frame[first:last], dtype=np.int64))
        out_max = out_arg = out_maps = None
        overflow = False
        top = TopQuantile(len(data), IOU_QUANTILE)  # k of all rows: shards' top values merge exactly
        flags = (torch.backends.cudnn.flags(enabled=True, allow_tf32=False) if device.type == "cuda"
                 else contextlib.nullcontext())
        with torch.inference_mode(), flags:
            for start in range(0, n, batch_size):
                stop = min(start + batch_size, n)
                act = layer_output(model, layer, data.images(first + start, first + stop).to(device, non_blocking=True))
                if act.ndim != 4:
                    raise InterpretError(f"--layer {layer}: its output has shape {tuple(act.shape)}, not a "
                                         "(B, C, H, W) map; list the analysable layers with `interpret layers`")
                b, c, h, w = act.shape
                if out_max is None:
                    out_max = h5.create_dataset("max", (n, c), np.float32)
                    out_arg = h5.create_dataset("argmax", (n, c, 2), np.int32)
                    h5.attrs["map_shape"] = (h, w)
                    if store_maps:
                        out_maps = h5.create_dataset("maps", (n, c, h, w), np.float16, chunks=(1, c, h, w),
                                                     compression="lzf")
                top.update(act)
                values, flat = act.reshape(b, c, h * w).max(dim=2)
                out_max[start:stop] = values.float().cpu().numpy()
                out_arg[start:stop] = torch.stack([flat // w, flat % w], -1).int().cpu().numpy()
                if store_maps:
                    if not overflow and float(values.max()) > FLOAT16_MAX:
                        overflow = True
                        log.warning("%s: activations above %g saturate in the float16 maps", path, FLOAT16_MAX)
                    out_maps[start:stop] = act.clamp(max=FLOAT16_MAX).half().cpu().numpy()
        if out_max is None:
            raise located(path, "the run's dataset is empty: nothing to cache")
        h5.create_dataset("top_values", data=top.values.cpu().numpy())
        h5.attrs["top_quantile"] = IOU_QUANTILE
    return path


@dataclass
class ActivationCache:
    """A cache file's per-image maxima and labels (loaded); its argmax positions, top values and full
    maps (if stored) are read off the file where asked: each grows with N."""

    path: Path
    attrs: dict
    max: np.ndarray
    emotion: np.ndarray
    aus: np.ndarray
    au_codes: np.ndarray
    subject: np.ndarray
    sequence: np.ndarray
    frame: np.ndarray
    split: np.ndarray
    has_maps: bool
    top_values_shape: tuple[int, int] | None = None  # (C, k) on disk; k grows with N, so never loaded whole
    _file: h5py.File | None = field(default=None, repr=False)

    def thresholds(self, quantile: float) -> np.ndarray | None:
        """(C,) each map's top-`quantile` threshold, the k-th column of `top_values` read off the
        file; None if the cache holds another quantile's (or, older, none)."""
        if self.top_values_shape is None or self.attrs.get("top_quantile") != quantile:
            return None
        k = top_k(quantile, len(self.max), self.attrs["map_shape"])
        if self.top_values_shape[1] < k:
            return None
        with h5py.File(self.path, "r") as h5:
            return h5["top_values"][:, k - 1].astype(np.float64)

    def positions(self, rows, maps) -> np.ndarray:
        """(..., 2) int (row, col) of each map's maximum on the image `rows` (arrays broadcast
        together), read off the file's `argmax` for those images only (it holds 2 KB per image)."""
        rows, maps = np.broadcast_arrays(np.asarray(rows, dtype=np.int64), np.asarray(maps, dtype=np.int64))
        with h5py.File(self.path, "r") as h5:
            per_row = read_rows(h5["argmax"], rows.reshape(-1))  # (R, C, 2)
        return per_row[np.arange(rows.size), maps.reshape(-1)].reshape(*rows.shape, 2)

    @property
    def layer(self) -> str:
        return str(self.attrs["layer"])

    @property
    def classes(self) -> list[str]:
        return json.loads(self.attrs["classes"])

    @property
    def maps(self) -> h5py.Dataset | None:
        """(N, C, H, W) float16 maps as an h5py dataset (slice it to read), or None if not stored."""
        if not self.has_maps:
            return None
        if self._file is None:
            self._file = h5py.File(self.path, "r")
        return self._file["maps"]

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_cache(path) -> ActivationCache:
    """Load a cache file; a missing, non-HDF5, truncated or foreign file is a one-line InterpretError."""
    path = Path(path)
    if not path.is_file():
        raise located(path, "activation cache not found (build it with `interpret cache`)")
    try:
        with h5py.File(path, "r") as h5:
            if h5.attrs.get("format") != FORMAT:
                raise located(path, f"not an interpret activation cache (no format attribute {FORMAT!r})")
            missing = [name for name in ARRAYS if name not in h5] + [k for k in FINGERPRINTS if k not in h5.attrs]
            if missing:
                raise located(path, f"incomplete activation cache (missing {', '.join(missing)})")
            arrays = {name: h5[name][()] for name in ARRAYS if name != "argmax"}  # `positions` reads it
            for name in ("subject", "sequence", "split"):
                arrays[name] = h5[name].asstr()[()].astype(str)
            attrs = {key: (value.item() if isinstance(value, np.generic) else value) for key, value in h5.attrs.items()}
            has_maps = "maps" in h5
            top_values_shape = tuple(h5["top_values"].shape) if "top_values" in h5 else None
    except (OSError, KeyError, ValueError, RuntimeError) as err:
        reason = str(err).split("(", 1)[-1].rstrip(")") if "(" in str(err) else str(err)
        raise located(path, f"unreadable HDF5 file, truncated or not HDF5 ({reason})") from None
    return ActivationCache(path=path, attrs=attrs, has_maps=has_maps, top_values_shape=top_values_shape, **arrays)


def open_cache(run, layer=None, store_maps: bool = False) -> ActivationCache:
    """The run's cache of `layer`, built when missing, rebuilt (with a warning) when unreadable,
    foreign, lacking the full maps asked for, or when any fingerprint differs from the run's."""
    layer = choose_layer(run.model, layer)
    path = cache_path(run, layer)
    if path.exists():
        reason = None
        try:
            cache = read_cache(path)
        except InterpretError as err:  # an unreadable file is rebuilt: the cache is derived data
            reason = str(err)
        else:
            expected = fingerprints(run, layer)
            stale = [key for key in FINGERPRINTS if cache.attrs.get(key) != expected[key]]
            if stale:
                reason = f"{path}: fingerprint mismatch ({', '.join(stale)})"
            elif store_maps and not cache.has_maps:
                reason = f"{path}: full maps asked for but not stored"
            else:
                return cache
        log.warning("rebuilding activation cache: %s", reason)
    build_cache(run, layer=layer, store_maps=store_maps)
    return read_cache(path)


@dataclass(frozen=True)
class CacheResult:
    """What `run_cache` wrote: the file, the layer, images x maps (H x W each)."""

    path: Path
    layer: str
    n_images: int
    n_maps: int
    map_shape: tuple[int, int]


def run_cache(run, *, layer=None, store_maps: bool = False) -> CacheResult:
    """`interpret cache`: build (always anew) the activation cache of `layer`."""
    path = build_cache(run, layer=layer, store_maps=store_maps)
    with h5py.File(path, "r") as h5:
        n, c = h5["max"].shape
        shape = tuple(int(v) for v in h5.attrs["map_shape"])
        layer_name = str(h5.attrs["layer"])
    return CacheResult(path=path, layer=layer_name, n_images=int(n), n_maps=int(c), map_shape=shape)
