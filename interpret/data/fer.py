"""FER2013 (`fer2013.csv`) and its FER+ relabelling (`fer2013new.csv`), REFERENCE §7.

FER has no identities: every row is its own subject (`fer0000000`, the FER+ image name of
that row), so subject-grouped splits of FER are plain image-level splits.
"""

from __future__ import annotations

import contextlib
import csv
from pathlib import Path

import numpy as np

from interpret.data.crop import crop_face
from interpret.data.faceset import FaceSet, stills_faceset
from interpret.errors import InterpretError, located
from interpret.io import atomic_path
from interpret.progress import progress_bar

FER2013_HEADER = ["emotion", "pixels", "Usage"]
#: FER2013 label codes are the indices of this tuple (0 angry ... 6 neutral).
FER2013_EMOTIONS = ("anger", "disgust", "fear", "happy", "sadness", "surprise", "neutral")
FERPLUS_HEADER = ["Usage", "Image name", "neutral", "happiness", "surprise", "sadness", "anger",
                  "disgust", "fear", "contempt", "unknown", "NF"]
#: FER+ classes in its vote-column order (canonical names); votes 8 and 9 are unknown / not a face.
FERPLUS_EMOTIONS = ("neutral", "happy", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
_PIXELS = 48 * 48
_FER2013_CODES = {str(i) for i in range(len(FER2013_EMOTIONS))}


def _open_csv(path: Path, header: list[str]):
    """(handle, reader) positioned after a checked header line."""
    if not path.is_file():
        raise located(path, "no such file")
    handle = open(path, newline="", encoding="utf-8-sig")
    reader = csv.reader(handle)
    try:
        with _csv_errors(path, reader):
            found = [c.strip() for c in next(reader, [])]
        if found != header:
            raise located(path, f"header {','.join(found)!r} is not {','.join(header)!r}", 1)
    except InterpretError:
        handle.close()
        raise
    return handle, reader


@contextlib.contextmanager
def _csv_errors(path: Path, reader):
    """Turn decoding and CSV syntax errors into one-line errors naming the line."""
    try:
        yield
    except (UnicodeDecodeError, csv.Error) as exc:
        raise located(path, f"not a readable CSV text file ({exc})", reader.line_num or 1) from None


def _parse_pixels(path: Path, line: int, pixels: str) -> np.ndarray:
    """The 2,304 space-separated integers of one row."""
    values = pixels.split()
    if len(values) != _PIXELS:
        raise located(path, f"{len(values)} pixels, expected {_PIXELS} (48x48)", line)
    try:
        return np.array(values, dtype=np.int64)
    except ValueError:
        bad = next(v for v in values if not v.lstrip("-").isdigit())
        raise located(path, f"pixel {bad!r} is not an integer", line) from None


def _fer2013_rows(path: Path, progress: bool):
    """All rows of fer2013.csv: (N, 48, 48) uint8 images, (N,) labels, (N,) usage."""
    images, labels, usage = [], [], []
    handle, reader = _open_csv(path, FER2013_HEADER)
    with handle, _csv_errors(path, reader):
        for row in progress_bar(reader, enabled=progress, desc="fer2013.csv", unit="row"):
            line = reader.line_num
            if len(row) != 3:
                raise located(path, f"expected 3 fields (emotion,pixels,Usage), found {len(row)}", line)
            label, pixels, use = row
            if label.strip() not in _FER2013_CODES:
                raise located(path, f"emotion {label!r} is not one of 0..6", line)
            image = _parse_pixels(path, line, pixels)
            if image.min() < 0 or image.max() > 255:
                raise located(path, "pixel value outside 0..255", line)
            images.append(image.astype(np.uint8).reshape(48, 48))
            labels.append(int(label))
            usage.append(use.strip())
    if not images:
        raise located(path, "no data rows")
    return np.stack(images), np.array(labels, dtype=np.int64), np.array(usage, dtype=str)


def _faceset(images48, labels, usage, names, paths, emotions, source, size, skipped) -> FaceSet:
    crops = [crop_face(image, None, size)[0] for image in images48]
    faceset = stills_faceset(crops, names, names, labels, paths, emotions, source, size, skipped, partition=usage)
    if size > 48:
        faceset.warnings.append(f"FER's 48x48 images were upscaled to {size}x{size} ({size / 48:.2f}x)")
    return faceset


def read_fer2013(csv_path, size: int = 99, progress: bool = False) -> FaceSet:
    """Read fer2013.csv: 48x48 images resized to size x size, labels in FER2013_EMOTIONS.

    `partition` is the Usage column (Training / PublicTest / PrivateTest). No landmarks, no
    AUs; each row is its own subject (FER has no identities). `paths` are `CSV:LINE`.
    """
    path = Path(csv_path)
    images, labels, usage = _fer2013_rows(path, progress)
    index = np.arange(len(images))
    return _faceset(images, labels, usage, [f"fer{i:07d}" for i in index],
                    [f"{path}:{i + 2}" for i in index], FER2013_EMOTIONS, "fer2013", size, [])


def _ferplus_label(votes: list[int], mode: str) -> tuple[int | None, str]:
    """The FER+ class of one row's 10 votes, or (None, why it is dropped)."""
    if mode == "majority":
        # Microsoft's FER+ reference rule: drop single votes as outliers; the top class must
        # hold more than half of the remaining votes. A tie never does, so ties are dropped.
        kept = [v if v > 1 else 0 for v in votes]
        top = int(np.argmax(kept))
        if kept[top] * 2 <= sum(kept):
            return None, "no majority among the FER+ votes"
    else:
        top = int(np.argmax(votes))
        if votes.count(votes[top]) > 1:
            return None, "tied FER+ plurality"
    if top == 8:
        return None, "FER+ votes say unknown"
    if top == 9:
        return None, "FER+ votes say not a face"
    return top, ""


def read_ferplus(fer2013_csv, ferplus_csv, size: int = 99, mode: str = "majority",
                 progress: bool = False) -> FaceSet:
    """FER2013 images with FER+ labels (FERPLUS_EMOTIONS, 8 classes incl. contempt).

    Rows of fer2013new.csv with an empty image name are dropped, as the FER+ reference scripts
    do. `mode='majority'` follows the FER+ reference: votes of 1 are discarded, and the top class
    must hold more than half of the rest, otherwise (ties included) the row is dropped.
    `mode='plurality'` takes the most-voted class and drops exact ties. Rows whose label comes out
    as unknown or not-a-face are dropped too; every dropped row is listed in `skipped`.
    """
    if mode not in ("majority", "plurality"):
        raise InterpretError(f"FER+ mode must be 'majority' or 'plurality', got {mode!r}")
    fer_path, plus_path = Path(fer2013_csv), Path(ferplus_csv)
    images, _, usage = _fer2013_rows(fer_path, progress)
    keep, labels, names, skipped = [], [], [], []
    handle, reader = _open_csv(plus_path, FERPLUS_HEADER)
    with handle, _csv_errors(plus_path, reader):
        for row in reader:
            line, i = reader.line_num, reader.line_num - 2
            if len(row) != len(FERPLUS_HEADER):
                raise located(plus_path, f"expected {len(FERPLUS_HEADER)} fields, found {len(row)}", line)
            if i >= len(images):
                raise located(plus_path, f"more rows than {fer_path} ({len(images)})", line)
            if row[0].strip() != usage[i]:
                raise located(plus_path, f"Usage {row[0]!r} differs from {fer_path} line {i + 2} "
                                         f"({usage[i]!r}): the files are not row-aligned", line)
            try:
                votes = [int(v) for v in row[2:]]
            except ValueError:
                raise located(plus_path, "votes must be integers", line) from None
            if min(votes) < 0:
                raise located(plus_path, "negative vote count", line)
            name = row[1].strip()
            label, why = _ferplus_label(votes, mode) if name else (None, "no image name (dropped as FER+ does)")
            if label is None:
                skipped.append((f"{plus_path}:{line}", why))
                continue
            keep.append(i)
            labels.append(label)
            # the row, not the FER+ image name, identifies an image: four names occur twice
            names.append(f"fer{i:07d}")
        rows = reader.line_num - 1
    if rows != len(images):
        raise located(plus_path, f"{rows} rows but {fer_path} has {len(images)}: the files do not match")
    keep = np.array(keep, dtype=np.int64)
    return _faceset(images[keep], labels, usage[keep], names, [f"{fer_path}:{i + 2}" for i in keep],
                    FERPLUS_EMOTIONS, "ferplus", size, skipped)


def write_fer2013(path, images48, emotions, usage) -> None:
    """Write fer2013.csv: `images48` (N, 48, 48) uint8, `emotions` codes 0..6, `usage` per row (or one str)."""
    images48 = np.asarray(images48)
    if images48.ndim != 3 or images48.shape[1:] != (48, 48):
        raise InterpretError(f"write_fer2013 needs (N, 48, 48) images, got {images48.shape}")
    emotions = np.asarray(emotions, dtype=np.int64)
    usage = [usage] * len(images48) if isinstance(usage, str) else list(usage)
    if not len(emotions) == len(usage) == len(images48):
        raise InterpretError("write_fer2013: images, emotions and usage differ in length")
    if len(emotions) and (emotions.min() < 0 or emotions.max() >= len(FER2013_EMOTIONS)):
        raise InterpretError("write_fer2013: emotion codes must be 0..6")
    pixels = np.clip(images48, 0, 255).astype(np.uint8).reshape(len(images48), -1)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        handle.write(",".join(FER2013_HEADER) + "\n")
        for label, row, use in zip(emotions, pixels, usage):
            handle.write(f"{label},{' '.join(map(str, row.tolist()))},{use}\n")
