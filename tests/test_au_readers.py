"""Per-frame AU readers on files written here in each exact format, quirks included."""

import json
import shutil

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from interpret.cli import app
from interpret.data import detect_format, load_faceset
from interpret.data.bp4d import read_bp4d
from interpret.data.disfa import read_disfa
from interpret.data.faceset import ABSENT, UNKNOWN
from interpret.data.openface import read_au_videos
from interpret.errors import InterpretError

runner = CliRunner()


def label_track(path):
    return [int(line.split(",")[1]) for line in path.read_text().splitlines() if line.strip()]


def column(fs, au):
    return list(fs.au_codes).index(au)


# --- DISFA -----------------------------------------------------------------------------------

def test_disfa_pairs_each_video_frame_with_its_label_line(disfa_tree):
    fs = read_disfa(disfa_tree, crop="none")
    assert detect_format(disfa_tree) == "disfa"
    assert list(fs.au_codes) == [1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26]
    assert len(fs) == 3 * 40 and sorted(set(fs.sequence)) == ["SN001/left", "SN002/left", "SN003/left"]
    rows = np.flatnonzero(fs.sequence == "SN002/left")
    assert list(fs.frame[rows]) == list(range(1, 41))
    for au in (2, 12, 25):
        levels = label_track(disfa_tree / "ActionUnit_Labels" / "SN002" / f"SN002_au{au}.txt")
        expected = [v if v >= 2 else ABSENT for v in levels]
        assert list(fs.au_intensity[rows, column(fs, au)]) == expected
    capture = cv2.VideoCapture(str(disfa_tree / "Videos_LeftCamera" / "LeftVideoSN002_comp.avi"))
    decoded = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        decoded.append(cv2.resize(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), (99, 99), interpolation=cv2.INTER_AREA))
    assert len(decoded) == 41  # one frame more than label lines, as some DISFA videos have
    for row, frame in zip(rows, fs.frame[rows]):
        assert np.array_equal(fs.images[row], decoded[frame - 1])
    assert any("frames after 40 have no label line" in reason for _, reason in fs.skipped)


def test_disfa_threshold_is_an_option_echoed_in_the_output(disfa_tree):
    low, high = read_disfa(disfa_tree, crop="none", threshold=1), read_disfa(disfa_tree, crop="none", threshold=4)
    assert low.label_options["threshold"] == 1 and high.label_options["threshold"] == 4
    every = [v for s in ("SN001", "SN002", "SN003")
             for v in label_track(disfa_tree / "ActionUnit_Labels" / s / f"{s}_au12.txt")]
    assert low.au_present[:, column(low, 12)].sum() == sum(v >= 1 for v in every)
    assert high.au_present[:, column(high, 12)].sum() == sum(v >= 4 for v in every)
    with pytest.raises(InterpretError, match="threshold"):
        read_disfa(disfa_tree, threshold=0)


def test_disfa_quirks_missing_file_is_unknown_and_bad_lines_name_file_and_line(disfa_tree, tmp_path):
    tree = tmp_path / "DISFA"
    shutil.copytree(disfa_tree, tree)
    (tree / "ActionUnit_Labels" / "SN003" / "SN003_au9.txt").unlink()
    fs = read_disfa(tree, crop="none")
    rows = fs.sequence == "SN003/left"
    assert (fs.au_intensity[rows, column(fs, 9)] == UNKNOWN).all()
    assert (fs.au_known[~rows, column(fs, 9)]).all()
    assert any("AU9 unknown for SN003" in reason for _, reason in fs.skipped)
    bad = tree / "ActionUnit_Labels" / "SN001" / "SN001_au1.txt"
    lines = bad.read_text().splitlines()
    lines[6] = "7;2"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(InterpretError, match=r"SN001_au1\.txt:7: malformed line"):
        read_disfa(tree, crop="none")
    lines[6] = "7,6"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(InterpretError, match=r"SN001_au1\.txt:7: intensity 6"):
        read_disfa(tree, crop="none")


def test_disfa_labels_past_the_video_end_are_skipped_not_guessed(disfa_tree, tmp_path):
    tree = tmp_path / "DISFA"
    shutil.copytree(disfa_tree, tree)
    for path in (tree / "ActionUnit_Labels" / "SN001").iterdir():
        path.write_text(path.read_text() + "".join(f"{f},3\n" for f in range(41, 46)))
    fs = read_disfa(tree, crop="none")
    assert fs.frame[fs.sequence == "SN001/left"].max() == 41
    assert any("from 42 are past the video's end" in reason for _, reason in fs.skipped)


