"""`interpret predict` end to end on a 640x480 video, beside its two bare limits, in one run.

For a 48x48 network (liu2019 if registered, else a stand-in with liu2019's published layer sizes,
SEEDS §1.4, defined here only) and for zhu2019 (96x96), each untrained: the whole command
(`interpret predict ... --detector alt` run in this process, so the stand-in is registered; detection
on every frame; loading the run and writing every output included; Python start-up not)
and its loop alone (summary.json), against the bare Haar detection (`alt`, the same minimum face)
on the same grey frames and the bare batch-1 model forward on the same face crops, each with the
threads the loop gives it (torch half the cores, OpenCV its default pool: the loop overlaps the
two). Also the per-frame cost of each stage alone: decode, grey, detect, crop + transform,
forward, overlay, encode, in wall and CPU ms. The idle estimate is 1000 / the larger CPU ms per
frame of the loop's two threads (reader: decode, grey, detect; main: crop + transform, forward,
overlay, encode), the rate two free cores would give. Prints markdown tables.

    python benchmarks/bench_predict.py [--frames 150] [--fps 25] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from skimage import data as skdata
from torch import nn
from typer.testing import CliRunner

from interpret.cli import app
from interpret.data.transforms import InputSpec
from interpret.models import ARCHITECTURES, Architecture, build_model, input_spec, register_architecture
from interpret.overlay import draw
from interpret.predict import Predictor, load_predict_run, square_crop
from interpret.predict_session import split_cores
from interpret.runs import save_checkpoint, write_config

STANDIN = "liu2019-standin"
LIU_INPUT = InputSpec(size=48, channels=1, normalize="unit", resize=48)


class LiuStandIn(nn.Module):
    """liu2019's layer sizes (1,367,241 parameters for 9 classes): conv 1x1 32, 5x5 32, pool,
    3x3 32, pool, 3x3 64, pool, FC 512, FC 256, out."""

    def __init__(self, n_classes: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 1), nn.ReLU(), nn.Conv2d(32, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(64 * 6 * 6, 512), nn.ReLU(), nn.Dropout(0.4),
                                  nn.Linear(512, 256), nn.ReLU(), nn.Dropout(0.4), nn.Linear(256, n_classes))

    def forward(self, x):
        return self.head(self.features(x))


def write_video(path: Path, frames: int, fps: float) -> None:
    """The astronaut's face moving along a sine over a textured background, 640x480."""
    still = cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR)[26:246, 126:326]
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.normal(100, 40, (480, 640)).astype(np.float32), (0, 0), 6)
    base = cv2.cvtColor(np.clip(base, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (640, 480))
    for k in range(frames):
        frame = base.copy()
        x = int(10 + 420 * k / max(1, frames - 1))
        y = int(130 + 100 * np.sin(2 * np.pi * k / frames))
        frame[y:y + 220, x:x + 200] = still
        writer.write(frame)
    writer.release()


def make_run(root: Path, arch: str, size: int, classes: int) -> Path:
    torch.manual_seed(0)
    path = root / arch
    save_checkpoint(path / "model.pt", build_model(arch, classes), {})
    write_config(path, {"arch": arch, "classes": [f"c{i}" for i in range(classes)], "size": size,
                        "input": input_spec(arch).to_dict(), "data": {"spec": "synthetic"}})
    return path


def per_frame_ms(step, items, rounds: int = 3) -> tuple[float, float]:
    """(wall, CPU) ms per item, each the best of `rounds` passes (the machine is shared: the best
    pass is the least disturbed; CPU time counts every thread of this process)."""
    wall = cpu = float("inf")
    for _ in range(rounds):
        began, began_cpu = time.perf_counter(), time.process_time()
        for item in items:
            step(item)
        wall = min(wall, (time.perf_counter() - began) / len(items) * 1e3)
        cpu = min(cpu, (time.process_time() - began_cpu) / len(items) * 1e3)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--repeats", type=int, default=2, help="Whole-command runs per network (best kept)")
    args = parser.parse_args()
    small = "liu2019" if "liu2019" in ARCHITECTURES else STANDIN
    if small == STANDIN:
        register_architecture(STANDIN, Architecture(build=LiuStandIn, input=LIU_INPUT,
                                                    description="benchmark stand-in: liu2019's layer sizes"))
    root = Path(tempfile.mkdtemp(prefix="bench_predict_"))
    video = root / "input.mp4"
    write_video(video, args.frames, args.fps)
    capture = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    rows, stages = [], []
    for arch, size, classes in ((small, 48, 9), ("zhu2019", 99, 7)):
        run_path = make_run(root, arch, size, classes)
        predictor = Predictor(load_predict_run(run_path), detector="alt")
        greys = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in frames]
        boxes = [predictor.detect(g) for g in greys]
        found = [(g, b[0]) for g, b in zip(greys, boxes) if b]
        crops = [square_crop(g, b, size) for g, b in found]
        inputs = [predictor.network_input(c[None]) for c in crops]
        with torch.inference_mode(), split_cores():
            predictor.run.model(inputs[0])
            forward_ms = per_frame_ms(predictor.run.model, inputs)
            detect_ms = per_frame_ms(predictor.detect, greys)
        faces = [predictor.classify([b], c[None]) for (_, b), c in zip(found, crops)]
        writer = cv2.VideoWriter(str(root / "encode.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), args.fps, (640, 480))
        stage = {
            "decode": tuple(v / len(frames) for v in per_frame_ms(_decode, [video], rounds=2)),
            "grey": per_frame_ms(lambda f: cv2.cvtColor(f, cv2.COLOR_BGR2GRAY), frames),
            "detect (Haar alt)": detect_ms,
            "crop + transform": per_frame_ms(lambda gb: predictor.network_input(square_crop(*gb, size)[None]), found),
            "forward": forward_ms,
            "overlay": per_frame_ms(lambda fp: draw(fp[0].copy(), fp[1], predictor.run.classes),
                                    list(zip(frames, faces))),
            "encode (mp4v)": per_frame_ms(lambda f: writer.write(f), frames),
        }
        writer.release()
        out = root / f"out_{arch}"
        command_s, command_cpu, loop_fps = float("inf"), float("inf"), 0.0
        for _ in range(args.repeats):
            began, began_cpu = time.perf_counter(), time.process_time()
            result = CliRunner().invoke(app, ["predict", "--run", str(run_path), "--input", str(video),
                                              "--out", str(out), "--detector", "alt"])
            command_s = min(command_s, time.perf_counter() - began)
            command_cpu = min(command_cpu, time.process_time() - began_cpu)
            if result.exit_code != 0:
                raise SystemExit(result.output)
            loop_fps = max(loop_fps, json.loads((out / "summary.json").read_text())["frames_per_second"])
        bare = min(1e3 / detect_ms[0], 1e3 / forward_ms[0])
        reader = sum(stage[k][1] for k in ("decode", "grey", "detect (Haar alt)"))
        network = sum(stage[k][1] for k in ("crop + transform", "forward", "overlay", "encode (mp4v)"))
        rows.append((arch, 1e3 / detect_ms[0], 1e3 / forward_ms[0], loop_fps, len(frames) / command_s,
                     loop_fps / bare, command_cpu / len(frames) * 1e3, 1e3 / max(reader, network)))
        stages.append((arch, stage))
    cores = len(os.sched_getaffinity(0))
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"CPU: {cores} usable cores, load average {load}; bare stages run with the predict loop's thread split "
          f"(torch {max(1, cores // 2)}, OpenCV {cv2.getNumThreads()}), best of 3 passes; "
          f"the command best of {args.repeats}")
    print(f"| {len(frames)} frames 640x480, detection every frame | bare Haar alt, frames/s "
          "| bare forward, frames/s | predict loop, frames/s | whole command, frames/s | loop / slower bare "
          "| whole command, CPU ms per frame | idle estimate, frames/s |")
    print("|---|---|---|---|---|---|---|---|")
    for arch, det, fwd, loop, command, ratio, cpu, idle in rows:
        print(f"| {arch} | {det:.1f} | {fwd:.1f} | {loop:.1f} | {command:.1f} | {ratio:.2f} | {cpu:.1f} | {idle:.0f} |")
    print()
    print("| ms per frame, each stage alone: wall (CPU) | " + " | ".join(a for a, _ in stages) + " |")
    print("|---|" + "---|" * len(stages))
    for name in stages[0][1]:
        print(f"| {name} | " + " | ".join(f"{s[name][0]:.2f} ({s[name][1]:.2f})" for _, s in stages) + " |")


def _decode(video: Path) -> None:
    capture = cv2.VideoCapture(str(video))
    while capture.read()[0]:
        pass
    capture.release()


if __name__ == "__main__":
    main()
