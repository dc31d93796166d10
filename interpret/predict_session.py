"""`interpret predict`: run a `Predictor` over a frame source and write its outputs atomically.

Outputs in OUT: ``predictions.csv`` (one row per sampled face, or one 'no face' row per sampled
frame without one), ``annotated.mp4`` (video and webcam: every input frame, same size and rate,
fourcc mp4v; between samples the last prediction is held and drawn thinner) or ``annotated/*.png``
(photos), ``timeline.png``, ``summary.json`` and ``index.html``. Everything is written in a hidden
staging folder inside OUT and moved into place only when the source has been read to its end (or
`max_frames` / `q` stopped it): an error or an interrupt leaves OUT as it was.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import queue
import shutil
import tempfile
import threading
import time
from pathlib import Path

import cv2
import jinja2
import numpy as np
import torch

from interpret.errors import InterpretError
from interpret.overlay import draw
from interpret.predict import NO_FACE, Predictor, PredictRun, valence_of
from interpret.video import FrameSource, Sampler


FOURCC = "mp4v"
VIDEO_NAME = "annotated.mp4"
WINDOW = "interpret predict (q quits)"
CAMERA_FPS_FALLBACK = 30.0


def columns(run: PredictRun) -> list[str]:
    head = ["source", "frame", "time_s", "face", "status", "x", "y", "w", "h"]
    valence = ["E", "V"] if run.valence else []
    return head + [f"p_{c}" for c in run.classes] + ["label"] + valence + [m.column for m in run.au_maps]


def rows_of(run: PredictRun, frame, faces) -> list[dict]:
    rows = []
    for number, face in enumerate(faces):
        row = {"source": frame.source, "frame": frame.index, "time_s": f"{frame.time_s:.4f}", "status": face.status,
               "face": "" if face.box is None else number}
        if face.box is not None:
            row.update(zip("xywh", face.box))
        if face.probs is not None:
            row.update({f"p_{c}": f"{p:.6f}" for c, p in zip(run.classes, face.probs)})
            row["label"] = run.classes[int(np.argmax(face.probs))]
            if run.valence:
                expected, value = valence_of(face.probs[None])
                row.update(E=f"{expected[0]:.5f}", V=f"{value[0]:.5f}")
        if face.au is not None:
            row.update({m.column: f"{a:.5f}" for m, a in zip(run.au_maps, face.au)})
        rows.append(row)
    return rows


class _Located:
    """Reads, samples and detects faces one step ahead in a thread, so that detection (OpenCV) and
    the network (torch), which both release the GIL, overlap. Iterating yields (frame, sampled,
    `Predictor.locate` result or None) in order; an error in the thread is raised here."""

    _END = object()

    def __init__(self, source: FrameSource, sampler: Sampler, predictor: Predictor, depth: int = 4):
        self.source, self.sampler, self.predictor = source, sampler, predictor
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._work, name="interpret-locate", daemon=True)

    def _put(self, item) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _work(self) -> None:
        try:
            for frame in self.source:
                is_sample = self.sampler(frame)
                found = self.predictor.locate(frame.image) if is_sample else None
                if not self._put((frame, is_sample, found)):
                    return
            self._put(self._END)
        except BaseException as err:  # handed to the consumer, which raises it
            self._put(err)

    def __enter__(self):
        self.thread.start()
        return self

    def __iter__(self):
        while True:
            item = self.queue.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


@contextlib.contextmanager
def split_cores():
    """Torch (the network, main thread) gets half the usable cores, restored afterwards; OpenCV
    (detection, reading thread) keeps its own pool. Torch's OpenMP threads busy-wait: at full
    width beside the detection they oversubscribe the CPU (measured 3-4x slower on 2 cores)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, cores // 2))
    try:
        yield
    finally:
        torch.set_num_threads(torch_threads)


