"""Shared fixtures."""

import cv2
import numpy as np
import pytest


# --- per-frame AU data (DISFA, BP4D, OpenFace / py-feat) -----------------------------------

@pytest.fixture(scope="session")
def disfa_tree(tmp_path_factory):
    """Three synthetic subjects in DISFA's layout, 40 labelled frames each (videos have 41)."""
    from interpret.synth.perframe import write_disfa

    return write_disfa(tmp_path_factory.mktemp("disfa") / "DISFA", subjects=3, frames=40, seed=3)


@pytest.fixture(scope="session")
def face_frames():
    """(frames (12, 176, 144) uint8, landmarks (12, 68, 2)): one synthetic identity whose mouth
    opens on every fourth frame."""
    from interpret.synth.render import FRAME, Scene, render
    from interpret.synth.shape import deform, sample_identity

    rng = np.random.default_rng(7)
    ident = sample_identity(rng, FRAME)
    frames, marks = [], []
    for i in range(12):
        amounts = {25: float(i % 4 == 3), 26: float(i % 4 == 3)}
        image, points = render(ident, deform(ident.shape, amounts), amounts, Scene(), rng)
        frames.append(image)
        marks.append(points)
    return np.stack(frames), np.stack(marks)


@pytest.fixture
def write_video():
    """write_video(path, frames): an MJPG .avi of grey frames (OpenCV's own encoder)."""

    def write(path, frames):
        h, w = frames[0].shape
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (w, h))
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
        writer.release()
        return path

    return write
