"""`interpret predict` and `evaluate-video` on videos written here with cv2.VideoWriter."""

import csv
import json
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import torch
from skimage import data as skdata
from typer.testing import CliRunner

from interpret.cli import app
from interpret.data.crop import landmark_box
from interpret.evaluate_video import evaluate_videos, nearest
from interpret.layers import layer_output
from interpret.predict import Predictor, load_predict_run, valence_of
from interpret.predict_session import predict_source
from interpret.synth import generate_sequences
from interpret.video import CaptureSource, Sampler, open_source

FPS = 10.0
SIZE = (640, 480)
#: The face in skimage.data.astronaut(), (x, y, w, h), read off the still by eye: hairline to chin, ear to ear.
ASTRONAUT_FACE = (176, 66, 96, 96)


def iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0, min(ay + ah, by + bh) - max(ay, by))
    return w * h / (aw * ah + bw * bh - w * h)


def background(seed: int) -> np.ndarray:
    """A textured BGR background: smoothed noise plus a gradient."""
    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur(rng.normal(0, 40, (SIZE[1], SIZE[0])).astype(np.float32), (0, 0), 6)
    ramp = np.linspace(60, 140, SIZE[0], dtype=np.float32)[None, :]
    grey = np.clip(noise + ramp, 0, 255).astype(np.uint8)
    return cv2.merge([grey, (grey * 0.8).astype(np.uint8), grey // 2])


def path_at(k: int, n: int, patch) -> tuple[int, int]:
    """Top-left corner of the moving patch at frame k of n: left to right along a sine."""
    h, w = patch
    x = int(round(10 + (SIZE[0] - w - 20) * k / max(1, n - 1)))
    y = int(round((SIZE[1] - h) / 2 + 0.35 * (SIZE[1] - h) / 2 * np.sin(2 * np.pi * k / n)))
    return x, y


def write_video(path: Path, frames, fps: float = FPS, fourcc: str = "mp4v") -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, SIZE)
    assert writer.isOpened()
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def count_frames(path: Path) -> tuple[int, float]:
    capture = cv2.VideoCapture(str(path))
    fps, n = capture.get(cv2.CAP_PROP_FPS), 0
    while capture.read()[0]:
        n += 1
    capture.release()
    return n, fps


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def synthetic_video(tmp_path_factory):
    """Synthetic faces (interpret.synth) moving over a background; the known box = landmark box."""
    frames = [(img, marks) for seq in generate_sequences(subjects=2, seed=3)[:3]
              for img, marks in zip(seq.frames, seq.landmarks)][:16]
    video, boxes = [], []
    for k, (face, marks) in enumerate(frames):
        frame = background(k)
        x, y = path_at(k, len(frames), face.shape)
        frame[y:y + face.shape[0], x:x + face.shape[1]] = face[..., None]
        top, left, bottom, right = landmark_box(marks, face.shape)
        boxes.append((x + left, y + top, right - left, bottom - top))
        video.append(frame)
    path = write_video(tmp_path_factory.mktemp("videos") / "synthetic.mp4", video)
    return path, boxes


@pytest.fixture(scope="module")
def astronaut_video(tmp_path_factory):
    """The real face of skimage's astronaut (a 200x220 cut around it) moving over a background."""
    still = cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR)
    cut = still[26:246, 126:326]
    n, video, boxes = 16, [], []
    for k in range(n):
        frame = background(100 + k)
        x, y = path_at(k, n, cut.shape[:2])
        frame[y:y + cut.shape[0], x:x + cut.shape[1]] = cut
        fx, fy, fw, fh = ASTRONAUT_FACE
        boxes.append((x + fx - 126, y + fy - 26, fw, fh))
        video.append(frame)
    path = write_video(tmp_path_factory.mktemp("videos") / "astronaut.mp4", video)
    return path, boxes


@pytest.fixture(scope="module")
def run_dir(make_untrained_run):
    return make_untrained_run("predict_zhu")


def run_predict(run, source_text, out, **kw):
    predictor = Predictor(load_predict_run(run), detector=kw.pop("detector", "alt"))
    with open_source(source_text) as source:
        return predict_source(predictor, source, out, **kw)


def test_astronaut_still_face_is_where_the_test_says():
    grey = cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2GRAY)
    from interpret.predict import HaarDetector

    boxes = HaarDetector("alt")(grey)
    assert boxes and iou(boxes[0], ASTRONAUT_FACE) >= 0.8