def _open_window() -> None:
    try:
        cv2.namedWindow(WINDOW, cv2.WINDOW_AUTOSIZE)
    except cv2.error:
        raise InterpretError("this OpenCV build cannot open a window (opencv-python-headless); "
                             "use --headless") from None


class _Rate:
    """Frames per second of the loop, smoothed over about ten frames."""

    def __init__(self):
        self.last, self.value = None, None

    def tick(self) -> float | None:
        now = time.perf_counter()
        if self.last is not None and now > self.last:
            current = 1.0 / (now - self.last)
            self.value = current if self.value is None else 0.9 * self.value + 0.1 * current
        self.last = now
        return self.value


def predict_source(predictor: Predictor, source: FrameSource, out, every: float | None = None,
                   max_frames: int | None = None, show: bool = False) -> dict:
    """Predict every sampled frame of `source`, write OUT's files; returns the summary dict.

    `max_frames` stops after that many sampled frames; `show` opens the live window (q quits).
    The frames/s is drawn for live sources.
    """
    out = Path(out)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".predict-", dir=out))
    run = predictor.run
    try:
        if show:
            _open_window()
        sampler = Sampler(every if source.kind in ("video", "webcam") else None, source.fps, source.live)
        rows, writer, held_faces, rate = [], None, [], _Rate()
        frames_read = sampled = 0
        au_names = [m.au for m in run.au_maps]
        stills = staging / "annotated"
        start = time.perf_counter()
        with predictor, split_cores(), _Located(source, sampler, predictor) as located:
            for frame, is_sample, found in located:
                frames_read += 1
                if is_sample:
                    held_faces = predictor.classify(*found)
                    rows += rows_of(run, frame, held_faces)
                    sampled += 1
                fps = rate.tick() if source.live else None
                image = draw(frame.image, held_faces, run.classes, au_names, run.valence, fps, not is_sample)
                if source.kind in ("video", "webcam"):
                    if writer is None:
                        writer = _video_writer(staging / VIDEO_NAME, image, source.fps or CAMERA_FPS_FALLBACK)
                    writer.write(image)
                else:
                    stills.mkdir(exist_ok=True)
                    cv2.imwrite(str(stills / f"{Path(frame.source).stem}.png"), image)
                if show:
                    cv2.imshow(WINDOW, image)
                    if cv2.waitKey(1) & 0xFF == ord("q"):
                        break
                if max_frames and sampled >= max_frames:
                    break
        elapsed = time.perf_counter() - start
        if writer is not None:
            writer.release()
        summary = _summary(run, source, predictor, rows, frames_read, sampled, elapsed, every)
        _write_outputs(staging, run, rows, summary)
        for name in sorted(os.listdir(staging), key=lambda n: n == "index.html"):
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(staging / name, target)
        return summary
    finally:
        if show:
            cv2.destroyAllWindows()
        shutil.rmtree(staging, ignore_errors=True)
        if created and not any(out.iterdir()):
            out.rmdir()


def _video_writer(path: Path, image: np.ndarray, fps: float):
    height, width = image.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*FOURCC), fps, (width, height))
    if not writer.isOpened():
        raise InterpretError(f"{path}: OpenCV cannot write {FOURCC} video here")
    return writer


def _summary(run, source, predictor, rows, frames_read, sampled, elapsed, every) -> dict:
    faces = [r for r in rows if r["status"] != NO_FACE]
    notes = []
    if run.spec.channels == 3:
        notes.append("the network takes 3 channels: faces are converted to grey (as the run's data) and "
                     "replicated to 3 channels")
    if run.au_maps:
        notes.append("AUxx_map columns are the network's own AU-map units (each AU's best au-map map, its spatial "
                     "maximum divided by the mean of its top-n maxima on the run's data): which of the network's "
                     "detectors fire, not AU detection")
    if run.window:
        notes.append(f"sequence model: a sliding window of the last {run.window} sampled faces")
    return {
        "run": str(run.path), "input": source.name, "kind": source.kind, "input_fps": source.fps,
        "detector": predictor.detect.kind, "min_face": predictor.detect.min_face, "faces": predictor.faces,
        "every_s": every,
        "frames_read": frames_read, "frames_sampled": sampled, "face_rows": len(faces),
        "frames_without_face": sum(r["status"] == NO_FACE for r in rows),
        "seconds": round(elapsed, 3), "frames_per_second": round(frames_read / elapsed, 2) if elapsed else None,
        "valence": run.valence, "classes": run.classes, "au_maps": [m.column for m in run.au_maps],
        "annotated": VIDEO_NAME if source.kind in ("video", "webcam") else "annotated/", "notes": notes,
    }


