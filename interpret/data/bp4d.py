"""BP4D(-Spontaneous / +): per-task AU occurrence CSVs beside the 2D frame folders.

```
ROOT/AUCoding/AU_OCC/F001_T1.csv     header: the frame column, then one column per AU number
ROOT/2DFeatures/F001/T1/0597.jpg      the frame images, named by frame number
```
Files are found anywhere under ROOT by name (`F001_T1.csv`; images in a `T1` folder inside
an `F001` folder). Header cells after the first are AU numbers (`1`, `AU1` or `AU01`); cells
are 0 (absent), 1 (present; intensity not coded) or 9 (unknown: FACS coders could not tell,
e.g. an occluded face), which becomes UNKNOWN, never absent; AU columns that are 9 in every
frame read (files list AUs never coded) are dropped and named in `label_options`. Coded frames without an image and
images without a coded row are not used and are counted in `skipped`. Each subject's task is
one sequence (`F001/T1`).
"""

from __future__ import annotations

import csv
import re
from dataclasses import replace
from pathlib import Path

from interpret.data.faceset import ABSENT, UNKNOWN, FaceSet
from interpret.data.folders import IMAGE_SUFFIXES, read_grey
from interpret.data.frames import FrameCutter, FrameRows, check_step, csv_rows
from interpret.errors import InterpretError, located
from interpret.progress import progress_bar

CSV_NAME = re.compile(r"([FM]\d{3})_(T\d+)\.csv", re.IGNORECASE)
_AU_HEADER = re.compile(r"(?:AU)?0*(\d{1,2})", re.IGNORECASE)
_CODES = {"0": ABSENT, "1": 0, "9": UNKNOWN}


def read_occurrence_csv(path) -> tuple[list[int], dict[int, dict[int, int]]]:
    """A BP4D occurrence CSV: (AU numbers, {frame: {AU: au_intensity code}})."""
    path = Path(path)
    try:
        handle = open(path, newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise located(path, f"cannot read ({exc.strerror or exc})") from None
    with handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
            if not header or len(header) < 2:
                raise located(path, "header needs a frame column and AU columns", 1)
            aus = []
            for cell in header[1:]:
                match = _AU_HEADER.fullmatch(cell.strip())
                if match is None:
                    raise located(path, f"header cell {cell!r} is not an AU number", 1)
                aus.append(int(match.group(1)))
            if len(set(aus)) != len(aus):
                raise located(path, "an AU column appears twice in the header", 1)
            frames: dict[int, dict[int, int]] = {}
            for line, row in csv_rows(reader, path, len(header)):
                frame = row[0].strip()
                if not frame.isdigit():
                    raise located(path, f"frame {frame!r} is not a frame number", line)
                codes = {}
                for au, cell in zip(aus, row[1:]):
                    value = cell.strip()
                    if value not in _CODES:
                        raise located(path, f"AU{au} value {value!r} is not 0, 1 or 9 (unknown)", line)
                    codes[au] = _CODES[value]
                if int(frame) in frames:
                    raise located(path, f"frame {int(frame)} appears twice", line)
                frames[int(frame)] = codes
        except (UnicodeDecodeError, csv.Error) as exc:
            raise located(path, f"not a readable CSV text file ({exc})", reader.line_num or 1) from None
    if not frames:
        raise located(path, "no coded frames")
    return aus, frames


def is_bp4d(root) -> bool:
    root = Path(root)
    return root.is_dir() and any(CSV_NAME.fullmatch(p.name) for p in root.rglob("*.csv"))


def read_bp4d(root, size: int = 99, crop: str = "haar", landmarks: str = "none", step: int = 1,
              progress: bool = False) -> FaceSet:
    """Read BP4D under `root` into a FaceSet with per-frame AU occurrence (9 = UNKNOWN).

    `step` keeps every step-th coded frame; `crop` / `landmarks` as in
    `interpret.data.frames.FrameCutter`.
    """
    root = Path(root)
    if not root.is_dir():
        raise located(root, "no such folder")
    step = check_step(step)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    tables = {}
    for path in files:
        match = CSV_NAME.fullmatch(path.name)
        if match:
            tables[(match.group(1).upper(), match.group(2).upper())] = path
    if not tables:
        raise located(root, "no BP4D occurrence files (F001_T1.csv, ...)")
    images: dict[tuple[str, str], dict[int, Path]] = {}
    for path in files:
        if path.suffix.lower() in IMAGE_SUFFIXES and path.stem.isdigit():
            key = (path.parent.parent.name.upper(), path.parent.name.upper())
            if key in tables:
                images.setdefault(key, {})[int(path.stem)] = path
    parsed = {key: read_occurrence_csv(path) for key, path in tables.items()}
    au_codes = sorted({au for aus, _ in parsed.values() for au in aus})
    cutter = FrameCutter(root, size, crop, landmarks)
    rows = FrameRows(au_codes, size)
    skipped: list[tuple[str, str]] = []
    for key in progress_bar(sorted(tables), enabled=progress, desc="BP4D tasks", unit="task"):
        subject, task = key
        aus, coded = parsed[key]
        frames = images.get(key, {})
        if not frames:
            skipped.append((str(tables[key]), f"no frame images for {subject}/{task} (a {task} folder in a "
                                              f"{subject} folder)"))
            continue
        no_image = [f for f in coded if f not in frames]
        if no_image:
            skipped.append((str(tables[key]), f"{len(no_image)} coded frame(s) without an image, "
                                              f"e.g. frame {no_image[0]}"))
        unlabelled = [f for f in frames if f not in coded]
        if unlabelled:
            skipped.append((str(frames[unlabelled[0]].parent), f"{len(unlabelled)} image(s) without a coded row"))
        for frame in sorted(f for f in coded if f in frames)[::step]:
            path = frames[frame]
            cut = cutter.cut(read_grey(path), str(path))
            if cut is None:
                skipped.append((str(path), cutter.reason))
                continue
            codes = {au: coded[frame].get(au, UNKNOWN) for au in au_codes}
            rows.add(cut, subject, f"{subject}/{task}", frame, codes, str(path))
    cutter.finish()
    faceset = rows.faceset("bp4d", skipped, {"presence": "occurrence 1; 9 = unknown", "step": step,
                                             **cutter.options})
    if len(faceset) == 0:
        raise InterpretError(f"{root}: no BP4D frames read (no images beside the coded frames, or no faces found)")
    coded = faceset.au_known.any(axis=0)  # columns that are 9 in every frame were never coded
    faceset.label_options["uncoded_aus"] = [int(a) for a in faceset.au_codes[~coded]]
    return replace(faceset, au_intensity=faceset.au_intensity[:, coded], au_codes=faceset.au_codes[coded])