@pytest.mark.parametrize("video", ["synthetic_video", "astronaut_video"])
def test_video_detection_rows_timestamps_and_annotated_frames(request, run_dir, tmp_path, video):
    path, boxes = request.getfixturevalue(video)
    summary = run_predict(run_dir, str(path), tmp_path / "out")
    rows = read_rows(tmp_path / "out" / "predictions.csv")
    assert [int(r["frame"]) for r in rows] == list(range(len(boxes)))
    assert np.allclose([float(r["time_s"]) for r in rows], np.arange(len(boxes)) / FPS, atol=1e-4)
    overlaps = [iou(tuple(int(r[k]) for k in "xywh"), box) if r["status"] == "face" else 0.0
                for r, box in zip(rows, boxes)]
    assert np.mean(np.array(overlaps) >= 0.5) >= 0.9, overlaps
    probs = np.array([[float(r[f"p_{c}"]) for c in summary["classes"]] for r in rows if r["status"] == "face"])
    assert np.allclose(probs.sum(1), 1.0, atol=1e-4)
    assert [r["label"] for r in rows if r["status"] == "face"] == [summary["classes"][i] for i in probs.argmax(1)]
    n, fps = count_frames(tmp_path / "out" / "annotated.mp4")
    assert (n, fps) == count_frames(path)
    assert (tmp_path / "out" / "timeline.png").stat().st_size > 0
    html = (tmp_path / "out" / "index.html").read_text()
    assert "annotated.mp4" in html and "timeline.png" in html and "predictions.csv" in html


def test_probabilities_are_the_runs_crop_through_the_network(run_dir, synthetic_video, tmp_path):
    """A CSV row equals the network applied by hand to the square crop of its box, resized to the run's size."""
    from interpret.data.transforms import evaluate

    path, _ = synthetic_video
    run_predict(run_dir, str(path), tmp_path / "out", max_frames=3)
    rows = read_rows(tmp_path / "out" / "predictions.csv")
    assert len(rows) == 3
    run = load_predict_run(run_dir)
    capture = cv2.VideoCapture(str(path))
    for row in rows:
        grey = cv2.cvtColor(capture.read()[1], cv2.COLOR_BGR2GRAY)
        x, y, w, h = (int(row[k]) for k in "xywh")
        assert w == h  # Haar boxes are square: the crop is the box itself
        face = cv2.resize(grey[y:y + h, x:x + w], (99, 99), interpolation=cv2.INTER_AREA)
        with torch.no_grad():
            expected = torch.softmax(run.model(evaluate(torch.from_numpy(face[None]), run.spec)), 1)[0]
        got = [float(row[f"p_{c}"]) for c in run.classes]
        assert np.allclose(got, expected.numpy(), atol=1e-5)


def test_every_samples_by_timestamp_and_holds_the_overlay(run_dir, astronaut_video, tmp_path):
    path, boxes = astronaut_video
    run_predict(run_dir, str(path), tmp_path / "out", every=0.3)
    rows = read_rows(tmp_path / "out" / "predictions.csv")
    expected = sorted({round(k * 0.3 * FPS) for k in range(100) if round(k * 0.3 * FPS) < len(boxes)})
    assert [int(r["frame"]) for r in rows] == expected
    assert np.allclose([float(r["time_s"]) for r in rows], np.array(expected) / FPS)
    assert count_frames(tmp_path / "out" / "annotated.mp4")[0] == len(boxes)


def test_sampler_live_uses_the_clock():
    from interpret.video import Frame

    sampler = Sampler(0.5, None, live=True)
    stamps = [0.0, 0.2, 0.49, 0.51, 0.9, 1.7, 1.8, 2.0]
    picked = [t for i, t in enumerate(stamps) if sampler(Frame("cam", i, t, None))]
    assert picked == [0.0, 0.51, 1.7, 2.0]


def test_webcam_loop_runs_n_frames_headless_from_a_file(run_dir, astronaut_video, tmp_path):
    path, _ = astronaut_video
    predictor = Predictor(load_predict_run(run_dir))
    with CaptureSource(str(path), live=True) as source:
        summary = predict_source(predictor, source, tmp_path / "out", max_frames=6, show=False)
    rows = read_rows(tmp_path / "out" / "predictions.csv")
    assert summary["frames_read"] == summary["frames_sampled"] == len(rows) == 6
    times = [float(r["time_s"]) for r in rows]
    assert times[0] == 0.0 and all(b > a for a, b in zip(times, times[1:]))  # wall clock, not the file's
    assert count_frames(tmp_path / "out" / "annotated.mp4")[0] == 6


