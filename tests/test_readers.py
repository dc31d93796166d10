"""Readers for what users bring: CK+ as distributed, FER2013, FER+, JAFFE, folder trees."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data

from interpret.data import detect_format, load_faceset
from interpret.data.ckplus import iter_ckplus_sequences, read_ckplus, write_ckplus
from interpret.data.faceset import ABSENT, UNLABELLED, RawSequence
from interpret.data.fer import FER2013_EMOTIONS, FERPLUS_EMOTIONS, read_fer2013, read_ferplus, write_fer2013
from interpret.data.folders import read_folders
from interpret.data.jaffe import read_jaffe
from interpret.errors import InterpretError
from interpret.facs import CKPLUS_EMOTIONS

# ---------------------------------------------------------------- CK+ fixtures, written by hand


def ck_line(*values) -> str:
    """One line in CK+'s text style: `   9.0000000e+00   4.0000000e+00`."""
    return "".join(f"   {v:.7e}" for v in values) + "\n"


def grid_landmarks(x0=200.0, y0=100.0, w=240.0, h=300.0) -> np.ndarray:
    """68 points on a 17 x 4 grid spanning exactly [x0, x0+w] x [y0, y0+h]."""
    i = np.arange(68)
    return np.stack([x0 + w * (i % 17) / 16, y0 + h * (i // 17) / 3], axis=1)


def ck_sequence(root, subject, number, frames=3, *, emotion=None, facs=None, colour=False,
                height=490, empty_emotion_dir=False, seed=0):
    """Write one CK+ sequence by hand; returns {frame path: grey image as the reader should see it}."""
    rng = np.random.default_rng(seed)
    rel = f"{subject}/{number:03d}"
    stem = ""
    grey = {}
    for k in range(1, frames + 1):
        stem = f"{subject}_{number:03d}_{k:08d}"
        image_dir = root / "cohn-kanade-images" / rel
        mark_dir = root / "Landmarks" / rel
        image_dir.mkdir(parents=True, exist_ok=True)
        mark_dir.mkdir(parents=True, exist_ok=True)
        if colour:
            bgr = rng.integers(0, 256, (height, 640, 3), dtype=np.uint8)
            cv2.imwrite(str(image_dir / f"{stem}.png"), bgr)
            grey[image_dir / f"{stem}.png"] = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        else:
            image = rng.integers(0, 256, (height, 640), dtype=np.uint8)
            cv2.imwrite(str(image_dir / f"{stem}.png"), image)
            grey[image_dir / f"{stem}.png"] = image
        (mark_dir / f"{stem}_landmarks.txt").write_text("".join(ck_line(x, y) for x, y in grid_landmarks()))
    facs_dir = root / "FACS" / rel
    facs_dir.mkdir(parents=True, exist_ok=True)
    (facs_dir / f"{stem}_facs.txt").write_text("".join(ck_line(a, i) for a, i in (facs or {}).items()))
    if emotion is not None or empty_emotion_dir:
        (root / "Emotion" / rel).mkdir(parents=True, exist_ok=True)
    if emotion is not None:
        (root / "Emotion" / rel / f"{stem}_emotion.txt").write_text(ck_line(emotion))
    return grey


@pytest.fixture
def ck_tree(tmp_path):
    """A CK+ tree with the distribution's quirks; returns (root, {frame path: grey image})."""
    root = tmp_path / "CK+"
    grey = {}
    grey |= ck_sequence(root, "S005", 1, emotion=3, facs={9: 4, 17: 0}, seed=1)
    grey |= ck_sequence(root, "S005", 2, frames=2, facs={1: 2, 2: 0}, colour=True, height=480, seed=2)
    grey |= ck_sequence(root, "S010", 1, emotion=5, facs={12: 3, 25: 0}, colour=True, seed=3)
    grey |= ck_sequence(root, "S999", 3, frames=2, facs={4: 1}, empty_emotion_dir=True, seed=4)
    for stray in ("cohn-kanade-images/.DS_Store", "cohn-kanade-images/S005/.DS_Store",
                  "cohn-kanade-images/S005/001/Thumbs.db", "Emotion/S005/001/.DS_Store"):
        (root / stray).write_bytes(b"\0\1junk")
    return root, grey


def test_ckplus_values(ck_tree):
    root, grey = ck_tree
    fs = read_ckplus(root, progress=False)
    assert fs.source == "ckplus" and len(fs) == 10 and fs.images.shape == (10, 99, 99)
    assert list(np.unique(fs.subject)) == ["S005", "S010", "S999"]
    assert list(fs.sequence[:3]) == ["S005/001"] * 3 and list(fs.frame[:3]) == [1, 2, 3]
    assert fs.emotions == CKPLUS_EMOTIONS
    by_seq = {s: fs.emotion[fs.sequence == s] for s in np.unique(fs.sequence)}
    assert set(by_seq["S005/001"]) == {3} and set(by_seq["S010/001"]) == {5}
    assert set(by_seq["S005/002"]) == {UNLABELLED}  # no Emotion file
    assert set(by_seq["S999/003"]) == {UNLABELLED}  # empty Emotion folder
    assert list(fs.au_codes) == [1, 2, 4, 9, 12, 17, 25]
    row = dict(zip(fs.au_codes.tolist(), fs.au_intensity[0].tolist()))
    assert row == {1: ABSENT, 2: ABSENT, 4: ABSENT, 9: 4, 12: ABSENT, 17: 0, 25: ABSENT}
    assert fs.au_present[0].tolist() == [False, False, False, True, False, True, False]  # intensity 0: present
    # crop = landmark box [200, 440] x [100, 400] (inclusive pixels), grey from grey and RGB PNGs
    for i, path in enumerate(fs.paths):
        expected = cv2.resize(grey[type(root)(path)][100:401, 200:441], (99, 99), interpolation=cv2.INTER_AREA)
        assert np.abs(fs.images[i].astype(int) - expected).max() <= 1, path
    mapped = (grid_landmarks() - [200, 100]) * [99 / 241, 99 / 301]
    np.testing.assert_allclose(fs.landmarks[0], mapped, atol=1e-4)
    reasons = {p.rsplit("/", 1)[-1]: r for p, r in fs.skipped}
    assert reasons[".DS_Store"] == "system file" and reasons["Thumbs.db"] == "system file"
    assert sum(p.endswith(".DS_Store") for p, _ in fs.skipped) == 3


def test_ckplus_streams_sequences(ck_tree):
    root, _ = ck_tree
    stream = iter_ckplus_sequences(root)
    first = next(stream)
    assert isinstance(first, RawSequence) and first.sequence_id == "S005/001"
    assert first.frames[0].shape == (490, 640) and first.facs == {9: 4, 17: 0} and first.emotion == 3
    rest = list(stream)
    assert [s.sequence_id for s in rest] == ["S005/002", "S010/001", "S999/003"]
    assert rest[0].frames[0].shape == (480, 640) and rest[0].emotion is None


def _first(root, folder, suffix):
    return sorted((root / folder).rglob(f"*{suffix}"))[0]


def _corrupt(root, kind):
    """Break a good tree one way; returns (the file the error must name, its line or None)."""
    if kind == "missing folder":
        import shutil

        shutil.rmtree(root / "Landmarks")
        return root / "Landmarks", None
    if kind == "truncated image":
        path = _first(root, "cohn-kanade-images", ".png")
        path.write_bytes(path.read_bytes()[:200])
        return path, None
    if kind == "unreadable image":
        path = _first(root, "cohn-kanade-images", ".png")
        path.write_bytes(b"this is not a png")
        return path, None
    if kind == "malformed FACS":
        path = _first(root, "FACS", "_facs.txt")
        path.write_text(ck_line(9, 4) + "   1.7000000e+01   D\n")
        return path, 2
    if kind == "FACS one field":
        path = _first(root, "FACS", "_facs.txt")
        path.write_text(ck_line(9))
        return path, 1
    if kind == "malformed Emotion":
        path = _first(root, "Emotion", "_emotion.txt")
        path.write_text("   three\n")
        return path, 1
    if kind == "unknown emotion code":
        path = _first(root, "Emotion", "_emotion.txt")
        path.write_text(ck_line(9))
        return path, 1
    if kind == "malformed landmarks":
        path = _first(root, "Landmarks", "_landmarks.txt")
        lines = path.read_text().splitlines(keepends=True)
        lines[4] = "   2.0e+02   1.0e+02   3.0e+00\n"
        path.write_text("".join(lines))
        return path, 5
    if kind == "67 landmarks":
        path = _first(root, "Landmarks", "_landmarks.txt")
        path.write_text("".join(path.read_text().splitlines(keepends=True)[:67]))
        return path, None
    if kind == "frame without landmarks":
        mark = _first(root, "Landmarks", "_landmarks.txt")
        mark.unlink()
        return root / "cohn-kanade-images/S005/001/S005_001_00000001.png", None
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["missing folder", "truncated image", "unreadable image", "malformed FACS",
                                  "FACS one field", "malformed Emotion", "unknown emotion code",
                                  "malformed landmarks", "67 landmarks", "frame without landmarks"])
def test_ckplus_bad_input_names_file_and_line(ck_tree, kind):
    root, _ = ck_tree
    path, line = _corrupt(root, kind)
    with pytest.raises(InterpretError) as info:
        read_ckplus(root, progress=False)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}:{line}: " if line else f"{path}: "), message


def test_ckplus_error_messages_say_what(ck_tree):
    root, _ = ck_tree
    _corrupt(root, "unknown emotion code")
    with pytest.raises(InterpretError, match=r"unknown emotion code 9 is not one of 0\.\.7"):
        read_ckplus(root, progress=False)
    root.joinpath("Emotion/S005/001/S005_001_00000003_emotion.txt").write_text(ck_line(3))
    _corrupt(root, "67 landmarks")
    with pytest.raises(InterpretError, match="has 67 landmark points, expected 68"):
        read_ckplus(root, progress=False)


def test_write_ckplus_round_trip(tmp_path):
    rng = np.random.default_rng(7)
    sequences = []
    for subject, number, emotion, facs in (("S005", 1, 7, {1: 5, 2: 0, 27: 3}), ("S131", 12, None, {14: 1})):
        marks = [grid_landmarks(150 + rng.random() * 50, 90 + rng.random() * 30) + rng.random((68, 2))
                 for _ in range(4)]
        sequences.append(RawSequence(subject, number, [rng.integers(0, 256, (490, 640), np.uint8) for _ in range(4)],
                                     [m.astype(np.float32) for m in marks], [1, 2, 3, 9], emotion, facs, [""] * 4))
    write_ckplus(tmp_path, iter(sequences))
    facs = tmp_path / "FACS/S005/001/S005_001_00000009_facs.txt"
    assert facs.read_text() == ("   1.0000000e+00   5.0000000e+00\n   2.0000000e+00   0.0000000e+00\n"
                                "   2.7000000e+01   3.0000000e+00\n")
    assert (tmp_path / "Emotion/S005/001/S005_001_00000009_emotion.txt").read_text() == "   7.0000000e+00\n"
    assert not (tmp_path / "Emotion/S131").exists()
    marks = (tmp_path / "Landmarks/S131/012/S131_012_00000003_landmarks.txt").read_text().splitlines()
    assert len(marks) == 68 and marks[0].startswith("   ") and "e+02   " in marks[0]
    back = list(iter_ckplus_sequences(tmp_path))
    assert len(back) == 2
    for orig, got in zip(sequences, back):
        assert (got.subject, got.number, got.emotion, got.facs, got.frame_numbers) == \
               (orig.subject, orig.number, orig.emotion, orig.facs, orig.frame_numbers)
        for a, b in zip(orig.frames, got.frames):
            np.testing.assert_array_equal(a, b)
        for a, b in zip(orig.landmarks, got.landmarks):
            np.testing.assert_allclose(b, a, rtol=1e-4 / 640, atol=0)
    fs = read_ckplus(tmp_path, progress=False)
    assert len(fs) == 8 and list(fs.au_codes) == [1, 2, 14, 27]
    assert list(fs.emotion) == [7] * 4 + [UNLABELLED] * 4


# ---------------------------------------------------------------- FER2013 / FER+


def _fer_rows(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 48, 48), dtype=np.uint8), rng.integers(0, 7, n)


