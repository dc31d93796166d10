"""68-point landmarks on real faces that ship offline, the cache beside the data, and the extras."""

import json

import cv2
import numpy as np
import pytest
import skimage.data
from typer.testing import CliRunner

from interpret import landmarks as lm
from interpret.cli import app
from interpret.data import load_faceset
from interpret.data.crop import detect_face
from interpret.errors import InterpretError
from interpret.facs import region_mask

runner = CliRunner()
BACKENDS = [pytest.param(b, marks=pytest.mark.skipif(not lm.available(b), reason=(
    f"landmark backend {b} not installed: pip install 'interpret[{lm.EXTRAS[b]}]'"))) for b in lm.BACKENDS]
needs_mediapipe = pytest.mark.skipif(not lm.available("mediapipe"),
                                     reason="MediaPipe not installed: pip install 'interpret[landmarks]'")


@pytest.fixture(scope="module")
def astronaut():
    return cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2GRAY)


@pytest.fixture(scope="module")
def lfw_faces():
    """The 100 faces of skimage's LFW subset (25x25), enlarged to 100x100 grey."""
    faces = skimage.data.lfw_subset()[:100]
    return [cv2.resize((f * 255).round().astype(np.uint8), (100, 100), interpolation=cv2.INTER_CUBIC) for f in faces]


#: How far (share of the box) points may lie outside the backend's own face box: dlib's box
#: ends above the chin (its jaw points lie up to ~a quarter of the box below it on LFW).
MARGIN = {"mediapipe": 0.1, "dlib": 0.25}


def anatomy_holds(points, box, margin) -> bool:
    """Inside the face box grown by `margin` of its size, eyes above the mouth, brows above
    the eyes, the subject's right (iBUG 36-41, 17-21, 0, 48) on the image left."""
    top, left, bottom, right = box
    dy, dx = margin * (bottom - top), margin * (right - left)
    inside = ((points[:, 0] >= left - dx) & (points[:, 0] <= right + dx) &
              (points[:, 1] >= top - dy) & (points[:, 1] <= bottom + dy)).all()
    eyes, mouth, brows = points[36:48, 1].mean(), points[48:68, 1].mean(), points[17:27, 1].mean()
    sides = (points[36:42, 0].mean() < points[42:48, 0].mean() and points[17:22, 0].mean() < points[22:27, 0].mean()
             and points[0, 0] < points[16, 0] and points[48, 0] < points[54, 0])
    return bool(inside and brows < eyes < points[30, 1] < mouth < points[8, 1] and sides)


@pytest.mark.parametrize("backend", BACKENDS)
def test_astronaut_landmarks_are_anatomical(astronaut, backend):
    face = lm.LandmarkDetector(backend)(astronaut)
    assert face is not None and face.points.shape == (68, 2)
    assert anatomy_holds(face.points, face.box, MARGIN[backend])
    haar = detect_face(astronaut)  # an independent detector agrees: eyes and nose in its box, all near it
    top, left, bottom, right = haar
    inner = face.points[np.r_[27:31, 36:48]]
    assert ((inner[:, 0] > left) & (inner[:, 0] < right) & (inner[:, 1] > top) & (inner[:, 1] < bottom)).all()
    assert anatomy_holds(face.points, haar, margin=0.25)


@pytest.mark.parametrize("backend", BACKENDS)
def test_lfw_subset_landmarks(lfw_faces, backend):
    detector = lm.LandmarkDetector(backend)
    found = [f for f in (detector(image) for image in lfw_faces) if f is not None]
    assert len(found) >= 80
    assert np.mean([anatomy_holds(f.points, f.box, MARGIN[backend]) for f in found]) >= 0.95


@pytest.mark.skipif(not (lm.available("mediapipe") and lm.available("dlib")), reason="needs both backends")
def test_mediapipe_map_matches_dlib_ibug_points(astronaut, lfw_faces):
    mesh, dlib = lm.LandmarkDetector("mediapipe"), lm.LandmarkDetector("dlib")
    errors = []
    for image in [astronaut] + lfw_faces[:40]:
        a, b = mesh(image), dlib(image)
        if a is not None and b is not None:
            iod = np.linalg.norm(b.points[36:42].mean(0) - b.points[42:48].mean(0))
            errors.append(np.linalg.norm(a.points - b.points, axis=1) / iod)
    errors = np.array(errors)
    assert len(errors) >= 30
    assert errors.mean() < 0.12 and np.median(errors[:, 36:68]) < 0.08  # eyes, nose tip region, mouth