def test_frames_without_a_face_are_rows_that_say_so(run_dir, tmp_path):
    still = cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR)
    frames = []
    for k in range(6):
        frame = background(k)
        if k % 2 == 0:
            frame[100:320, 200:400] = still[26:246, 126:326]
        frames.append(frame)
    path = write_video(tmp_path / "gaps.mp4", frames)
    summary = run_predict(run_dir, str(path), tmp_path / "out")
    rows = read_rows(tmp_path / "out" / "predictions.csv")
    assert [r["status"] for r in rows] == ["face", "no face"] * 3
    assert all(r["label"] == "" and r["x"] == "" for r in rows[1::2])
    assert summary["frames_without_face"] == 3


def test_photo_and_folder_sources(run_dir, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "a_astronaut.png"), cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(photos / "b_blank.jpg"), np.full((120, 160, 3), 90, np.uint8))
    run_predict(run_dir, str(photos), tmp_path / "folder", every=2.0)  # sampling applies to videos only
    rows = read_rows(tmp_path / "folder" / "predictions.csv")
    assert [(r["source"], r["status"]) for r in rows] == [("a_astronaut.png", "face"), ("b_blank.jpg", "no face")]
    assert sorted(p.name for p in (tmp_path / "folder" / "annotated").iterdir()) == ["a_astronaut.png", "b_blank.png"]
    result = CliRunner().invoke(app, ["predict", "--run", str(run_dir), "--input", str(photos / "a_astronaut.png"),
                                      "--out", str(tmp_path / "one"), "--detector", "default", "--faces", "all"])
    assert result.exit_code == 0, result.output
    rows = read_rows(tmp_path / "one" / "predictions.csv")
    assert len(rows) >= 1 and iou(tuple(int(rows[0][k]) for k in "xywh"), ASTRONAUT_FACE) >= 0.7


def _one_line_error(args, *names):
    result = CliRunner().invoke(app, args)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error: "), result.output
    for name in names:
        assert name in lines[0]
    return lines[0]


