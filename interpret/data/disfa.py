"""DISFA as distributed: per-frame AU intensities beside the left / right camera videos.

```
ROOT/ActionUnit_Labels/SN001/SN001_au1.txt          lines "frame,intensity" (frame from 1, intensity 0..5)
ROOT/Videos_LeftCamera/LeftVideoSN001_comp.avi      frame k of the labels = the k-th decoded frame
ROOT/Video_RightCamera/RightVideoSN001_comp.avi
```
Files are found anywhere under ROOT by name. Twelve AUs are coded: 1 2 4 5 6 9 12 15 17 20 25
26. An AU is present when its intensity is at least `threshold` (2 by default, the usual
DISFA convention; echoed in `label_options`), with that intensity as its level. A subject
without one AU's file has that AU UNKNOWN; frames past the end of a label file likewise.
Frames of a video with no label line, and label lines past the end of the video, are not
used and are listed in `skipped` (DISFA's videos and label files differ by a frame or two).
Each subject's camera is one sequence (`SN001/left`). Other files (DISFA's landmark .mat
files, READMEs) are not looked at.
"""

from __future__ import annotations

import re
from pathlib import Path

from interpret.data.faceset import ABSENT, UNKNOWN, FaceSet
from interpret.data.frames import FrameCutter, FrameRows, check_step, check_threshold, video_frames
from interpret.errors import InterpretError, located
from interpret.progress import progress_bar

DISFA_AUS = (1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26)
LABEL_NAME = re.compile(r"(SN\d+)_au(\d+)\.txt", re.IGNORECASE)
VIDEO_NAME = re.compile(r"(Left|Right)Video(SN\d+)(?:_comp)?\.(?:avi|mp4|mov|mkv)", re.IGNORECASE)
CAMERAS = ("left", "right", "both")


def read_label_file(path) -> dict[int, int]:
    """A DISFA AU file as {frame: intensity}; one-line errors name the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as exc:
        raise located(path, f"cannot read ({exc.strerror or exc})") from None
    out: dict[int, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 2 or not all(f.lstrip("-").isdigit() for f in fields):
            raise located(path, f"malformed line {line.strip()!r}: expected 'frame,intensity' integers", number)
        frame, level = int(fields[0]), int(fields[1])
        if frame < 1:
            raise located(path, f"frame {frame} is not a frame number (from 1)", number)
        if not 0 <= level <= 5:
            raise located(path, f"intensity {level} is not one of 0..5", number)
        if frame in out:
            raise located(path, f"frame {frame} appears twice", number)
        out[frame] = level
    if not out:
        raise located(path, "empty AU file (expected 'frame,intensity' lines)")
    return out


def is_disfa(root) -> bool:
    root = Path(root)
    return root.is_dir() and any(LABEL_NAME.fullmatch(p.name) for p in root.rglob("*_au*.txt"))


def read_disfa(root, size: int = 99, threshold: float = 2, camera: str = "left", crop: str = "haar",
               landmarks: str = "none", step: int = 1, progress: bool = False) -> FaceSet:
    """Read DISFA under `root` into a FaceSet with per-frame AU labels.

    `camera` 'left', 'right' or 'both'; `step` keeps every step-th labelled frame (1 = all);
    `crop` 'haar' or 'none' and `landmarks` ('none', 'auto', 'mediapipe', 'dlib': the
    landmark-box crop with detected landmarks) as in `interpret.data.frames.FrameCutter`.
    """
    root = Path(root)
    if not root.is_dir():
        raise located(root, "no such folder")
    threshold = check_threshold(threshold, 1, 5, "DISFA presence threshold (intensity)")
    step = check_step(step)
    if camera not in CAMERAS:
        raise InterpretError(f"camera must be one of {', '.join(CAMERAS)}, got {camera!r}")
    skipped: list[tuple[str, str]] = []
    labels: dict[str, dict[int, Path]] = {}
    videos: dict[tuple[str, str], Path] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        label, video = LABEL_NAME.fullmatch(path.name), VIDEO_NAME.fullmatch(path.name)
        if label:
            labels.setdefault(label.group(1).upper(), {})[int(label.group(2))] = path
        elif video:
            side = video.group(1).lower()
            if camera in (side, "both"):
                videos[(video.group(2).upper(), side)] = path
    if not labels:
        raise located(root, "no DISFA AU files (SN001_au1.txt, ...)")
    au_codes = sorted({au for files in labels.values() for au in files})
    cutter = FrameCutter(root, size, crop, landmarks)
    rows = FrameRows(au_codes, size)
    for subject in sorted(labels):
        tracks = {au: read_label_file(path) for au, path in labels[subject].items()}
        for au in au_codes:
            if au not in tracks:
                skipped.append((str(root / subject), f"no {subject}_au{au}.txt: AU{au} unknown for {subject}"))
        sides = [s for s in ("left", "right") if (subject, s) in videos]
        if not sides:
            skipped.append((str(labels[subject][min(labels[subject])].parent),
                            f"labels of {subject} without its {camera} camera video"))
        every = sorted(set().union(*tracks.values()))
        labelled = every[::step]
        for side in sides:
            path = videos[(subject, side)]
            wanted = {f - 1 for f in labelled}
            seen, extra = 0, False
            for index, grey in progress_bar(video_frames(path, wanted | {every[-1]}), enabled=progress,
                                            desc=f"{subject} {side}", unit="frame", total=len(wanted)):
                frame = index + 1
                if frame > every[-1]:  # the frame after the last label line
                    extra = True
                    continue
                seen = frame
                cut = cutter.cut(grey, f"{path}:{frame}")
                if cut is None:
                    skipped.append((f"{path}:{frame}", cutter.reason))
                    continue
                aus = {}
                for au in au_codes:
                    level = tracks.get(au, {}).get(frame)
                    aus[au] = UNKNOWN if level is None else (level if level >= threshold else ABSENT)
                rows.add(cut, subject, f"{subject}/{side}", frame, aus, f"{path}:{frame}")
            missing = [f for f in labelled if f > seen]
            if missing:
                skipped.append((str(path), f"{len(missing)} labelled frame(s) from {missing[0]} are past the "
                                           f"video's end"))
            if extra:
                skipped.append((str(path), f"frames after {every[-1]} have no label line"))
    for (subject, side), path in videos.items():
        if subject not in labels:
            skipped.append((str(path), f"video without DISFA AU files for {subject}"))
    cutter.finish()
    options = {"threshold": threshold, "presence": f"intensity >= {threshold:g}", "camera": camera,
               "step": step, **cutter.options}
    faceset = rows.faceset("disfa", skipped, options)
    if len(faceset) == 0:
        raise located(root, "no DISFA frames read (no videos beside the labels, or no faces found)")
    return faceset

