"""Atomic file writes, JSON reads and file hashes."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path

from interpret.errors import located


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; rename it to `path` only if the block succeeds.

    An interrupted or failed write leaves no file under the final name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        if tmp.exists():
            os.chmod(tmp, default_mode(tmp.is_dir()))  # mkstemp's 0600 would ignore the umask
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def default_mode(directory: bool = False) -> int:
    """The mode `open()`/`mkdir()` would give a new file (0666) or folder (0777) under the umask."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path):
    """The JSON in `path`, None where the file does not exist; malformed JSON is a located error."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise located(path, f"malformed JSON ({err.msg})", err.lineno) from None


def sha256_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_rows(dataset, index, block: int = 256):
    """`dataset[index]` for an HDF5 dataset and integer row indices (N-d, any order, repeats
    allowed): one contiguous read per `block`-row window holding wanted rows, from its first
    wanted row to its last, so that only about the rows asked for are read and held."""
    import numpy as np

    index = np.asarray(index, dtype=np.int64)
    wanted, where = np.unique(index, return_inverse=True)
    out = np.empty((len(wanted), *dataset.shape[1:]), dataset.dtype)
    for part in np.split(np.arange(len(wanted)), np.flatnonzero(np.diff(wanted // block)) + 1):
        if part.size:
            rows = wanted[part]
            out[part] = dataset[int(rows[0]):int(rows[-1]) + 1][rows - rows[0]]
    return out[where.reshape(index.shape)]
