"""The `interpret` command line: each command is a thin wrapper over one module function."""

from __future__ import annotations

import functools
import json
import os
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
):
    """Train a network; resumes from RUN/checkpoint.pt if an earlier run was interrupted."""
    from interpret.training import train as train_run

    path = train_run(data=data, out=out, arch=arch, recipe=recipe, epochs=epochs, folds=folds, fold=fold,
                     split=split, protocol=protocol, subjects=subjects, seed=seed, device=device)
    if os.environ.get("RANK", "0") == "0":  # under torchrun: rank 0 reports
        typer.echo(f"run written to {path}")


@command()
def cache(
    run: Path = typer.Option(..., "--run", "--run-dir", help="Run directory (--run-dir under torchrun, "
                             "whose parser takes --run for its --run-path)"),
    layer: int = typer.Option(3, min=1, help="Conv layer"),
    maps: bool = typer.Option(False, "--maps", help="Also store the full maps (float16)"),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
    shard: Optional[str] = typer.Option(None, help="i/N: build contiguous shard i of N, merged when all exist "
                                        "(under torchrun: one shard per process, no option needed)"),
):
    """Cache each image's per-map maxima (and optionally full maps) of a layer to HDF5."""
    from interpret import distributed
    from interpret.cache import build_cache

    if shard is None and not distributed.launched():
        path = build_cache(_open_run(run, device), layer=layer, maps=maps)
    else:
        from interpret.shards import on_local_device, parse_shard, sharded_cache

        with distributed.session() as ranks:
            path = sharded_cache(on_local_device(_open_run(run, device), ranks), layer, maps,
                                 None if shard is None else parse_shard(shard))
        if not ranks.is_main:
            return
    typer.echo(f"cache written to {path}")


@command()
def deconv(
    run: Path = typer.Option(..., "--run", "--run-dir", help="Run directory (--run-dir under torchrun, "
                             "whose parser takes --run for its --run-path)"),
    layer: int = typer.Option(3, min=1, help="Conv layer"),
    top: int = typer.Option(9, min=1, help="Top activations per map"),
    maps: str = typer.Option("all", help="'all' or map numbers from 0, e.g. 0,5,113"),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
    shard: Optional[str] = typer.Option(None, help="i/N: project map range i of N, merged when all exist "
                                        "(under torchrun: one range per process, no option needed)"),
):
    """Zeiler–Fergus deconvolution of each map's top activations, beside receptive-field patches."""
    from interpret import distributed
    from interpret.deconv import run_deconv

    if shard is None and not distributed.launched():
        path = run_deconv(_open_run(run, device), layer=layer, top=top, maps=maps)
    else:
        from interpret.shards import on_local_device, parse_shard, sharded_deconv

        with distributed.session() as ranks:
            path = sharded_deconv(on_local_device(_open_run(run, device), ranks), layer, top, maps,
                                  None if shard is None else parse_shard(shard))
        if not ranks.is_main:
            return
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


@command("refresh-data")
def refresh_data(run: Path = typer.Option(..., help="Run directory")):
    """Re-read a run's data source and rewrite RUN/dataset.h5 (after the source changed on purpose)."""
    from interpret.runs import read_config, run_data

    faceset, _ = run_data(run, read_config(run), refresh=True)
    typer.echo(f"{len(faceset)} images stored in {run / 'dataset.h5'}")


@command("merge-cache")
def merge_cache(
    run: Path = typer.Option(..., help="Run directory"),
    layer: int = typer.Option(3, min=1, help="Conv layer"),
    shards: int = typer.Option(..., min=1, help="N of the i/N shards built with `interpret cache --shard`"),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
):
    """Merge the shards of a layer's activation cache into RUN/activations/conv{K}.h5."""
    from interpret.shards import merge_cache as merge

    typer.echo(f"cache written to {merge(_open_run(run, device), layer, shards)}")
