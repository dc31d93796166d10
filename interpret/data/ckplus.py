"""CK+ exactly as distributed (REFERENCE §5): read it, stream it, write it.

```
ROOT/cohn-kanade-images/S005/001/S005_001_00000011.png
ROOT/Landmarks/S005/001/S005_001_00000011_landmarks.txt   every frame, 68 lines "x y"
ROOT/FACS/S005/001/S005_001_00000011_facs.txt             peak (last) frame, "AU intensity" lines
ROOT/Emotion/S005/001/S005_001_00000011_emotion.txt       only labelled sequences, one code 0..7
```
Numbers are floats in `%.7e` style with leading spaces and are parsed by whitespace split.
Each of the four folders may also sit one level down (`ROOT/Emotion_labels/Emotion`), as the
separate CK+ archives unpack.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from interpret.data.crop import landmark_box
from interpret.data.faceset import FaceSet, RawSequence, faceset_from_sequences
from interpret.data.folders import read_grey
from interpret.errors import InterpretError, located
from interpret.facs import CKPLUS_EMOTIONS
from interpret.io import atomic_path, write_text
from interpret.progress import progress_bar

IMAGES, LANDMARKS, FACS, EMOTION = "cohn-kanade-images", "Landmarks", "FACS", "Emotion"

_FRAME = re.compile(r"(.+)_(\d+)\.png", re.IGNORECASE)
_SYSTEM_FILES = {"thumbs.db", "desktop.ini", "__macosx"}
# FACS codes are 1..99 (action units, head and eye positions, gross behaviours).
_AU_RANGE = range(1, 100)


def find_ckplus_folder(root, name: str) -> Path | None:
    """`root/name`, or the single `root/*/name`, or None."""
    root = Path(root)
    if (root / name).is_dir():
        return root / name
    found = [p for p in root.glob(f"*/{name}") if p.is_dir()]
    return found[0] if len(found) == 1 else None


def _folders(root: Path) -> dict[str, Path]:
    if not root.is_dir():
        raise located(root, "no such folder")
    folders = {}
    for name in (IMAGES, LANDMARKS, FACS, EMOTION):
        folder = find_ckplus_folder(root, name)
        if folder is None:
            raise located(root / name, f"missing folder (CK+ needs {IMAGES}, {LANDMARKS}, {FACS} and {EMOTION})")
        folders[name] = folder
    return folders


def _system_file(path: Path) -> bool:
    return path.name.startswith(".") or path.name.lower() in _SYSTEM_FILES


def _entries(folder: Path, suffix: str, what: str, skipped: list) -> list[Path]:
    """Files in `folder` ending in `suffix`; everything else is recorded in `skipped`."""
    keep = []
    for path in sorted(folder.iterdir()):
        if _system_file(path):
            skipped.append((str(path), "system file"))
        elif path.is_file() and path.name.lower().endswith(suffix):
            keep.append(path)
        else:
            skipped.append((str(path), f"not a {what}"))
    return keep


def _lines(path: Path) -> list[tuple[int, str]]:
    """(1-based line number, text) of the non-blank lines."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise located(path, f"cannot read ({exc.strerror or exc})") from None
    return [(i, line) for i, line in enumerate(text.splitlines(), start=1) if line.strip()]


def _numbers(path: Path, line_no: int, text: str, count: int, what: str) -> list[float]:
    fields = text.split()
    if len(fields) != count:
        raise located(path, f"malformed {what} line {text.strip()!r}: expected {count} number(s)", line_no)
    try:
        values = [float(f) for f in fields]
    except ValueError:
        raise located(path, f"malformed {what} line {text.strip()!r}: not a number", line_no) from None
    if not all(math.isfinite(v) for v in values):
        raise located(path, f"malformed {what} line {text.strip()!r}: not a finite number", line_no)
    return values


def _integer(path: Path, line_no: int, value: float, allowed: range, what: str) -> int:
    if value != round(value) or int(round(value)) not in allowed:
        raise located(path, f"{what} {value:g} is not one of {allowed.start}..{allowed.stop - 1}", line_no)
    return int(round(value))


