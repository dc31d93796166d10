"""AU labels for any video from OpenFace 2 or py-feat CSVs, paired with the video beside them.

A CSV `clip.csv` labels the video of the same stem in the same folder (`clip.mp4`, `.avi`,
...). The spec is one such CSV or a folder searched for them.

- OpenFace 2 (`FeatureExtraction`): columns `frame` (from 1), `success`, `AU01_r` (intensity
  0..5, a regression estimate) and `AU01_c` (presence 0/1), 68 landmarks `x_0..x_67`,
  `y_0..y_67` in frame pixels. Older files write ", " between columns, so every column name
  but the first has a leading space: names are stripped. Presence comes from `_c` (`au_from`
  'c', the default) or from `_r` >= `threshold` (`au_from` 'r', threshold 1 by default); AU28
  has no `_r`. A frame with `success` 0 (face not tracked) is skipped: its landmarks and AUs
  are not measurements.
- py-feat (`Fex.to_csv`): bare AU columns `AU01`, `AU02`, ... (probabilities 0..1, present when
  >= `threshold`, 0.5 by default), `frame` from 0, `x_0..` / `y_0..` landmarks, pandas' unnamed
  index as an empty first column. A row with no face (empty / NaN face box) is skipped; a
  NaN AU value is UNKNOWN.

Landmarks in the CSV cut each frame to the paper's landmark box; otherwise `crop` / `landmarks`
as in `interpret.data.frames.FrameCutter`. One face per frame: a frame with several rows is an
error. The presence rule is echoed in `label_options`. Each CSV is one subject and sequence;
FaceSet `frame` is the video's frame number counted from 1 (OpenFace's `frame`, py-feat's + 1).
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import numpy as np

from interpret.data.faceset import ABSENT, UNKNOWN, FaceSet
from interpret.data.frames import FrameCutter, FrameRows, check_step, check_threshold, csv_rows, video_frames
from interpret.errors import InterpretError, located
from interpret.progress import progress_bar

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".wmv", ".mpg", ".mpeg", ".m4v")
_OPENFACE = re.compile(r"AU(\d\d)_([rc])")
_PYFEAT = re.compile(r"AU(\d\d)")


def csv_kind(path) -> str | None:
    """'openface', 'pyfeat' or None from a CSV's header line."""
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as handle:
            names = [c.strip() for c in handle.readline().split(",")]
    except OSError:
        return None
    if any(_OPENFACE.fullmatch(n) for n in names):
        return "openface"
    if any(_PYFEAT.fullmatch(n) for n in names):
        return "pyfeat"
    return None


def find_label_csvs(root) -> list[Path]:
    root = Path(root)
    if root.is_file():
        return [root] if csv_kind(root) else []
    return [p for p in sorted(root.rglob("*.csv")) if csv_kind(p)]


def video_for(csv_path: Path) -> Path:
    for suffix in VIDEO_SUFFIXES:
        for candidate in (csv_path.with_suffix(suffix), csv_path.with_suffix(suffix.upper())):
            if candidate.is_file():
                return candidate
    raise located(csv_path, f"no video beside it ({csv_path.stem}.mp4, .avi, ...): AU labels need their video")


def _number(path, line, name, text) -> float:
    text = text.strip()
    if text == "" or text.lower() == "nan":
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise located(path, f"{name} value {text!r} is not a number", line) from None