def test_disfa_inspect_json_round_trip(disfa_tree):
    result = runner.invoke(app, ["inspect", "--data", str(disfa_tree), "--read", "crop=none",
                                 "--read", "threshold=3", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["source"] == "disfa" and summary["frames"] == 120 and summary["subjects"] == 3
    assert summary["labels"]["threshold"] == 3 and summary["labels"]["presence"] == "intensity >= 3"
    every = [v for s in ("SN001", "SN002", "SN003")
             for v in label_track(disfa_tree / "ActionUnit_Labels" / s / f"{s}_au12.txt")]
    assert summary["au_frames"]["AU12"] == sum(v >= 3 for v in every)
    bad = runner.invoke(app, ["inspect", "--data", str(disfa_tree), "--read", "colour=red"])
    assert bad.exit_code == 1 and "takes no option 'colour'" in bad.output


# --- BP4D ------------------------------------------------------------------------------------

def write_bp4d(root, frames, rows, header=",1,2,4,12,25"):
    (root / "AUCoding" / "AU_OCC").mkdir(parents=True)
    (root / "AUCoding" / "AU_OCC" / "F001_T1.csv").write_text(header + "\n" + "".join(r + "\n" for r in rows))
    images = root / "2DFeatures" / "F001" / "T1"
    images.mkdir(parents=True)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(images / f"{i + 100:04d}.jpg"), frame)
    return root


def test_bp4d_nine_is_unknown_not_absent(face_frames, tmp_path):
    frames, _ = face_frames
    rows = [f"{i + 100},0,1,{9 if i else 1},{i % 2},{int(i % 4 == 3)},9" for i in range(12)] + ["112,1,1,1,1,1,9"]
    root = write_bp4d(tmp_path / "BP4D", frames, rows, header="0,1,2,4,12,25,43")
    assert detect_format(root) == "bp4d"
    fs = read_bp4d(root, crop="none")
    assert len(fs) == 12 and list(fs.frame) == list(range(100, 112)) and set(fs.sequence) == {"F001/T1"}
    assert list(fs.au_codes) == [1, 2, 4, 12, 25] and fs.label_options["uncoded_aus"] == [43]
    assert fs.au_intensity[0, column(fs, 4)] == 0 and (fs.au_intensity[1:, column(fs, 4)] == UNKNOWN).all()
    assert not fs.au_present[1:, column(fs, 4)].any() and not fs.au_known[1:, column(fs, 4)].any()
    assert list(fs.au_present[:, column(fs, 12)]) == [bool(i % 2) for i in range(12)]
    assert (fs.au_intensity[:, column(fs, 2)] == 0).all() and (fs.au_intensity[:, column(fs, 1)] == ABSENT).all()
    assert any("1 coded frame(s) without an image" in reason for _, reason in fs.skipped)
    summary = json.loads(runner.invoke(app, ["inspect", "--data", str(root), "--read", "crop=none", "--json"]).output)
    assert summary["au_unknown_frames"]["AU04"] == 11 and summary["au_frames"]["AU25"] == 3


def test_bp4d_bad_value_names_file_and_line(face_frames, tmp_path):
    frames, _ = face_frames
    root = write_bp4d(tmp_path / "BP4D", frames, ["100,0,1,9,1,0", "101,0,2,0,1,0"], header="frame,AU01,AU02,AU04,AU12,AU25")
    with pytest.raises(InterpretError, match=r"F001_T1\.csv:3: AU2 value '2' is not 0, 1 or 9"):
        read_bp4d(root, crop="none")


def test_bp4d_blank_rows_are_skipped_and_a_short_row_names_its_line(face_frames, tmp_path):
    frames, _ = face_frames
    header = "frame,AU01,AU02,AU04,AU12,AU25"
    root = write_bp4d(tmp_path / "ok", frames, ["100,0,1,9,1,0", "", "101,0,1,0,1,0"], header=header)
    assert len(read_bp4d(root, crop="none")) == 2
    root = write_bp4d(tmp_path / "short", frames, ["100,0,1,9,1,0", "", "101,0,1"], header=header)
    with pytest.raises(InterpretError, match=r"F001_T1\.csv:4: 3 fields, the header has 6"):
        read_bp4d(root, crop="none")


# --- OpenFace 2 and py-feat ------------------------------------------------------------------

def openface_csv(marks, presence, success, old_header: bool):
    names = ["frame", "face_id", "timestamp", "confidence", "success"]
    names += [f"x_{i}" for i in range(68)] + [f"y_{i}" for i in range(68)]
    names += ["AU12_r", "AU25_r", "AU12_c", "AU25_c", "AU28_c"]
    sep = ", " if old_header else ","
    lines = [sep.join(names)]
    for i, (points, on, ok) in enumerate(zip(marks, presence, success)):
        values = [i + 1, 0, i / 25, 0.98, int(ok)] + list(points[:, 0]) + list(points[:, 1])
        values += [2.5 * on + 0.3, 3.0 * on, int(on), int(on), 0]
        lines.append(sep.join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in values))
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("old_header", [True, False])
def test_openface_csv_labels_its_video(face_frames, write_video, tmp_path, old_header):
    frames, marks = face_frames
    presence = [i % 4 == 3 for i in range(12)]
    success = [i != 5 for i in range(12)]
    write_video(tmp_path / "clip.avi", frames)
    (tmp_path / "clip.csv").write_text(openface_csv(marks, presence, success, old_header))
    assert detect_format(tmp_path / "clip.csv") == "openface" and detect_format(tmp_path) == "openface"
    fs = load_faceset(tmp_path / "clip.csv")
    assert list(fs.au_codes) == [12, 25, 28] and fs.label_options["presence"] == "AUxx_c == 1"
    assert list(fs.frame) == [i + 1 for i in range(12) if i != 5]  # success 0: not a measurement
    assert any(path.endswith("clip.avi:6") and "success 0" in reason for path, reason in fs.skipped)
    assert list(fs.au_present[:, 0]) == [presence[i] for i in range(12) if i != 5]
    assert fs.landmarks is not None and fs.label_options["crop"] == "landmarks from the CSV"
    box = marks[0].min(0), marks[0].max(0)
    assert fs.landmarks[0].min() >= -1 and fs.landmarks[0].max() <= 100 and box[1][0] > box[0][0]
    by_r = load_faceset(tmp_path / "clip.csv", au_from="r", threshold=2.0)
    assert by_r.label_options == {**by_r.label_options, "au_from": "r", "threshold": 2.0}
    assert list(by_r.au_codes) == [12, 25] and by_r.au_present[:, 0].sum() == sum(presence)