def read_landmarks(path) -> np.ndarray:
    """A CK+ landmark file as (68, 2) float32 (x, y) image pixel coordinates."""
    path = Path(path)
    lines = _lines(path)
    if len(lines) != 68:
        line = lines[68][0] if len(lines) > 68 else None
        raise located(path, f"has {len(lines)} landmark points, expected 68", line)
    return np.array([_numbers(path, i, text, 2, "landmark") for i, text in lines], dtype=np.float32)


def read_facs(path) -> dict[int, int]:
    """A CK+ FACS file as {AU: intensity}; intensity 0 = present, intensity not coded."""
    path = Path(path)
    facs: dict[int, int] = {}
    for i, text in _lines(path):
        au, level = _numbers(path, i, text, 2, "FACS")
        au = _integer(path, i, au, _AU_RANGE, "AU code")
        facs[au] = max(facs.get(au, 0), _integer(path, i, level, range(0, 6), "AU intensity"))
    return facs


def read_emotion(path) -> int:
    """A CK+ Emotion file: the emotion code 0..7 (index into CKPLUS_EMOTIONS)."""
    path = Path(path)
    lines = _lines(path)
    if not lines:
        raise located(path, "empty Emotion file (expected one code 0..7)")
    if len(lines) > 1:
        raise located(path, "malformed Emotion file: more than one line", lines[1][0])
    i, text = lines[0]
    (value,) = _numbers(path, i, text, 1, "Emotion")
    return _integer(path, i, value, range(len(CKPLUS_EMOTIONS)), "unknown emotion code")


def _label_file(folder: Path, suffix: str, what: str, skipped: list, required: bool) -> Path | None:
    """The one `*suffix` file of a sequence's label folder (None if absent and not required)."""
    files = _entries(folder, suffix, f"{what} file", skipped) if folder.is_dir() else []
    if len(files) > 1:
        raise located(folder, f"{len(files)} {what} files for one sequence (expected one)")
    if not files and required:
        raise located(folder, f"no {what} file (*{suffix}) for this sequence")
    return files[0] if files else None


def _read_sequence(folders: dict[str, Path], seq_dir: Path, skipped: list) -> RawSequence | None:
    subject, rel = seq_dir.parent.name, Path(seq_dir.parent.name, seq_dir.name)
    frames = []
    for path in _entries(seq_dir, ".png", "PNG frame", skipped):
        match = _FRAME.fullmatch(path.name)
        if match is None:
            skipped.append((str(path), "name is not SUBJECT_SEQUENCE_FRAME.png"))
        else:
            frames.append((int(match.group(2)), path))
    if not frames:
        skipped.append((str(seq_dir), "sequence without frames"))
        return None
    frames.sort()
    images, marks = [], []
    for _, path in frames:
        image = read_grey(path)
        mark_path = folders[LANDMARKS] / rel / f"{path.stem}_landmarks.txt"
        if not mark_path.is_file():
            raise located(path, f"frame without its landmark file {mark_path}")
        points = read_landmarks(mark_path)
        top, left, bottom, right = landmark_box(points, image.shape)
        if bottom - top < 2 or right - left < 2:
            raise located(mark_path, f"landmarks span no area inside the {image.shape[1]}x{image.shape[0]} image")
        images.append(image)
        marks.append(points)
    facs = read_facs(_label_file(folders[FACS] / rel, "_facs.txt", "FACS", skipped, required=True))
    emotion_file = _label_file(folders[EMOTION] / rel, "_emotion.txt", "Emotion", skipped, required=False)
    return RawSequence(
        subject=subject,
        number=int(seq_dir.name),
        frames=images,
        landmarks=marks,
        frame_numbers=[n for n, _ in frames],
        emotion=None if emotion_file is None else read_emotion(emotion_file),
        facs=facs,
        paths=[str(p) for _, p in frames],
    )


