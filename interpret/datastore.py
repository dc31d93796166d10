"""`RUN/dataset.h5`: a run's protocol-applied dataset and split, stored once, read by every command.

Written at train time (`write_dataset`) and by `runs.load_run` for older runs that lack it;
later commands read it (`read_dataset`) instead of re-rendering synthetic faces or re-reading
and re-cropping a user's images; the crops stay on disk (`StoredImages`) until rows are asked
for. It holds the uint8 crops, landmarks, every label array of the
`FaceSet` (emotion, au_intensity, au_codes, subject, sequence, frame, paths, partition,
emotions, skipped), the split per row, and what it was made from: the data spec, protocol,
size, split settings and classes of the run's config, the FaceSet's fingerprint, and, for a
dataset path, a listing of the source files (relative path, size, mtime in ns).

Staleness: a synthetic spec is deterministic (nothing to check). For a path that still exists,
the listing is taken again on read (a directory walk, no image decoding); any added, removed or
changed file is a one-line error naming it, with the fix. A source that is gone is not an
error: the stored copy is the run's data. Config values that disagree with the stored ones are
an error too: the stored data is never silently mixed with another configuration's.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import h5py
import numpy as np

from interpret.data.faceset import FaceSet, hash_array
from interpret.errors import located
from interpret.io import atomic_path, read_rows

FILE = "dataset.h5"
FORMAT = "interpret.dataset/1"
STRING = h5py.string_dtype("utf-8")
#: FaceSet string arrays stored as UTF-8 HDF5 strings.
STRINGS = ("subject", "sequence", "paths")
NUMBERS = ("images", "frame", "emotion", "au_intensity", "au_codes")
#: Config entries the stored data was made with; a run whose config differs does not get it.
CONFIG_KEYS = ("data", "protocol", "size", "split", "classes")


class StoredImages(np.lib.mixins.NDArrayOperatorsMixin):
    """The (N, S, S) uint8 crops of a dataset file, read on demand: a command holds only the rows
    it asks for (`[i]`, `[a:b]`, index arrays, bool masks, in any order) and `np.asarray` reads
    them all (training). The file stays open for reading, one handle per process."""

    #: Rows read per HDF5 call when gathering scattered rows, hashing or writing (2.5 MB at 99x99).
    BLOCK = 256

    def __init__(self, path, shape, dtype):
        self.path, self.shape, self.dtype = Path(path), tuple(int(v) for v in shape), np.dtype(dtype)
        self._handle = self._digest = None
        self._dataset()  # opened now: the file read is the one whose attributes were checked

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def _dataset(self):
        pid = os.getpid()
        if self._handle is None or self._handle[0] != pid:  # a forked or unpickled copy opens its own
            images = h5py.File(self.path, "r")["images"]
            if images.shape != self.shape:
                raise OSError(f"the file changed since it was read: {images.shape[0]} images, not {self.shape[0]}")
            self._handle = (pid, images.file)
        return self._handle[1]["images"]

    def _read(self, key):
        """`dataset[key]`, or `read_rows` for an index array; a damaged file is a one-line error."""
        try:
            if isinstance(key, np.ndarray):
                return read_rows(self._dataset(), key, self.BLOCK)
            return self._dataset()[key]
        except (OSError, KeyError, RuntimeError) as err:
            raise located(self.path, f"unreadable crops ({str(err).splitlines()[0]}); delete the file to rebuild it") \
                from None

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, tuple):  # rows first, then the rest of the key on what was read
            rows = self[key[0]]
            return rows[key[1:]] if isinstance(key[0], (int, np.integer)) else rows[(slice(None), *key[1:])]
        if isinstance(key, (int, np.integer, slice)):
            return self._read(key)
        index = np.asarray(key)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        index = np.where(index < 0, index + len(self), index).astype(np.int64)
        if index.size and not 0 <= int(index.min()) <= int(index.max()) < len(self):
            raise IndexError(f"{self.path}: row index out of range for {len(self)} images")
        return self._read(index)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        data = self._read(())
        return data if dtype is None else data.astype(dtype)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        """Arithmetic and comparisons (`images != other`) on all rows, read."""
        inputs = [np.asarray(x) if isinstance(x, StoredImages) else x for x in inputs]
        return getattr(ufunc, method)(*inputs, **kwargs)

    def hashed(self):
        """A sha256 fed the rows as `FaceSet.fingerprint` feeds in-memory images (`hash_array`), a
        block at a time, computed once: an open file is never rewritten in place (a new dataset
        file replaces it by rename)."""
        if self._digest is None:
            self._digest = hashlib.sha256()
            hash_array(self._digest, "images", self,
                       (self[start:start + self.BLOCK] for start in range(0, len(self), self.BLOCK)))
        return self._digest.copy()

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_handle": None, "_digest": None}


def dataset_path(run_dir) -> Path:
    return Path(run_dir) / FILE


def _config_attrs(config: dict) -> dict:
    return {key: json.dumps(config.get(key), sort_keys=True) for key in CONFIG_KEYS}


def source_listing(spec) -> tuple[list[str], np.ndarray, np.ndarray] | None:
    """(relative paths, sizes, mtimes in ns) of the files a dataset path reads, sorted; None for
    'synthetic'. A folder: every file below it. A file (e.g. fer2013new.csv): every file in its
    folder, since readers take siblings (fer2013.csv) too."""
    if str(spec) == "synthetic":
        return None
    path = Path(spec)
    root = path.parent if path.is_file() else path
    files = sorted(p for p in (root.iterdir() if path.is_file() else root.rglob("*")) if p.is_file())
    stats = [p.stat() for p in files]
    return ([str(p.relative_to(root)) for p in files],
            np.array([s.st_size for s in stats], dtype=np.int64),
            np.array([s.st_mtime_ns for s in stats], dtype=np.int64))


def listing_digest(listing) -> str:
    digest = hashlib.sha256()
    if listing is not None:
        names, sizes, mtimes = listing
        for name, size, mtime in zip(names, sizes.tolist(), mtimes.tolist()):
            digest.update(f"{name}\0{size}\0{mtime}\n".encode())
    return digest.hexdigest()


def _strings(h5: h5py.File, name: str, values) -> None:
    h5.create_dataset(name, data=np.asarray(values, dtype=str).astype(object), dtype=STRING)


def write_dataset(run_dir, faceset: FaceSet, split: np.ndarray, classes, config: dict) -> Path:
    """Write `RUN/dataset.h5` atomically from the run's protocol-applied FaceSet and split."""
    path = dataset_path(run_dir)
    if len(split) != len(faceset):
        raise ValueError(f"split has {len(split)} rows, the FaceSet {len(faceset)}")
    listing = source_listing(config["data"]["spec"])
    stored = dict(config, classes=list(classes))
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        h5.attrs["format"] = FORMAT
        for key, value in _config_attrs(stored).items():
            h5.attrs[f"config_{key}"] = value
        h5.attrs["faceset_fingerprint"] = faceset.fingerprint()
        h5.attrs["source"] = faceset.source
        h5.attrs["stills"] = bool(faceset.stills)
        h5.attrs["warnings"] = json.dumps(list(faceset.warnings))
        h5.attrs["label_options"] = json.dumps(faceset.label_options)
        h5.attrs["emotions"] = json.dumps(list(faceset.emotions))
        h5.attrs["source_listing"] = listing_digest(listing)
        chunks = (1, *faceset.images.shape[1:]) if len(faceset) else None
        images = h5.create_dataset("images", shape=faceset.images.shape, dtype=faceset.images.dtype, chunks=chunks)
        for start in range(0, len(faceset), StoredImages.BLOCK):  # a stored FaceSet is copied block by block
            images[start:start + StoredImages.BLOCK] = faceset.images[start:start + StoredImages.BLOCK]
        for name in NUMBERS[1:]:
            h5.create_dataset(name, data=getattr(faceset, name))
        for name in STRINGS:
            _strings(h5, name, getattr(faceset, name))
        _strings(h5, "split", split)
        if faceset.landmarks is not None:
            h5.create_dataset("landmarks", data=faceset.landmarks)
        if faceset.partition is not None:
            _strings(h5, "partition", faceset.partition)
        _strings(h5, "skipped", np.array(faceset.skipped, dtype=str).reshape(-1, 2))
        if listing is not None:
            names, sizes, mtimes = listing
            _strings(h5, "source_files", names)
            h5.create_dataset("source_sizes", data=sizes)
            h5.create_dataset("source_mtimes", data=mtimes)
    return path