def read_au_csv(path, au_from: str = "c", threshold: float | None = None):
    """Parse one OpenFace / py-feat CSV.

    Returns (kind, AU numbers, rows, unusable, options): rows {video frame index from 0: (AU
    codes dict, (68, 2) landmarks or None)}, unusable {index: reason} for rows not to use.
    """
    path = Path(path)
    kind = csv_kind(path)
    if kind is None:
        raise located(path, "not an OpenFace or py-feat CSV (no AU01_c / AU01_r / AU01 column)", 1)
    if au_from not in ("c", "r"):
        raise InterpretError(f"au_from must be 'c' (presence column) or 'r' (intensity >= threshold), got {au_from!r}")
    if kind == "openface":
        threshold = check_threshold(1.0 if threshold is None else threshold, 0, 5, "OpenFace intensity threshold")
    else:
        threshold = check_threshold(0.5 if threshold is None else threshold, 0, 1, "py-feat AU threshold")
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        try:
            header = [c.strip() for c in next(reader)]
            column = {name: i for i, name in enumerate(header) if name}
            if "frame" not in column:
                raise located(path, "no 'frame' column", 1)
            if kind == "openface":
                wanted = "c" if au_from == "c" else "r"
                aus = {int(m.group(1)): column[n] for n in header if (m := _OPENFACE.fullmatch(n)) and m.group(2) == wanted}
                if not aus:
                    raise located(path, f"no AUxx_{wanted} columns", 1)
            else:
                aus = {int(m.group(1)): column[n] for n in header if (m := _PYFEAT.fullmatch(n))}
            xs = [column.get(f"x_{i}") for i in range(68)]
            ys = [column.get(f"y_{i}") for i in range(68)]
            has_marks = all(c is not None for c in xs + ys)
            rows, unusable = {}, {}
            for line, row in csv_rows(reader, path, len(header)):
                frame = _number(path, line, "frame", row[column["frame"]])
                if not (frame == frame and frame == int(frame)):
                    raise located(path, f"frame {row[column['frame']].strip()!r} is not a frame number", line)
                index = int(frame) - 1 if kind == "openface" else int(frame)
                if index < 0:
                    raise located(path, f"frame {int(frame)} is before the first frame", line)
                if index in rows or index in unusable:
                    raise located(path, f"several rows for frame {int(frame)} (several faces?); "
                                        "interpret reads one face per video", line)
                if kind == "openface" and "success" in column and \
                        _number(path, line, "success", row[column["success"]]) == 0:
                    unusable[index] = "OpenFace did not track the face (success 0)"
                    continue
                marks = None
                if has_marks:
                    marks = np.array([[_number(path, line, f"x_{i}", row[xs[i]]),
                                       _number(path, line, f"y_{i}", row[ys[i]])] for i in range(68)], np.float32)
                    if np.isnan(marks).any():
                        unusable[index] = "no face in this row (landmarks empty)"
                        continue
                codes = {}
                for au, col in aus.items():
                    value = _number(path, line, header[col], row[col])
                    if math.isnan(value):
                        codes[au] = UNKNOWN
                    elif kind == "openface" and au_from == "c":
                        if value not in (0, 1):
                            raise located(path, f"{header[col]} value {value:g} is not 0 or 1", line)
                        codes[au] = 0 if value == 1 else ABSENT
                    else:
                        codes[au] = 0 if value >= threshold else ABSENT
                rows[index] = (codes, marks)
        except (UnicodeDecodeError, csv.Error) as exc:
            raise located(path, f"not a readable CSV text file ({exc})", reader.line_num or 1) from None
        except StopIteration:
            raise located(path, "empty file") from None
    if kind == "openface":
        rule = "AUxx_c == 1" if au_from == "c" else f"AUxx_r >= {threshold:g}"
        options = {"format": "openface", "au_from": au_from, "presence": rule}
        if au_from == "r":
            options["threshold"] = threshold
    else:
        options = {"format": "pyfeat", "threshold": threshold, "presence": f"AUxx >= {threshold:g}"}
    return kind, sorted(aus), rows, unusable, options


def read_au_videos(spec, size: int = 99, au_from: str = "c", threshold: float | None = None,
                   crop: str = "haar", landmarks: str = "none", step: int = 1, progress: bool = False) -> FaceSet:
    """Read OpenFace / py-feat CSVs (a file or a folder of them) with their videos into a FaceSet."""
    spec = Path(spec)
    if not spec.exists():
        raise located(spec, "no such file or folder")
    step = check_step(step)
    csvs = find_label_csvs(spec)
    if not csvs:
        raise located(spec, "no OpenFace or py-feat CSV (with AU01_c / AU01_r / AU01 columns)")
    parsed = [(path, read_au_csv(path, au_from, threshold)) for path in csvs]
    kinds = {p[1][0] for p in parsed}
    if len(kinds) > 1:
        raise located(spec, "mixes OpenFace and py-feat CSVs; read them separately")
    au_codes = sorted({au for _, p in parsed for au in p[1]})
    base = spec if spec.is_dir() else spec.parent
    cutter = FrameCutter(spec, size, crop, landmarks)
    rows = FrameRows(au_codes, size)
    skipped: list[tuple[str, str]] = []
    for path, (_, aus, labelled, unusable, _) in progress_bar(parsed, enabled=progress, desc="videos", unit="video"):
        video = video_for(path)
        name = path.relative_to(base).with_suffix("").as_posix()
        for index, reason in unusable.items():
            skipped.append((f"{video}:{index + 1}", reason))
        wanted = set(sorted(labelled)[::step])
        seen = set()
        for index, grey in video_frames(video, wanted):
            seen.add(index)
            codes, marks = labelled[index]
            cut = cutter.cut(grey, f"{video}:{index + 1}", marks)
            if cut is None:
                skipped.append((f"{video}:{index + 1}", cutter.reason))
                continue
            rows.add(cut, name, name, index + 1, {au: codes.get(au, UNKNOWN) for au in au_codes},
                     f"{video}:{index + 1}")
        missing = sorted(wanted - seen)
        if missing:
            skipped.append((str(path), f"{len(missing)} labelled frame(s) from index {missing[0]} are past the "
                                       "video's end"))
    cutter.finish()
    options = {**parsed[0][1][4], "step": step, **cutter.options}
    if all(p[1][2] and next(iter(p[1][2].values()))[1] is not None for p in parsed):
        options["crop"] = "landmarks from the CSV"
    faceset = rows.faceset(parsed[0][1][0], skipped, options)
    if len(faceset) == 0:
        raise located(spec, "no labelled frames read (empty CSVs, untracked faces, or no faces found)")
    return faceset
