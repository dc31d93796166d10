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
    arch: str = typer.Option("zhu2019", help="zhu2019 or khorrami2015"),
    recipe: str = typer.Option("fast", help="fast (default) or paper"),
    epochs: Optional[int] = typer.Option(None, min=1, help="Maximum epochs (default: the recipe's)"),
    folds: int = typer.Option(10, min=2, help="Subject-grouped folds"),
    fold: int = typer.Option(0, min=0, help="Which fold is the test set"),
    split: str = typer.Option("kfold", help="kfold (subject-grouped) or paper (subject-overlapping)"),
    protocol: str = typer.Option("auto", help="auto, paper (all frames), khorrami (first + last 3) or frames"),
    subjects: int = typer.Option(40, min=1, help="Identities, for --data synthetic"),
    seed: int = typer.Option(0, help="Seed fixing every random choice"),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
    plant_detectors: bool = typer.Option(False, "--plant-detectors",
                                         help="Also tie one seeded map of --plant-layer to each AU (positive control)"),
    plant_layer: str = typer.Option("relu3", help="Layer of the planted detectors"),
    shuffle_labels: bool = typer.Option(False, "--shuffle-labels",
                                        help="Train on emotion labels shuffled across sequences (negative control)"),
):
    """Train a network; resumes from RUN/checkpoint.pt if an earlier run was interrupted."""
    from interpret.planting import planting
    from interpret.training import train as train_run

    path = train_run(data=data, out=out, arch=arch, recipe=recipe, epochs=epochs, folds=folds, fold=fold,
                     split=split, protocol=protocol, subjects=subjects, seed=seed, device=device,
                     auxiliary=planting(plant_layer) if plant_detectors else None, shuffle_labels=shuffle_labels)
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
def validate(
    run: Path = typer.Option(..., help="Run directory"),
    layer: str = typer.Option("relu3", help="Layer name (or its number)"),
    controls: str = typer.Option("untrained,rotation", help="Negative controls: untrained, rotation (comma list, or none)"),
    shuffled: Optional[Path] = typer.Option(None, help="A run trained with --shuffle-labels (negative control)"),
    baseline: Optional[Path] = typer.Option(None, help="A plain run whose accuracy is shown beside this one's"),
    permutations: int = typer.Option(1000, min=1, help="Sequence-level permutations for each winner's p"),
    probe_permutations: int = typer.Option(40, min=0, help="Permutations for the probe (one refit each)"),
    quantile: float = typer.Option(0.005, min=1e-6, max=0.5, help="Top quantile of a map's activations for the IoU"),
    seed: int = typer.Option(0, help="Seed for permutations, rotation and random ablations"),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
):
    """Do the mapping methods find detectors that exist? Methods side by side, controls, verdict per AU."""
    from interpret.validate import format_validate, validate as run_validate

    names = [] if controls.strip().lower() == "none" else [c.strip() for c in controls.split(",") if c.strip()]
    result = run_validate(_open_run(run, device), layer=layer, controls=names,
                          shuffled=_open_run(shuffled, device) if shuffled else None, baseline=baseline,
                          permutations=permutations, probe_permutations=probe_permutations, quantile=quantile,
                          seed=seed)
    typer.echo(format_validate(result))