def _changed_file(h5: h5py.File, listing) -> str:
    """The first file that was added, removed or changed since the listing in `h5`."""
    before = dict(zip(h5["source_files"].asstr()[()].tolist(),
                      zip(h5["source_sizes"][()].tolist(), h5["source_mtimes"][()].tolist())))
    now = dict(zip(listing[0], zip(listing[1].tolist(), listing[2].tolist())))
    for name in sorted(set(before) | set(now)):
        if name not in now:
            return f"{name} was removed"
        if name not in before:
            return f"{name} was added"
        if before[name] != now[name]:
            return f"{name} changed"
    return "its file listing changed"


def _check_source(path: Path, h5: h5py.File, spec) -> None:
    if str(spec) == "synthetic" or not Path(spec).exists():
        return
    listing = source_listing(spec)
    if listing_digest(listing) != h5.attrs["source_listing"]:
        raise located(path, f"the source data {spec} changed since this file was written "
                            f"({_changed_file(h5, listing)}); re-train the run, or accept the new data with "
                            f"`interpret refresh-data --run {path.parent}`")


def read_dataset(run_dir, config: dict) -> tuple[FaceSet, np.ndarray] | None:
    """The stored (FaceSet, split) of a run; None when `RUN/dataset.h5` does not exist.

    A file that is not a readable dataset file, was made with other config values, or whose
    source path has changed since, is a one-line InterpretError naming it.
    """
    path = dataset_path(run_dir)
    if not path.exists():
        return None
    try:
        with h5py.File(path, "r") as h5:
            if h5.attrs.get("format") != FORMAT:
                raise located(path, f"not an interpret dataset file (no format attribute {FORMAT!r})")
            expected = _config_attrs(config)
            differ = [key for key in CONFIG_KEYS if h5.attrs.get(f"config_{key}") != expected[key]]
            if differ:
                raise located(path, f"stored for another configuration ({', '.join(differ)} differ from "
                                    f"config.json); re-train, or run `interpret refresh-data --run {path.parent}`")
            _check_source(path, h5, config["data"]["spec"])
            arrays = {name: h5[name][()] for name in NUMBERS[1:]}
            arrays["images"] = StoredImages(path, h5["images"].shape, h5["images"].dtype)
            arrays.update({name: h5[name].asstr()[()].astype(str) for name in STRINGS})
            split = h5["split"].asstr()[()].astype(str)
            faceset = FaceSet(
                landmarks=h5["landmarks"][()] if "landmarks" in h5 else None,
                partition=h5["partition"].asstr()[()].astype(str) if "partition" in h5 else None,
                emotions=tuple(json.loads(h5.attrs["emotions"])),
                source=str(h5.attrs["source"]),
                stills=bool(h5.attrs["stills"]),
                warnings=json.loads(h5.attrs["warnings"]),
                label_options=json.loads(h5.attrs["label_options"]),
                skipped=[tuple(pair) for pair in h5["skipped"].asstr()[()].tolist()],
                **arrays)
    except (OSError, KeyError, ValueError) as err:
        raise located(path, f"unreadable dataset file, truncated or foreign ({type(err).__name__}: "
                            f"{str(err).splitlines()[0] if str(err) else ''}); delete it to rebuild it") from None
    return faceset, split
