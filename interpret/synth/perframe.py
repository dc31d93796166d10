"""Synthetic faces with per-frame AUs (AUs that come and go), written in DISFA's layout.

Each subject is one video whose AUs switch on and off in episodes (onset, apex, offset) with
intensities 0..5, as DISFA codes them. Used to test the DISFA reader and au-map's per-frame
null on data whose true AU per frame is known.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np

from interpret.data.disfa import DISFA_AUS
from interpret.errors import InterpretError
from interpret.synth.render import FRAME, Scene, render
from interpret.synth.shape import deform, sample_identity


def intensity_tracks(frames: int, rng: np.random.Generator, aus=DISFA_AUS, episodes: float = 2.0) -> dict[int, np.ndarray]:
    """Per AU an (frames,) int track 0..5: about `episodes` episodes per AU, each rising to a
    random apex (1..5) and falling again, 4..frames/4 frames long."""
    tracks = {}
    for au in aus:
        track = np.zeros(frames)
        for _ in range(int(rng.poisson(episodes))):
            length = int(rng.integers(4, max(5, frames // 4)))
            start = int(rng.integers(0, max(1, frames - length)))
            shape = np.sin(np.linspace(0, np.pi, length)) * rng.integers(1, 6)
            track[start:start + length] = np.maximum(track[start:start + length], shape[:frames - start])
        tracks[au] = np.rint(track).astype(np.int64)
    return tracks


def write_disfa(out, subjects: int = 4, frames: int = 40, seed: int = 0, extra_frames: int = 1) -> Path:
    """Write `subjects` synthetic subjects under the new folder `out` in DISFA's layout.

    `ActionUnit_Labels/SN001/SN001_au1.txt` ("frame,intensity" lines for frames 1..`frames`) and
    `Videos_LeftCamera/LeftVideoSN001_comp.avi` (MJPG) with `extra_frames` frames more than the
    label files, as some DISFA videos have. Subject k draws from `default_rng([seed, k])`.
    """
    if int(subjects) < 1 or int(frames) < 8:
        raise InterpretError(f"write_disfa needs at least 1 subject and 8 frames, got {subjects}, {frames}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InterpretError(f"{out}: already exists and is not an empty folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for k in range(int(subjects)):
            _write_subject(tmp, f"SN{k + 1:03d}", np.random.default_rng([int(seed), k]), int(frames),
                           int(extra_frames))
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _write_subject(root: Path, subject: str, rng: np.random.Generator, frames: int, extra: int) -> None:
    ident = sample_identity(rng, FRAME)
    tracks = intensity_tracks(frames, rng)
    labels = root / "ActionUnit_Labels" / subject
    labels.mkdir(parents=True)
    for au, track in tracks.items():
        text = "".join(f"{i + 1},{int(v)}\n" for i, v in enumerate(track))
        (labels / f"{subject}_au{au}.txt").write_text(text)
    videos = root / "Videos_LeftCamera"
    videos.mkdir(exist_ok=True)
    scene = Scene(angle=rng.uniform(-3, 3), scale=rng.uniform(.95, 1.03), noise=2.0)
    writer = cv2.VideoWriter(str(videos / f"LeftVideo{subject}_comp.avi"), cv2.VideoWriter_fourcc(*"MJPG"),
                             20.0, FRAME)
    try:
        for i in range(frames + extra):
            amounts = {au: float(track[min(i, frames - 1)]) / 5 for au, track in tracks.items()}
            image, _ = render(ident, deform(ident.shape, amounts), amounts, scene, rng)
            writer.write(cv2.cvtColor(image, cv2.COLOR_GRAY2BGR))
    finally:
        writer.release()