def _write_outputs(folder: Path, run: PredictRun, rows: list[dict], summary: dict) -> None:
    with open(folder / "predictions.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns(run), restval="")
        writer.writeheader()
        writer.writerows(rows)
    (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    plot_timeline(folder / "timeline.png", run, rows, summary)
    env = jinja2.Environment(loader=jinja2.PackageLoader("interpret", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    stills = sorted(p.name for p in (folder / "annotated").glob("*.png")) if (folder / "annotated").is_dir() else []
    html = env.get_template("predict.html").render(summary=summary, rows=rows[:500], n_rows=len(rows),
                                                   columns=columns(run), stills=stills, video=VIDEO_NAME)
    (folder / "index.html").write_text(html, encoding="utf-8")


def plot_timeline(path: Path, run: PredictRun, rows: list[dict], summary: dict) -> None:
    """Class probabilities (or V for valence runs) over time, frames without a face marked, and the
    network's AU-map units below when the run has them."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    still = summary["kind"] in ("image", "folder")
    first = [r for r in rows if r["face"] in ("", 0)]
    x = np.arange(len(first)) if still else np.array([float(r["time_s"]) for r in first])
    panels = 2 if run.au_maps else 1
    fig = Figure(figsize=(9, 2.8 * panels))
    FigureCanvasAgg(fig)
    axes = fig.subplots(panels, 1, sharex=True, squeeze=False)[:, 0]

    def series(key):
        return np.array([float(r[key]) if r.get(key, "") != "" else math.nan for r in first])

    ax = axes[0]
    if run.valence:
        ax.plot(x, series("V"), "o-", ms=2, label="V = 2(E-1)/(K-1) - 1")
        ax.set_ylim(-1.05, 1.05)
        ax.set_ylabel("valence V")
    else:
        for c in run.classes:
            ax.plot(x, series(f"p_{c}"), "-", lw=1, marker="." if len(first) < 60 else None, label=c)
        ax.set_ylim(-0.08, 1.02)
        ax.set_ylabel("probability")
    missing = x[np.array([r["status"] == NO_FACE for r in first], dtype=bool)]
    if len(missing):
        low = ax.get_ylim()[0]
        ax.plot(missing, np.full(len(missing), low + 0.03), "|", color="grey", ms=8, label=NO_FACE)
    ax.legend(fontsize=7, ncol=min(5, len(run.classes) + 1), loc="upper right")
    ax.grid(alpha=0.3)
    if run.au_maps:
        for m in run.au_maps:
            axes[1].plot(x, series(m.column), "-", lw=1, label=m.column)
        axes[1].axhline(1.0, color="grey", ls=":", lw=1)
        axes[1].set_ylabel("x top-n level")
        axes[1].set_title("the network's AU-map units (not AU detection)", fontsize=9)
        axes[1].legend(fontsize=7, ncol=4, loc="upper right")
        axes[1].grid(alpha=0.3)
    axes[-1].set_xlabel("photo" if still else "time (s)")
    fig.suptitle(f"{summary['input']}: {summary['frames_sampled']} sampled frames, "
                 f"{summary['frames_without_face']} without a face", fontsize=10)
    fig.savefig(path, format="png", dpi=100, bbox_inches="tight")