def test_fer2013_read_and_write(tmp_path):
    images, labels = _fer_rows(4)
    usage = ["Training", "Training", "PublicTest", "PrivateTest"]
    path = tmp_path / "fer2013.csv"
    write_fer2013(path, images, labels, usage)
    text = path.read_text().splitlines()
    assert text[0] == "emotion,pixels,Usage" and len(text) == 5
    assert text[1] == f"{labels[0]},{' '.join(str(v) for v in images[0].ravel())},Training"
    fs = read_fer2013(path, size=48)
    np.testing.assert_array_equal(fs.images, images)  # 48 -> 48 is the identity
    assert list(fs.emotion) == list(labels) and fs.emotions == FER2013_EMOTIONS
    assert list(fs.partition) == usage and fs.landmarks is None and fs.au_intensity.shape == (4, 0)
    assert list(fs.subject) == ["fer0000000", "fer0000001", "fer0000002", "fer0000003"]
    assert fs.paths[2] == f"{path}:4"
    big = read_fer2013(path)
    assert big.images.shape == (4, 99, 99)
    part = big.select(big.partition == "Training")
    assert len(part) == 2 and list(part.partition) == ["Training", "Training"]


def _first_pixel(row: str, value: str) -> str:
    label, pixels, usage = row.split(",")
    return f"{label},{value} {pixels.split(' ', 1)[1]},{usage}"