def test_openface_old_and_new_headers_read_the_same(face_frames, write_video, tmp_path):
    frames, marks = face_frames
    presence, success = [i % 3 == 0 for i in range(12)], [True] * 12
    prints = []
    for name, old in (("old", True), ("new", False)):
        (tmp_path / name).mkdir()
        write_video(tmp_path / name / "clip.avi", frames)
        (tmp_path / name / "clip.csv").write_text(openface_csv(marks, presence, success, old))
        prints.append(load_faceset(tmp_path / name).fingerprint())
    assert prints[0] == prints[1]


def test_openface_several_faces_in_a_frame_is_an_error_naming_the_line(face_frames, write_video, tmp_path):
    frames, marks = face_frames
    text = openface_csv(marks, [False] * 12, [True] * 12, old_header=True).splitlines()
    text.insert(3, text[2])
    write_video(tmp_path / "clip.avi", frames)
    (tmp_path / "clip.csv").write_text("\n".join(text) + "\n")
    with pytest.raises(InterpretError, match=r"clip\.csv:4: several rows for frame 2"):
        load_faceset(tmp_path / "clip.csv")


def test_openface_short_row_names_its_line(face_frames, write_video, tmp_path):
    frames, marks = face_frames
    text = openface_csv(marks, [False] * 12, [True] * 12, old_header=False).splitlines()
    text[3] = ",".join(text[3].split(",")[:5])
    write_video(tmp_path / "clip.avi", frames)
    (tmp_path / "clip.csv").write_text("\n".join(text) + "\n")
    width = len(text[0].split(","))
    with pytest.raises(InterpretError, match=rf"clip\.csv:4: 5 fields, the header has {width}"):
        load_faceset(tmp_path / "clip.csv")


def test_pyfeat_bare_au_columns_from_frame_zero(face_frames, write_video, tmp_path):
    frames, marks = face_frames
    names = ["", "frame", "FaceRectX", "FaceRectY", "FaceRectWidth", "FaceRectHeight", "FaceScore"]
    names += [f"x_{i}" for i in range(68)] + [f"y_{i}" for i in range(68)] + ["AU01", "AU12", "AU25", "input"]
    lines = [",".join(names)]
    for i in range(12):
        if i == 4:  # no face found: py-feat leaves the row empty
            lines.append(",".join([str(i), str(i)] + [""] * (len(names) - 3) + ["clip.avi"]))
            continue
        au25 = "" if i == 7 else f"{0.9 if i % 4 == 3 else 0.1:.2f}"
        values = [str(i), str(i), "10", "20", "100", "120", "0.99"]
        values += [f"{v:.2f}" for v in marks[i, :, 0]] + [f"{v:.2f}" for v in marks[i, :, 1]]
        values += ["0.2", f"{0.6 if i % 2 else 0.4:.2f}", au25, "clip.avi"]
        lines.append(",".join(values))
    write_video(tmp_path / "clip.avi", frames)
    (tmp_path / "clip.csv").write_text("\n".join(lines) + "\n")
    assert detect_format(tmp_path / "clip.csv") == "pyfeat"
    fs = read_au_videos(tmp_path / "clip.csv")
    kept = [i for i in range(12) if i != 4]
    assert fs.source == "pyfeat" and list(fs.frame) == [i + 1 for i in kept]
    assert fs.label_options["threshold"] == 0.5 and fs.label_options["presence"] == "AUxx >= 0.5"
    assert list(fs.au_present[:, column(fs, 12)]) == [bool(i % 2) for i in kept]
    assert fs.au_intensity[kept.index(7), column(fs, 25)] == UNKNOWN
    assert any("landmarks empty" in reason for _, reason in fs.skipped)
    strict = read_au_videos(tmp_path / "clip.csv", threshold=0.7)
    assert strict.au_present[:, column(strict, 12)].sum() == 0