def test_missing_extra_is_one_line_naming_it(monkeypatch, tmp_path):
    monkeypatch.setitem(lm._MODULES, "mediapipe", ("interpret_no_such_module",))
    with pytest.raises(InterpretError, match=r"pip install 'interpret\[landmarks\]'"):
        lm.LandmarkDetector("mediapipe")
    (tmp_path / "happy").mkdir()
    cv2.imwrite(str(tmp_path / "happy" / "a.png"), np.zeros((8, 8), np.uint8))
    result = runner.invoke(app, ["inspect", "--data", str(tmp_path), "--landmarks", "auto"])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and "interpret[landmarks]" in lines[0]


@needs_mediapipe
def test_landmarks_command_caches_beside_the_data_and_lists_faceless_images(astronaut, tmp_path):
    root = tmp_path / "faces"
    (root / "happy").mkdir(parents=True)
    cv2.imwrite(str(root / "happy" / "astronaut.png"), astronaut)
    cv2.imwrite(str(root / "happy" / "coffee.png"), cv2.cvtColor(skimage.data.coffee(), cv2.COLOR_RGB2GRAY))
    result = runner.invoke(app, ["landmarks", "--data", str(root)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{"):])
    assert report["faces"] == 1 and report["cache"] == str(tmp_path / "faces.landmarks-mediapipe.h5")
    assert [s["path"] for s in report["skipped"]] == [str(root / "happy" / "coffee.png")]
    assert "no face found by mediapipe" in report["skipped"][0]["reason"]

    (root / "happy" / "astronaut.png").rename(root / "happy" / "renamed.png")  # keyed by content, not name
    marker = lm.Landmarker(root, "mediapipe")
    assert marker(astronaut, "renamed") is not None and marker.detected == 0

    fs = load_faceset(root, landmarks="auto")
    assert len(fs) == 1 and fs.landmarks.shape == (1, 68, 2) and fs.label_options["landmarks"] == "mediapipe"
    points = fs.landmarks[0]
    assert points.min() >= -1 and points.max() <= 100  # the crop is the landmark box
    mouth = region_mask(points, 25, fs.images.shape[1:])
    brows = region_mask(points, 1, fs.images.shape[1:])
    assert mouth.any() and brows.any()
    assert np.nonzero(brows)[0].mean() < np.nonzero(mouth)[0].mean()


@needs_mediapipe
def test_fer_rows_get_landmark_crops(astronaut, tmp_path):
    from interpret.data.fer import write_fer2013

    top, left, bottom, right = detect_face(astronaut)
    pad = (bottom - top) // 4
    face = cv2.resize(astronaut[max(0, top - pad):bottom + pad, max(0, left - pad):right + pad], (48, 48),
                      interpolation=cv2.INTER_AREA)
    write_fer2013(tmp_path / "fer2013.csv", np.stack([face, np.full((48, 48), 128, np.uint8)]), [3, 6], "Training")
    fs = load_faceset(tmp_path / "fer2013.csv", landmarks="auto")
    assert len(fs) == 1 and fs.emotion[0] == 3 and fs.landmarks is not None
    assert fs.skipped[-1][1] == "no face found by mediapipe"
    assert (tmp_path / "fer2013.csv.landmarks-mediapipe.h5").is_file()


@needs_mediapipe
def test_video_frames_cut_by_detected_landmarks(disfa_tree, tmp_path):
    import shutil

    from interpret.data.disfa import read_disfa

    tree = tmp_path / "DISFA"
    shutil.copytree(disfa_tree, tree)
    fs = read_disfa(tree, landmarks="auto", step=8)
    assert len(fs) == 3 * 5 and fs.landmarks is not None
    assert fs.label_options["crop"] == "landmarks" and fs.label_options["landmarks"] == "mediapipe"
    assert (tmp_path / "DISFA.landmarks-mediapipe.h5").is_file()
    eyes, mouth = fs.landmarks[:, 36:48, 1].mean(axis=1), fs.landmarks[:, 48:68, 1].mean(axis=1)
    assert (eyes < mouth).all() and fs.landmarks.min() >= -1 and fs.landmarks.max() <= 100