@pytest.mark.parametrize("edit,line,what", [
    (lambda rows: ["emotion,pixel,Usage"] + rows[1:], 1, "header"),
    (lambda rows: rows[:2] + [_first_pixel(rows[2], "7 7")] + rows[3:], 3, "2305 pixels, expected 2304"),
    (lambda rows: rows[:2] + [_first_pixel(rows[2], "1.5")] + rows[3:], 3, "pixel '1.5' is not an integer"),
    (lambda rows: rows[:1] + [_first_pixel(rows[1], "300")] + rows[2:], 2, "outside 0..255"),
    (lambda rows: rows[:3] + ["7" + rows[3][1:]] + rows[4:], 4, "emotion '7' is not one of 0..6"),
    (lambda rows: rows[:3] + [rows[3].rsplit(",", 1)[0]] + rows[4:], 4, "expected 3 fields"),
])
def test_fer2013_errors(tmp_path, edit, line, what):
    images, labels = _fer_rows(3)
    path = tmp_path / "fer2013.csv"
    write_fer2013(path, images, labels, "Training")
    path.write_text("\n".join(edit(path.read_text().splitlines())) + "\n")
    with pytest.raises(InterpretError) as info:
        read_fer2013(path)
    assert str(info.value).startswith(f"{path}:{line}: ") and what in str(info.value), str(info.value)


