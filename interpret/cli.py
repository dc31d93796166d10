"""The `interpret` command line: each command is a thin wrapper over one module function."""

from __future__ import annotations

import functools
import json
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

DATA_HELP = "'synthetic' (the embedded default) or a dataset path: CK+ tree, fer2013.csv, FER+ folder, JAFFE, folder per class"


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
):
    """Count what a dataset holds: subjects, sequences, frames, emotions, AUs, skipped files."""
    from interpret.data import load_faceset
    from interpret.inspect import render_summary, summarize

    extra = {"subjects": subjects, "seed": seed} if data == "synthetic" else {}
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
    folds: int = typer.Option(10, min=2, help="Subject-grouped folds"),
    fold: int = typer.Option(0, min=0, help="Which fold is the test set"),
    split: str = typer.Option("kfold", help="kfold (subject-grouped), paper (subject-overlapping) or usage "
                                            "(the data's own: FER PublicTest = val, PrivateTest = test)"),
    protocol: str = typer.Option("auto", help="auto, paper (all frames), khorrami (first + last 3) or frames"),
    subjects: int = typer.Option(40, min=1, help="Identities, for --data synthetic"),
    seed: int = typer.Option(0, help="Seed fixing every random choice"),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
    valence_csv: Optional[Path] = typer.Option(None, help="liu2019 on your data: CSV of path,level or path,r1,...,rK"),
    sequence_mode: Optional[str] = typer.Option(None, help="wu2019: single (paper), last-k or window"),
    seq_len: Optional[int] = typer.Option(None, min=1, help="wu2019: frames per sequence (T)"),
    seq_stride: Optional[int] = typer.Option(None, min=1, help="wu2019: window stride"),
    seq_epochs: Optional[int] = typer.Option(None, min=1, help="wu2019: epochs of the sequence head"),
    labels: str = typer.Option("data", help="data (the data's own labels) or, for FER+ data, ferplus-majority, "
                                            "ferplus-probability, ferplus-crossentropy or ferplus-multi_target"),
    l2_convention: Optional[str] = typer.Option(None, help="liu2019: keras (default, 0.05 sum w^2) or half (0.025 sum w^2)"),
):
    """Train a network; resumes from RUN/checkpoint.pt if an earlier run was interrupted."""
    from interpret.training import train as train_run

    sequence = {"mode": sequence_mode, "steps": seq_len, "stride": seq_stride, "epochs": seq_epochs}
    if arch != "wu2019" and any(v is not None for v in sequence.values()):
        raise InterpretError("--sequence-mode, --seq-len, --seq-stride and --seq-epochs are wu2019's options")
    if valence_csv is not None and arch != "liu2019":
        raise InterpretError("--valence-csv is liu2019's option")
    if labels != "data" and not labels.startswith("ferplus-"):
        raise InterpretError(f"--labels must be data or ferplus-MODE, got {labels!r}")
    path = train_run(data=data, out=out, arch=arch, recipe=recipe, epochs=epochs, folds=folds, fold=fold,
                     split=split, protocol=protocol, subjects=subjects, seed=seed, device=device,
                     valence_csv=valence_csv, sequence=sequence if arch == "wu2019" else None,
                     ferplus_mode=labels.removeprefix("ferplus-") if labels != "data" else None,
                     l2_convention=l2_convention)
    typer.echo(f"run written to {path}")


@command()
def cache(
    run: Path = typer.Option(..., help="Run directory"),
    layer: int = typer.Option(3, min=1, help="Conv layer"),
    maps: bool = typer.Option(False, "--maps", help="Also store the full maps (float16)"),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
):
    """Cache each image's per-map maxima (and optionally full maps) of a layer to HDF5."""
    from interpret.cache import build_cache

    path = build_cache(_open_run(run, device), layer=layer, maps=maps)
    typer.echo(f"cache written to {path}")


@command()
def deconv(
    run: Path = typer.Option(..., help="Run directory"),
    layer: int = typer.Option(3, min=1, help="Conv layer"),
    top: int = typer.Option(9, min=1, help="Top activations per map"),
    maps: str = typer.Option("all", help="'all' or map numbers from 0, e.g. 0,5,113"),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
):
    """Zeiler–Fergus deconvolution of each map's top activations, beside receptive-field patches."""
    from interpret.deconv import run_deconv

    path = run_deconv(_open_run(run, device), layer=layer, top=top, maps=maps)
    typer.echo(f"deconvolutions written to {path}")


@command("au-map")
def au_map(
    run: Path = typer.Option(..., help="Run directory"),
    au: str = typer.Option("all", help="AU codes: 1, AU01, 1,4,27 or all"),
    layer: int = typer.Option(3, min=1, help="Conv layer"),
    n: int = typer.Option(9, min=1, help="Top activations per set in the distance"),
    permutations: int = typer.Option(1000, min=0, help="Permutations for the null"),
    bootstrap: int = typer.Option(200, min=0, help="Subject bootstrap resamples for stability"),
    seed: int = typer.Option(0, help="Seed for permutations and bootstrap"),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
):
    """Rank every map by the paper's symmetric top-n distance between AU-present and AU-absent images."""
    from interpret.aumap import au_map as map_aus, format_table

    results = map_aus(_open_run(run, device), aus=au, layer=layer, n=n, permutations=permutations,
                      bootstrap=bootstrap, seed=seed)
    typer.echo(format_table(results))


@command()
def sanity(
    run: Path = typer.Option(..., help="Run directory"),
    layer: int = typer.Option(3, min=1, help="Conv layer whose units are projected"),
    seed: int = typer.Option(0, help="Seed for the re-initialisation"),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
):
    """Cascading weight randomization: do the projections depend on what the network learned?"""
    from interpret.sanity import format_sanity, run_sanity

    typer.echo(format_sanity(run_sanity(_open_run(run, device), layer=layer, seed=seed)))


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
    out: Path = typer.Option(Path("runs/demo"), help="Run directory"),
    report_out: Optional[Path] = typer.Option(None, help="Report folder (default OUT/report)"),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
):
    """The whole pipeline on the synthetic default: synthesise, train, cache, deconvolve, map, check, report."""
    from interpret.demo import run_demo

    typer.echo(str(run_demo(out, report_out=report_out, device=device)))


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