def test_bad_inputs_are_one_line_naming_the_file_and_leave_nothing(run_dir, astronaut_video, tmp_path):
    out = tmp_path / "out"
    fake = tmp_path / "fake.png"
    fake.write_text("not a picture")
    _one_line_error(["predict", "--run", str(run_dir), "--input", str(fake), "--out", str(out)], str(fake))
    _one_line_error(["predict", "--run", str(run_dir), "--input", "webcam:57", "--out", str(out), "--headless"],
                    "webcam:57", "does not open")
    # a video cut short: the header promises more frames than the file holds (MJPG in AVI keeps frames readable)
    still = cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR)
    frames = [background(k) for k in range(16)]
    for frame in frames:
        frame[100:320, 200:400] = still[26:246, 126:326]
    full = write_video(tmp_path / "full.avi", frames, fourcc="MJPG")
    cut = tmp_path / "cut.avi"
    blob = full.read_bytes()
    cut.write_bytes(blob[:len(blob) // 2])
    _one_line_error(["predict", "--run", str(run_dir), "--input", str(cut), "--out", str(out)], str(cut))
    assert not out.exists()  # nothing complete-looking, no staging left behind, no empty folder


def test_interrupt_leaves_no_output(run_dir, astronaut_video, tmp_path):
    path, _ = astronaut_video
    predictor = Predictor(load_predict_run(run_dir))

    class Interrupted(CaptureSource):
        def __iter__(self):
            for frame in super().__iter__():
                if frame.index == 4:
                    raise KeyboardInterrupt
                yield frame

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("the user's")
    with Interrupted(str(path)) as source, pytest.raises(KeyboardInterrupt):
        predict_source(predictor, source, tmp_path / "out")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["notes.txt"]


def test_valence_run_reports_e_and_v(make_untrained_run, astronaut_video, tmp_path):
    levels = [f"L{i}" for i in range(1, 10)]
    run = make_untrained_run("valence", classes=levels, label_mode="valence", seed=1)
    path, _ = astronaut_video
    run_predict(run, str(path), tmp_path / "out", max_frames=4)
    rows = read_rows(tmp_path / "out" / "predictions.csv")
    for row in rows:
        p = np.array([float(row[f"p_{c}"]) for c in levels])
        e = float(p @ np.arange(1, 10))
        assert float(row["E"]) == pytest.approx(e, abs=1e-4)
        assert float(row["V"]) == pytest.approx((e - 5) / 4, abs=1e-4)
    assert valence_of(np.eye(9))[1].tolist() == pytest.approx([(k - 5) / 4 for k in range(1, 10)])
    assert valence_of(np.full((1, 9), 1 / 9))[1][0] == pytest.approx(0.0)


def test_au_readout_is_the_best_maps_maximum_over_its_top_level(make_untrained_run, astronaut_video, tmp_path):
    from interpret.cache import build_cache
    from interpret.runs import load_run

    run_path = make_untrained_run("with_aumap", seed=2)
    run = load_run(run_path)
    cache = build_cache(run, layer=3)
    maxima = h5py.File(cache, "r")["max"][:]
    best = {"AU01": 7, "AU12": 100}
    for au, m in best.items():
        (run_path / "aumap").mkdir(exist_ok=True)
        (run_path / "aumap" / f"{au}.json").write_text(json.dumps({"au": au, "layer": 3, "best_map": m, "n": 9}))
    path, _ = astronaut_video
    summary = run_predict(run_path, str(path), tmp_path / "out", max_frames=2)
    assert summary["au_maps"] == ["AU01_map", "AU12_map"]
    assert any("not AU detection" in note for note in summary["notes"])
    rows = read_rows(tmp_path / "out" / "predictions.csv")
    capture = cv2.VideoCapture(str(path))
    from interpret.data.transforms import evaluate

    for row in rows:
        grey = cv2.cvtColor(capture.read()[1], cv2.COLOR_BGR2GRAY)
        x, y, w, h = (int(row[k]) for k in "xywh")
        face = cv2.resize(grey[y:y + h, x:x + w], (99, 99), interpolation=cv2.INTER_AREA)
        act = layer_output(run.model, "relu3", evaluate(torch.from_numpy(face[None]), run.dataset.spec))
        for au, m in best.items():
            level = np.sort(maxima[:, m])[::-1][:9].mean()
            assert float(row[f"{au}_map"]) == pytest.approx(float(act[0, m].max()) / level, rel=1e-4)


def test_sequence_model_gets_a_sliding_window(make_untrained_run, astronaut_video, tmp_path):
    """The hook for sequence models: the last T sampled faces as one (1, T, C, S, S) input."""
    from torch import nn

    from interpret.models import ARCHITECTURES, Architecture, register_architecture
    from interpret.data.transforms import PAPER_INPUT

    seen = []

    class WindowNet(nn.Module):
        def __init__(self, n):
            super().__init__()
            self.out = nn.Linear(1, n)

        def forward(self, x):
            seen.append(tuple(x.shape))
            return self.out(x.mean(dim=(2, 3, 4)).mean(1, keepdim=True))

    register_architecture("test-window", Architecture(build=WindowNet, input=PAPER_INPUT))
    try:
        run = make_untrained_run("window", arch="test-window", sequence={"length": 3})
        path, _ = astronaut_video
        run_predict(run, str(path), tmp_path / "out", max_frames=5)
    finally:
        ARCHITECTURES.pop("test-window")
    rows = read_rows(tmp_path / "out" / "predictions.csv")
    assert [r["status"] for r in rows] == ["window filling"] * 2 + ["face"] * 3
    assert seen == [(1, 3, 1, 96, 96)] * 3


def test_evaluate_video_rmse_on_a_hand_computed_case(tmp_path):
    header = "source,frame,time_s,face,status,x,y,w,h,p_L1,label,E,V\n"
    pred = tmp_path / "pred.csv"
    pred.write_text(header
                    + "v.mp4,0,0.0,0,face,1,1,9,9,1,L1,5.4,0.1\n"
                    + "v.mp4,20,2.0,0,face,1,1,9,9,1,L1,6.2,0.3\n"
                    + "v.mp4,40,4.0,,no face,,,,,,,,\n"
                    + "v.mp4,60,6.0,0,face,1,1,9,9,1,L1,4.2,-0.2\n"
                    + "v.mp4,80,8.4,0,face,1,1,9,9,1,L1,4.2,-0.2\n")
    ann = tmp_path / "ann.csv"
    ann.write_text("time_s,valence,rater\n"
                   + "".join(f"{t},{v},{r}\n" for t, vals in
                             [(0, (0.0, 0.0)), (1, (0.9, 0.9)), (2, (0.4, 0.6)), (3, (0.9, 0.9)), (4, (0.1, 0.1)),
                              (5, (0.9, 0.9)), (6, (-0.1, 0.1)), (7, (0.5, 0.5))]
                             for r, v in enumerate(vals)))
    # frame errors: 0.1 - 0.0, 0.3 - 0.5, -0.2 - 0.0; t=4 has no face; t=8.4 is 1.4 s from the last annotation
    results = evaluate_videos([pred], [ann])
    video = results["videos"][0]
    assert video["rmse"] == pytest.approx(np.sqrt((0.1 ** 2 + 0.2 ** 2 + 0.2 ** 2) / 3))
    assert (video["frames_used"], video["frames_without_face"], video["frames_unmatched"]) == (3, 1, 1)
    pred2 = tmp_path / "pred2.csv"
    pred2.write_text(header + "w.mp4,0,0.0,0,face,1,1,9,9,1,L1,5,0.5\n")
    results = evaluate_videos([pred, pred2, pred2], [ann, ann, ann], subjects=["A", "B", "B"])
    rmse_a = np.sqrt(0.03)
    assert [s["rmse"] for s in results["subjects"]] == pytest.approx([rmse_a, 0.5])
    assert results["rmse_mean"] == pytest.approx((rmse_a + 0.5) / 2)
    assert results["rmse_sd"] == pytest.approx(np.std([rmse_a, 0.5], ddof=1))
    out = CliRunner().invoke(app, ["evaluate-video", "--predictions", str(pred), "--annotations", str(ann)])
    assert out.exit_code == 0 and f"{np.sqrt(0.03):.4f}" in out.output


def test_nearest_timestamp_ties_go_to_the_earlier():
    assert nearest(np.array([0.5, 1.49, 1.5, 9.0, -3.0]), np.array([0.0, 1.0, 2.0])).tolist() == [0, 1, 1, 2, 0]


def test_evaluate_video_bad_annotations_name_file_and_line(tmp_path):
    pred = tmp_path / "pred.csv"
    pred.write_text("source,frame,time_s,face,status,x,y,w,h,p_L1,label,E,V\nv,0,0.0,0,face,1,1,9,9,1,L1,5,0\n")
    ann = tmp_path / "ann.csv"
    ann.write_text("time_s,valence\n0,0.1\n1,1.7\n")
    line = _one_line_error(["evaluate-video", "--predictions", str(pred), "--annotations", str(ann)], str(ann))
    assert f"{ann}:3:" in line and "outside [-1, 1]" in line
    emotions = tmp_path / "emotions.csv"
    emotions.write_text("source,frame,time_s,face,status,x,y,w,h,p_happy,label\nv,0,0.0,0,face,1,1,9,9,1,happy\n")
    _one_line_error(["evaluate-video", "--predictions", str(emotions), "--annotations", str(ann)], "'V'")


def test_three_channel_network_gets_grey_replicated_and_says_so(make_untrained_run, tmp_path):
    from torch import nn

    from interpret.data.transforms import InputSpec
    from interpret.models import ARCHITECTURES, Architecture, register_architecture

    seen = []

    class Colour(nn.Module):
        def __init__(self, n):
            super().__init__()
            self.out = nn.Linear(3, n)

        def forward(self, x):
            seen.append(x)
            return self.out(x.mean(dim=(2, 3)))

    spec = InputSpec(size=64, channels=3, normalize="unit", resize=64)
    register_architecture("test-colour", Architecture(build=Colour, input=spec))
    try:
        run = make_untrained_run("colour", arch="test-colour", size=64)
        photo = tmp_path / "astronaut.png"
        cv2.imwrite(str(photo), cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR))
        result = CliRunner().invoke(app, ["predict", "--run", str(run), "--input", str(photo),
                                          "--out", str(tmp_path / "out")])
    finally:
        ARCHITECTURES.pop("test-colour")
    assert result.exit_code == 0, result.output
    assert "replicated to 3 channels" in result.output
    assert len(seen) == 1 and seen[0].shape == (1, 3, 64, 64)
    assert torch.equal(seen[0][:, 0], seen[0][:, 1]) and torch.equal(seen[0][:, 0], seen[0][:, 2])


@pytest.mark.parametrize("fps, every", [(29.97, 0.3), (10.0, 0.01), (25.0, 2.0)])
def test_sampler_file_picks_the_frame_nearest_each_multiple(fps, every):
    from interpret.video import Frame

    sampler = Sampler(every, fps, live=False)
    picked = [i for i in range(200) if sampler(Frame("v", i, i / fps, None))]
    expected = sorted({round(k * every * fps) for k in range(int(200 / (every * fps)) + 2)} & set(range(200)))
    assert picked == expected