FERPLUS_HEAD = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF\n"


def _ferplus(tmp_path, rows):
    images, labels = _fer_rows(len(rows))
    write_fer2013(tmp_path / "fer2013.csv", images, labels, [r.split(",")[0] for r in rows])
    (tmp_path / "fer2013new.csv").write_text(FERPLUS_HEAD + "".join(r + "\n" for r in rows))
    return images


def test_ferplus_majority(tmp_path):
    rows = [
        "Training,fer0000000.png,4,0,0,1,3,2,0,0,0,0",   # single votes dropped: 4 of 9 -> no majority
        "Training,fer0000001.png,6,0,1,1,0,0,0,0,2,0",   # neutral: 6 of 8 after single votes go
        "Training,,0,0,0,0,0,0,0,0,0,10",                # empty image name: dropped
        "PublicTest,fer0000003.png,0,0,0,0,0,0,0,0,7,3",  # majority unknown
        "PublicTest,fer0000004.png,0,0,0,0,0,0,0,0,0,10",  # not a face
        "PrivateTest,fer0000005.png,0,0,5,0,0,0,5,0,0,0",  # tie 5/5: dropped
        "PrivateTest,fer0000006.png,0,0,0,0,0,0,1,9,0,0",  # contempt
    ]
    images = _ferplus(tmp_path, rows)
    fs = read_ferplus(tmp_path / "fer2013.csv", tmp_path / "fer2013new.csv", size=48)
    assert fs.source == "ferplus" and fs.emotions == FERPLUS_EMOTIONS
    assert list(fs.subject) == ["fer0000001", "fer0000006"]
    assert [fs.emotions[e] for e in fs.emotion] == ["neutral", "contempt"]
    np.testing.assert_array_equal(fs.images, images[[1, 6]])
    assert list(fs.partition) == ["Training", "PrivateTest"]
    reasons = [r for _, r in fs.skipped]
    assert reasons == ["no majority among the FER+ votes", "no image name (dropped as FER+ does)",
                       "FER+ votes say unknown", "FER+ votes say not a face", "no majority among the FER+ votes"]
    assert fs.skipped[1][0] == f"{tmp_path / 'fer2013new.csv'}:4"
    plural = read_ferplus(tmp_path / "fer2013.csv", tmp_path / "fer2013new.csv", mode="plurality")
    assert list(plural.subject) == ["fer0000000", "fer0000001", "fer0000006"]
    assert load_faceset(tmp_path).source == "ferplus"
    assert load_faceset(tmp_path / "fer2013new.csv").source == "ferplus"
    assert load_faceset(tmp_path / "fer2013.csv").source == "fer2013"


