"""Datasets: `load_faceset(spec)` reads whatever the user brings into a raw `FaceSet`."""

from __future__ import annotations

from pathlib import Path

from interpret.errors import InterpretError, located

FORMATS = ("CK+ (cohn-kanade-images/ ...), fer2013.csv (+ fer2013new.csv), JAFFE *.tiff, CLASS/IMAGE folders, "
           "DISFA (SN001_au1.txt + videos), BP4D (F001_T1.csv + frames), OpenFace / py-feat CSVs + videos")
#: Readers whose labels are per frame (AUs come and go within a sequence).
PER_FRAME_AU = ("disfa", "bp4d", "openface", "pyfeat")


def _ferplus_header(path: Path) -> bool:
    with open(path, encoding="utf-8-sig", errors="replace") as handle:
        return handle.readline().replace(" ", "").lower().startswith("usage,imagename,")


def _find(root: Path, name: str) -> Path | None:
    """`root/name` or the single `root/*/name`."""
    if (root / name).is_file():
        return root / name
    found = [p for p in root.glob(f"*/{name}") if p.is_file()]
    return found[0] if len(found) == 1 else None


def detect_format(path) -> str:
    """'ckplus', 'fer2013', 'ferplus', 'jaffe', 'folders', 'disfa', 'bp4d', 'openface' or 'pyfeat'
    for a path; InterpretError if none fits."""
    from interpret.data.ckplus import IMAGES, find_ckplus_folder
    from interpret.data.folders import IMAGE_SUFFIXES
    from interpret.data.jaffe import JAFFE_NAME
    from interpret.data.bp4d import is_bp4d
    from interpret.data.disfa import is_disfa
    from interpret.data.openface import csv_kind, find_label_csvs

    path = Path(path)
    if not path.exists():
        raise located(path, "no such file or folder")
    if path.is_file():
        if path.suffix.lower() != ".csv":
            raise located(path, f"cannot tell the data format; expected a folder or a .csv file ({FORMATS})")
        if _ferplus_header(path):
            if not (path.parent / "fer2013.csv").is_file():
                raise located(path, "FER+ labels need fer2013.csv (the images) in the same folder")
            return "ferplus"
        return csv_kind(path) or "fer2013"
    if find_ckplus_folder(path, IMAGES) is not None:
        return "ckplus"
    fer = _find(path, "fer2013.csv")
    if fer is not None:
        return "ferplus" if (fer.parent / "fer2013new.csv").is_file() else "fer2013"
    if is_disfa(path):
        return "disfa"
    if is_bp4d(path):
        return "bp4d"
    label_csvs = find_label_csvs(path)
    if label_csvs:
        return csv_kind(label_csvs[0])
    files = [p for p in path.rglob("*") if p.is_file()]
    if any(JAFFE_NAME.fullmatch(p.name) for p in files):
        return "jaffe"
    if any(p.suffix.lower() in IMAGE_SUFFIXES and p.parent != path for p in files):
        return "folders"
    raise located(path, f"cannot tell the data format ({FORMATS})")


def load_faceset(spec, size: int = 99, **kw):
    """A raw FaceSet from 'synthetic' (kw go to `synthetic_faceset`) or a path, format detected.

    A CK+ root, a folder holding fer2013.csv (FER+ when fer2013new.csv sits beside it), a
    fer2013.csv / fer2013new.csv file, a JAFFE folder, or a folder-per-class tree. `kw` go to
    the reader (`progress`, FER+ `mode`, folders `crop`, DISFA `threshold` / `camera`,
    OpenFace `au_from` / `threshold`, `step`, ...). `landmarks` ('none', 'auto' = mediapipe,
    'mediapipe', 'dlib'; `interpret.landmarks`) gives data without landmark files detected
    landmarks: stills are re-cut to the landmark box, video frames are cut that way.
    """
    if int(size) < 8:
        raise InterpretError(f"image size must be at least 8 pixels, got {size}")
    if str(spec) == "synthetic":
        from interpret.synth import synthetic_faceset

        if kw.pop("landmarks", "none") != "none":
            raise InterpretError("the synthetic faces come with their landmarks; --landmarks is for data without them")
        return synthetic_faceset(size=size, **kw)
    path = Path(spec).expanduser()
    kind = detect_format(path)
    landmarks = kw.pop("landmarks", "none")
    if kind in PER_FRAME_AU:
        return _read_per_frame(kind, path, size, landmarks, kw)
    if landmarks != "none":
        from interpret.data.frames import landmark_backend
        from interpret.landmarks import with_landmarks

        backend = landmark_backend(landmarks)
        if kind == "ckplus":
            raise located(path, "CK+ ships landmark files; --landmarks is for data without them")
        return with_landmarks(_read_stills(kind, path, size, kw), path, backend, size,
                              progress=kw.get("progress", False))
    return _read_stills(kind, path, size, kw)


def _read_per_frame(kind: str, path: Path, size: int, landmarks: str, kw: dict):
    if kind == "disfa":
        from interpret.data.disfa import read_disfa as reader
    elif kind == "bp4d":
        from interpret.data.bp4d import read_bp4d as reader
    else:
        from interpret.data.openface import read_au_videos as reader
    _check_options(kind, reader, kw)
    return reader(path, size=size, landmarks=landmarks, **kw)


def _check_options(kind: str, reader, kw: dict) -> None:
    """One-line error for a reader option the format's reader does not take."""
    import inspect

    known = [name for name in inspect.signature(reader).parameters if name not in ("size", "landmarks")][1:]
    for name in kw:
        if name not in known:
            raise InterpretError(f"the {kind} reader takes no option {name!r} (it takes: {', '.join(known)})")


def _read_stills(kind: str, path: Path, size: int, kw: dict):
    if kind == "ckplus":
        from interpret.data.ckplus import read_ckplus

        return read_ckplus(path, size=size, **kw)
    if kind in ("fer2013", "ferplus"):
        from interpret.data.fer import read_fer2013, read_ferplus

        csv = path if path.is_file() else _find(path, "fer2013.csv")
        if kind == "fer2013":
            return read_fer2013(csv, size=size, **kw)
        if path.is_file():
            return read_ferplus(path.parent / "fer2013.csv", path, size=size, **kw)
        return read_ferplus(csv, csv.parent / "fer2013new.csv", size=size, **kw)
    if kind == "jaffe":
        from interpret.data.jaffe import read_jaffe

        return read_jaffe(path, size=size, **kw)
    from interpret.data.folders import read_folders

    return read_folders(path, size=size, **kw)