def iter_ckplus_sequences(root, skipped: list | None = None, progress: bool = False):
    """Yield the CK+ sequences under `root` one at a time, in subject / sequence order.

    Only one sequence's full frames are in memory at a time. Files passed over (`.DS_Store`,
    `Thumbs.db`, non-PNG files, folders that are not numbered sequences) are appended to
    `skipped` as (path, reason). A sequence without an Emotion file (or with an empty Emotion
    folder) has `emotion` None. Bad input raises `InterpretError` naming file and line.
    """
    folders = _folders(Path(root))
    skipped = [] if skipped is None else skipped
    seq_dirs = []
    for subject in sorted(folders[IMAGES].iterdir()):
        if _system_file(subject) or not subject.is_dir():
            skipped.append((str(subject), "system file" if _system_file(subject) else "not a subject folder"))
            continue
        for seq_dir in sorted(subject.iterdir()):
            if seq_dir.is_dir() and seq_dir.name.isdigit():
                seq_dirs.append(seq_dir)
            else:
                skipped.append((str(seq_dir), "system file" if _system_file(seq_dir) else "not a sequence folder"))
    for seq_dir in progress_bar(seq_dirs, enabled=progress, desc="CK+ sequences", unit="seq"):
        sequence = _read_sequence(folders, seq_dir, skipped)
        if sequence is not None:
            yield sequence


def read_ckplus(root, size: int = 99, progress: bool = True) -> FaceSet:
    """Read a CK+ tree into a raw FaceSet: every frame cut to the landmark box, size x size.

    Every frame carries its sequence's emotion (UNLABELLED without an Emotion file) and its
    sequence's peak-frame AU intensities; AU columns are the AUs coded anywhere in the tree.
    """
    skipped: list[tuple[str, str]] = []
    sequences = iter_ckplus_sequences(root, skipped=skipped, progress=progress)
    faceset = faceset_from_sequences(sequences, _AU_RANGE, CKPLUS_EMOTIONS, "ckplus", size=size)
    if len(faceset) == 0:
        raise located(Path(root) / IMAGES, "no CK+ frames found")
    coded = faceset.au_present.any(axis=0)
    return replace(faceset, au_intensity=faceset.au_intensity[:, coded], au_codes=faceset.au_codes[coded],
                   skipped=skipped)


def _float_line(*values) -> str:
    return "".join(f"   {float(v):.7e}" for v in values) + "\n"


def write_ckplus(root, sequences) -> None:
    """Write `RawSequence`s in CK+'s exact layout and text format under `root`.

    Per frame a PNG and (when the sequence has landmarks) a landmark file; a FACS file for the
    last frame; an Emotion file for the last frame only when `emotion` is not None.
    """
    root = Path(root)
    for seq in sequences:
        rel = Path(seq.subject, f"{seq.number:03d}")
        stem = ""
        for i, (image, number) in enumerate(zip(seq.frames, seq.frame_numbers, strict=True)):
            stem = f"{seq.subject}_{seq.number:03d}_{number:08d}"
            ok, png = cv2.imencode(".png", np.asarray(image))
            if not ok:
                raise InterpretError(f"cannot encode frame {number} of {seq.sequence_id} as PNG")
            with atomic_path(root / IMAGES / rel / f"{stem}.png") as tmp:
                tmp.write_bytes(png.tobytes())
            if seq.landmarks is not None:
                text = "".join(_float_line(x, y) for x, y in np.asarray(seq.landmarks[i], dtype=np.float64))
                write_text(root / LANDMARKS / rel / f"{stem}_landmarks.txt", text)
        if not stem:
            raise InterpretError(f"sequence {seq.sequence_id} has no frames")
        facs = "".join(_float_line(au, level) for au, level in sorted(seq.facs.items()))
        write_text(root / FACS / rel / f"{stem}_facs.txt", facs)
        if seq.emotion is not None:
            write_text(root / EMOTION / rel / f"{stem}_emotion.txt", _float_line(seq.emotion))