def test_ferplus_row_mismatch(tmp_path):
    rows = ["Training,fer0000000.png,10,0,0,0,0,0,0,0,0,0", "Training,fer0000001.png,0,10,0,0,0,0,0,0,0,0"]
    _ferplus(tmp_path, rows)
    plus = tmp_path / "fer2013new.csv"
    plus.write_text(FERPLUS_HEAD + rows[0] + "\n")
    with pytest.raises(InterpretError, match="1 rows but .*fer2013.csv has 2"):
        read_ferplus(tmp_path / "fer2013.csv", plus)
    plus.write_text(FERPLUS_HEAD + "".join(r + "\n" for r in rows * 2))
    with pytest.raises(InterpretError, match=f"{plus}:4: more rows than"):
        read_ferplus(tmp_path / "fer2013.csv", plus)
    plus.write_text(FERPLUS_HEAD + rows[0] + "\n" + rows[1].replace("Training", "PublicTest") + "\n")
    with pytest.raises(InterpretError, match=f"{plus}:3: Usage 'PublicTest' differs"):
        read_ferplus(tmp_path / "fer2013.csv", plus)


# ---------------------------------------------------------------- JAFFE and folder trees


def _face256() -> np.ndarray:
    grey = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, (256, 256), interpolation=cv2.INTER_AREA)


def test_jaffe(tmp_path):
    cv2.imwrite(str(tmp_path / "KA.AN1.39.tiff"), _face256())
    cv2.imwrite(str(tmp_path / "YM.SU2.58.tiff"), cv2.flip(_face256(), 1))
    cv2.imwrite(str(tmp_path / "KM.HA3.5.tiff"), np.full((256, 256), 128, np.uint8))  # no face
    cv2.imwrite(str(tmp_path / "KM.XX1.6.tiff"), _face256())  # unknown expression code
    (tmp_path / "README").write_text("JAFFE")
    fs = load_faceset(tmp_path)
    assert fs.source == "jaffe" and len(fs) == 2 and fs.images.shape == (2, 99, 99)
    assert list(fs.subject) == ["KA", "YM"] and [fs.emotions[e] for e in fs.emotion] == ["anger", "surprise"]
    assert list(fs.sequence) == ["KA.AN1.39", "YM.SU2.58"]
    reasons = {p.rsplit("/", 1)[-1]: r for p, r in fs.skipped}
    assert reasons == {"KM.HA3.5.tiff": "no face found", "KM.XX1.6.tiff": "unknown JAFFE expression code 'XX'",
                       "README": "name is not a JAFFE name (e.g. KA.AN1.39.tiff)"}
    # the crop is the detected face: its centre is darker-eyed than a blank crop and not the whole image
    whole = cv2.resize(_face256(), (99, 99), interpolation=cv2.INTER_AREA)
    assert np.abs(fs.images[0].astype(int) - whole).mean() > 10
    (tmp_path / "KA.AN1.39.tiff").write_bytes(b"II*\0broken")
    with pytest.raises(InterpretError, match="KA.AN1.39.tiff: unreadable or truncated image"):
        read_jaffe(tmp_path)


def test_folders(tmp_path):
    rng = np.random.default_rng(3)
    files = ["train/angry/a.png", "train/happy/b.jpg", "train/Happiness/c.png", "test/sad/d.png",
             "test/Confused/e.png"]
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / name), rng.integers(0, 256, (48, 48), np.uint8))
    (tmp_path / "train/.DS_Store").write_bytes(b"x")
    (tmp_path / "train/angry/notes.txt").write_text("x")
    (tmp_path / "loose.png").write_bytes(cv2.imencode(".png", np.zeros((8, 8), np.uint8))[1].tobytes())
    fs = load_faceset(tmp_path, size=32)
    assert fs.source == "folders" and fs.images.shape == (5, 32, 32)
    assert fs.emotions == ("anger", "happy", "sadness", "Confused")
    by_path = {p.split(str(tmp_path) + "/")[1]: fs.emotions[e] for p, e in zip(fs.paths, fs.emotion)}
    assert by_path == {"test/Confused/e.png": "Confused", "test/sad/d.png": "sadness",
                       "train/Happiness/c.png": "happy", "train/angry/a.png": "anger", "train/happy/b.jpg": "happy"}
    assert sorted(fs.partition) == ["test", "test", "train", "train", "train"]
    assert sorted(r for _, r in fs.skipped) == ["hidden or system file", "image outside a class folder",
                                                "not an image"]
    expected = cv2.resize(cv2.imread(str(tmp_path / "train/angry/a.png"), 0), (32, 32), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(fs.images[list(fs.paths).index(str(tmp_path / "train/angry/a.png"))], expected)


def test_folders_ck48_and_haar(tmp_path):
    for name in ("anger/S010_004_00000017.png", "anger/S010_004_00000018.png", "surprise/S011_001_00000009.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / name), np.full((48, 48), 90, np.uint8))
    fs = read_folders(tmp_path)
    assert fs.partition is None and list(fs.subject) == ["S010", "S010", "S011"]
    assert list(fs.frame) == [17, 18, 9] and len(set(fs.sequence)) == 3
    face = tmp_path / "faces" / "neutral"
    face.mkdir(parents=True)
    cv2.imwrite(str(face / "x.png"), _face256())
    haar = read_folders(tmp_path / "faces", crop="haar")
    assert len(haar) == 1 and haar.emotions == ("neutral",)
    cv2.imwrite(str(face / "blank.png"), np.full((64, 64), 200, np.uint8))
    assert [r for _, r in read_folders(tmp_path / "faces", crop="haar").skipped] == ["no face found"]


# ---------------------------------------------------------------- format detection


def test_load_faceset_detects_and_refuses(ck_tree, tmp_path):
    root, _ = ck_tree
    assert detect_format(root) == "ckplus" and detect_format(tmp_path) == "ckplus"  # one level down
    assert load_faceset(root, progress=False).source == "ckplus"
    with pytest.raises(InterpretError, match="no such file or folder"):
        load_faceset(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    (empty / "notes").mkdir(parents=True)
    (empty / "notes" / "a.txt").write_text("x")
    with pytest.raises(InterpretError, match=f"^{empty}: cannot tell the data format"):
        load_faceset(empty)
    with pytest.raises(InterpretError, match="cannot tell the data format"):
        load_faceset(empty / "notes" / "a.txt")
