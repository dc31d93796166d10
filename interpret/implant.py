"""Planting detectors into a trained network (`interpret implant`): a positive control that takes.

Joint planting (`interpret train --plant-detectors`) competes with the emotion loss and
underfits: its maps separate their AU on the training images at an AUROC near 0.8, and on new
faces about half pass the detector bar (BENCHMARKS.md, issue 13). Here the trained network is
frozen. For each AU one filter of the convolution that feeds the planted layer is fitted on that
convolution's input over the training images (evaluation transform, no augmentation), with
`interpret.planting.PlantedLoss` (batch-standardized BCE of its spatial maximum, plus the hinge
keeping the AU's images above zero) and a region term (`region_penalty`): on the AU's images,
how far the map's largest value outside the AU's region exceeds its largest inside
(`interpret.facs.region_mask` at the map's resolution: a cell is inside where any of its input
pixels is). The filters replace a seeded choice of maps (`planting.choose_maps`); then every
parameter after the planted layer (the head) is refitted on the emotion labels for up to
`head_epochs` epochs and the epoch with the best validation accuracy kept (0: the head as it
was). The new run records ``planted`` like a jointly planted one, plus where it came from, so
`cache`, `validate` and `report` treat both alike.
"""

from __future__ import annotations

import copy
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from interpret import stats
from interpret.datastore import write_dataset
from interpret.errors import InterpretError, located
from interpret.facs import au_name
from interpret.io import read_json, write_json
from interpret.layers import get_module, layer_output, resolve_layer, trace, unwrapped
from interpret.metrics import classification_report, subject_bootstrap_interval
from interpret.planting import PLANT_EPS, PLANT_WEIGHT, PlantedLoss, choose_maps, usable_aus
from interpret.runs import claim_run_dir, save_checkpoint, write_config

FIT_EPOCHS = 8
FIT_BATCH = 16
FIT_LR = 1e-3
#: Weight of the region term beside each AU's planting loss (both times `PLANT_WEIGHT`).
REGION_WEIGHT = 1.0
HEAD_EPOCHS = 1
HEAD_BATCH = 32
HEAD_LR = 1e-4
BATCH = 128


def feeding_conv(model: torch.nn.Module, layer: str, probe: torch.Tensor) -> tuple[str, bool]:
    """(name of the Conv2d whose filters make `layer`'s maps, whether `layer` is a ReLU on its output)."""
    modules = dict(unwrapped(model).named_modules())
    module = modules[layer]
    if isinstance(module, torch.nn.Conv2d):
        found, pre_activation = layer, False
    elif isinstance(module, torch.nn.ReLU) and not module.inplace:
        with torch.no_grad():
            given = layer_output(model, layer, probe, inputs=True)
        ran = trace(model, probe)
        found = next((name for name, output in reversed(ran[:[n for n, _ in ran].index(layer)])
                      if isinstance(modules[name], torch.nn.Conv2d) and isinstance(output, torch.Tensor)
                      and output.shape == given.shape and torch.equal(output, given)), None)
        if found is None:
            raise InterpretError(f"--layer {layer!r}: its input is not a Conv2d's output; implant needs conv -> ReLU")
        pre_activation = True
    else:
        raise InterpretError(f"--layer {layer!r}: implant plants in a Conv2d or a (not inplace) ReLU on one's output, "
                             f"not a {type(module).__name__}")
    conv = modules[found]
    if conv.groups != 1 or conv.padding_mode != "zeros":
        raise InterpretError(f"--layer {layer!r}: implant fits plain convolutions (groups 1, zero padding); "
                             f"{found} has groups {conv.groups}, padding {conv.padding_mode!r}")
    return found, pre_activation


def head_parameters(model: torch.nn.Module, layer: str, probe: torch.Tensor) -> list[torch.nn.Parameter]:
    """The parameters of the modules whose forward finishes after `layer`'s (the head it feeds)."""
    order = [name for name, _ in trace(model, probe)]
    modules = dict(unwrapped(model).named_modules())
    after = order[order.index(layer) + 1:]
    return [p for name in after for p in modules[name].parameters(recurse=False)]


def conv_inputs(model, conv: str, dataset, rows: np.ndarray) -> torch.Tensor:
    """(N, C, h, w) float16 (half the memory; the fitted AUROCs it gives are within 1e-3 of the
    network's own): the input of `conv` for the dataset's `rows` (evaluation transform)."""
    with torch.inference_mode():
        return torch.cat([layer_output(model, conv, dataset.rows(rows[lo:lo + BATCH]), inputs=True).half()
                          for lo in range(0, len(rows), BATCH)])


def filter_maps(features, weight, bias, conv, pre_activation: bool) -> torch.Tensor:
    """(N, A, h, w): the maps the filters (`weight`, `bias`, with `conv`'s stride, padding and
    dilation) make on the conv's input `features`, after the ReLU where the planted layer has one."""
    with torch.no_grad():
        z = torch.cat([F.conv2d(features[lo:lo + BATCH].float(), weight, bias, conv.stride, conv.padding,
                                conv.dilation) for lo in range(0, len(features), BATCH)])
    return F.relu(z) if pre_activation else z


def region_cells(dataset, rows: np.ndarray, au_codes, shape: tuple[int, int]) -> torch.Tensor:
    """(N, A, h, w) bool: map cells any of whose input pixels lie in each AU's region."""
    from interpret.methods import region_masks

    fs = dataset.faceset
    out = []
    for lo in range(0, len(rows), BATCH):
        masks = region_masks(fs.landmarks[rows[lo:lo + BATCH]], au_codes, fs.images.shape[-1], dataset.spec)
        out.append(F.adaptive_max_pool2d(torch.from_numpy(masks).float().flatten(0, 1), shape)
                   .view(len(masks), len(au_codes), *shape) > 0)
    return torch.cat(out)


def region_penalty(z: torch.Tensor, inside: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Mean over the (image, AU) pairs with the AU present and cells both in and out of its region
    of max(0, largest value outside the region - largest inside), in units of the batch's
    standard deviation of the AU's maxima: the map's peak on an AU's images belongs in its region."""
    floor = torch.finfo(z.dtype).min
    inside_max = z.masked_fill(~inside, floor).amax(dim=(2, 3))
    outside_max = z.masked_fill(inside, floor).amax(dim=(2, 3))
    cells = inside.flatten(2)
    counted = present.bool() & cells.any(dim=2) & ~cells.all(dim=2)
    scale = z.amax(dim=(2, 3)).std(dim=0, correction=0).detach() + PLANT_EPS
    gap = torch.where(counted, F.relu(outside_max - inside_max) / scale, 0.0)
    return gap.sum() / counted.sum().clamp(min=1)


def fit_filters(features, presence, inside, weight, bias, train_rows, epochs: int, seed: int, region_weight: float,
                pre_activation: bool, stride, padding, dilation) -> tuple[torch.Tensor, torch.Tensor, list[dict]]:
    """The planted filters fitted on `features[train_rows]` (`pre_activation`: the planted layer is
    a ReLU on them, so `PlantedLoss` adds its hinge; `region_weight` x `PLANT_WEIGHT`: the region
    term's weight, 0 for none); per epoch the loss."""
    weight = torch.nn.Parameter(weight.detach().clone())
    bias = torch.nn.Parameter(bias.detach().clone())
    columns = range(presence.shape[1])
    loss_of = PlantedLoss("z", columns, columns, presence, pre_activation=pre_activation)
    optimizer = torch.optim.AdamW([weight, bias], lr=FIT_LR, weight_decay=0.01)
    generator = torch.Generator().manual_seed(seed)
    history = []
    for epoch in range(epochs):
        order = torch.from_numpy(train_rows)[torch.randperm(len(train_rows), generator=generator)]
        total = 0.0
        for lo in range(0, len(order), FIT_BATCH):
            rows = order[lo:lo + FIT_BATCH]
            z = F.conv2d(features[rows].float(), weight, bias, stride, padding, dilation)
            loss = loss_of({"z": z}, rows)
            if region_weight:
                loss = loss + PLANT_WEIGHT * region_weight * region_penalty(z, inside[rows], presence[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(rows)
        history.append({"epoch": epoch + 1, "loss": total / len(order)})
    return weight.detach(), bias.detach(), history


@dataclass
class FitSetup:
    """What fitting the planted filters needs: the conv making the planted layer's maps, the AUs
    and their chosen maps, and on every image the conv's input, the AUs' presence and region cells."""
    conv_name: str
    conv: torch.nn.Conv2d
    pre_activation: bool
    codes: list[int]
    maps: dict[str, int]
    columns: list[int]
    train_rows: np.ndarray
    features: torch.Tensor
    presence: torch.Tensor
    inside: torch.Tensor

    @property
    def chosen(self) -> torch.Tensor:
        """The planted maps' indices, in the order of `maps`."""
        return torch.as_tensor(list(self.maps.values()))

    def fit(self, epochs: int, seed: int, region_weight: float) -> tuple[torch.Tensor, torch.Tensor, list[dict]]:
        """`fit_filters` from the chosen maps' current filters."""
        return fit_filters(self.features, self.presence, self.inside, self.conv.weight[self.chosen],
                           self.conv.bias[self.chosen], self.train_rows, epochs, seed, region_weight,
                           self.pre_activation, self.conv.stride, self.conv.padding, self.conv.dilation)

    def maps_of(self, weight, bias) -> torch.Tensor:
        """`filter_maps` of fitted filters on every image."""
        return filter_maps(self.features, weight, bias, self.conv, self.pre_activation)


def fit_setup(model, data, layer: str, aus, seed: int, region: bool, source: Path, say=None,
              extra=None) -> FitSetup:
    """The `FitSetup` for planting the usable AUs of `aus` (None: all) into `layer` of `model`
    (`region`: with region cells, which need landmarks; otherwise none are inside); `source` is
    named in errors, `say` told before the slow pass over the images. `extra`: a dataset (same AU
    codes) whose every image is fitted on too, after `data`'s training images."""
    conv_name, pre_activation = feeding_conv(model, layer, data.rows([0]))
    conv = get_module(model, conv_name)
    fs = data.faceset
    train_rows = np.flatnonzero(np.asarray(data.split).astype(str) == "train")
    presence_all = np.asarray(fs.au_present, dtype=bool)
    codes = [int(c) for c in fs.au_codes]
    planted_codes = usable_aus(presence_all[train_rows], codes, aus)
    columns = [codes.index(c) for c in planted_codes]
    maps = choose_maps(conv.out_channels, planted_codes, seed)
    if region and fs.landmarks is None:
        raise located(source, "implant's region term needs landmarks, which this run's data lacks (--no-region)")
    parts = [data] if extra is None else [data, extra]
    if extra is not None and [int(c) for c in extra.faceset.au_codes] != codes:
        raise InterpretError("the extra fit images' AU codes differ from the run's")
    if say:
        say(f"[implant] {len(maps)} AUs into {layer} ({conv_name}'s filters), features of "
            f"{sum(map(len, parts))} images ...", flush=True)
    features = [conv_inputs(model, conv_name, part, np.arange(len(part))) for part in parts]
    shape = tuple(F.conv2d(features[0][:1].float(), conv.weight, conv.bias, conv.stride, conv.padding,
                           conv.dilation).shape[-2:])
    inside = [region_cells(part, np.arange(len(part)), planted_codes, shape) if region
              else torch.zeros(len(part), len(maps), *shape, dtype=torch.bool) for part in parts]
    presence = [torch.from_numpy(np.asarray(part.faceset.au_present, dtype=bool)[:, columns]) for part in parts]
    if extra is not None:
        train_rows = np.concatenate([train_rows, len(data) + np.arange(len(extra))])
    return FitSetup(conv_name, conv, pre_activation, planted_codes, maps, columns, train_rows, torch.cat(features),
                    torch.cat(presence), torch.cat(inside))


def accuracy(model, dataset, rows: np.ndarray) -> tuple[float, np.ndarray]:
    """(accuracy, predictions) of the model on labelled `rows`."""
    model.eval()
    with torch.inference_mode():
        logits = torch.cat([model(dataset.rows(rows[lo:lo + BATCH])) for lo in range(0, len(rows), BATCH)])
    predictions = logits.argmax(1).numpy()
    return float(np.mean(predictions == dataset.targets[rows])), predictions


def cut_from_head(model, layer: str, probe: torch.Tensor, kept_maps) -> torch.utils.hooks.RemovableHandle:
    """Cut every map of `layer` but `kept_maps` from the head: their weights in the first module
    with parameters after `layer` (a Linear over the flattened maps, each map a block of columns,
    or a Conv2d) are zeroed, and the returned gradient hook holds them at zero while the head is
    refitted (AdamW moves no weight whose gradient and value are zero). Remove it after the refit."""
    order = [name for name, _ in trace(model, probe)]
    modules = dict(unwrapped(model).named_modules())
    first = next(modules[name] for name in order[order.index(layer) + 1:]
                 if next(modules[name].parameters(recurse=False), None) is not None)
    with torch.no_grad():
        channels = layer_output(model, layer, probe).shape[1]
    keep = torch.zeros(channels)
    keep[list(kept_maps)] = 1.0
    if isinstance(first, torch.nn.Linear) and first.in_features % channels == 0:
        mask = keep.repeat_interleave(first.in_features // channels)[None, :]
    elif isinstance(first, torch.nn.Conv2d) and first.in_channels == channels:
        mask = keep[None, :, None, None]
    else:
        raise InterpretError(f"the head after {layer} starts with a {type(first).__name__} that does not read its "
                             f"{channels} maps as blocks; its maps cannot be cut")
    with torch.no_grad():
        first.weight.mul_(mask)
    return first.weight.register_hook(lambda grad: grad * mask)


def refit_head(model, params, dataset, train_rows, val_rows, epochs: int, seed: int,
               lr: float = HEAD_LR, keep: str = "best") -> tuple[list[dict], int]:
    """Refit `params` (the head) on the emotion labels (AdamW at `lr`, evaluation transform); keep
    the first epoch (0 = as it was) with the best validation accuracy, or with `keep="last"` the
    last epoch. Returns (per-epoch validation accuracy, the epoch kept)."""
    if keep not in ("best", "last"):
        raise InterpretError(f"keep must be 'best' or 'last', got {keep!r}")
    frozen = [p for p in model.parameters() if all(p is not q for q in params)]
    for p in frozen:
        p.requires_grad_(False)
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    generator = torch.Generator().manual_seed(seed)
    best_acc, _ = accuracy(model, dataset, val_rows)
    best_state, best_epoch = [p.detach().clone() for p in params], 0
    history = [{"epoch": 0, "val_accuracy": best_acc}]
    for epoch in range(1, epochs + 1):
        model.train()
        order = train_rows[torch.randperm(len(train_rows), generator=generator).numpy()]
        for lo in range(0, len(order), HEAD_BATCH):
            rows = order[lo:lo + HEAD_BATCH]
            loss = F.cross_entropy(model(dataset.rows(rows)), torch.from_numpy(dataset.targets[rows]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        val_acc, _ = accuracy(model, dataset, val_rows)
        history.append({"epoch": epoch, "val_accuracy": val_acc})
        if val_acc > best_acc or keep == "last":
            best_acc, best_state, best_epoch = val_acc, [p.detach().clone() for p in params], epoch
    with torch.no_grad():
        for p, kept in zip(params, best_state):
            p.copy_(kept)
    for p in frozen:
        p.requires_grad_(True)
    return history, best_epoch


def implant(run, out, layer: str = "relu3", aus=None, epochs: int = FIT_EPOCHS, head_epochs: int = HEAD_EPOCHS,
            region: bool = True, seed: int | None = None, fit_subjects: int = 0, overwrite: bool = False,
            progress: bool = True) -> Path:
    """Plant one detector per AU into a copy of the trained `run` (see the module docstring) in `out`.
    `fit_subjects`: the filters are fitted on that many new synthetic identities too (the
    generator's subjects after the run's; `validate`'s fresh identities then start after them)."""
    out = Path(out)
    if run.config.get("planted"):
        raise located(run.path / "config.json", "this run already holds planted detectors; implant into a plain run")
    if fit_subjects and run.config["data"].get("spec") != "synthetic":
        raise located(run.path / "config.json", f"--fit-subjects needs a run on the synthetic default (new identities "
                                                f"come from its generator), this run's data is "
                                                f"{run.config['data'].get('spec')!r}")
    if fit_subjects < 0:
        raise InterpretError(f"--fit-subjects must be 0 or more, got {fit_subjects}")
    if out.resolve() == Path(run.path).resolve():
        raise located(out, "--out is the source run; implant writes a new run beside it")
    claim_run_dir(out, overwrite)
    if out.is_dir() and any(out.iterdir()):
        raise located(out, "holds an interrupted training run's checkpoint; choose another --out")
    say = print if progress else (lambda *_a, **_k: None)
    start = time.perf_counter()
    seed = int(run.config["seed"] if seed is None else seed)
    torch.manual_seed(seed)
    model, data = copy.deepcopy(run.model).cpu().eval(), run.dataset  # the source run's model stays as it is
    name = resolve_layer(model, layer)
    probe = data.rows([0])
    split = np.asarray(data.split).astype(str)
    train_rows, val_rows = np.flatnonzero(split == "train"), np.flatnonzero(split == "val")
    test_rows = np.flatnonzero((split == "test") & (data.targets >= 0))
    if not len(train_rows) or not len(val_rows):
        raise located(run.path, "implant needs training and validation images (a run trained with a split)")
    fs = data.faceset
    extra = None
    if fit_subjects:
        from interpret.truth import fresh_dataset

        extra = fresh_dataset(run, fit_subjects, first=int(run.config["data"]["subjects"]), split="train")
    setup = fit_setup(model, data, name, aus, seed, region, run.path, say, extra)
    maps, conv, conv_name, pre_activation = setup.maps, setup.conv, setup.conv_name, setup.pre_activation
    weight, bias, fit_history = setup.fit(epochs, seed, REGION_WEIGHT if region else 0.0)
    peaks = setup.maps_of(weight, bias).amax(dim=(2, 3)).numpy()
    with torch.no_grad():
        conv.weight[setup.chosen] = weight
        conv.bias[setup.chosen] = bias
    presence = setup.presence.numpy()
    fit = {au: {part: float(stats.auroc(peaks[rows][:, [k]], presence[rows, k])[0])
                for part, rows in (("train_auroc", train_rows), ("val_auroc", val_rows))}
           for k, au in enumerate(maps)}
    say(f"[implant] filters fitted ({time.perf_counter() - start:.0f} s): mean AUROC of the planted maps, training "
        f"{np.mean([f['train_auroc'] for f in fit.values()]):.3f}, validation "
        f"{np.mean([f['val_auroc'] for f in fit.values()]):.3f}", flush=True)
    del setup, extra
    replaced_acc, predictions = accuracy(model, data, test_rows)
    if head_epochs:
        say(f"[implant] refitting the layers after {name} ({time.perf_counter() - start:.0f} s) ...", flush=True)
    labelled_train = train_rows[data.targets[train_rows] >= 0]
    head_history, kept = refit_head(model, head_parameters(model, name, probe), data, labelled_train,
                                    val_rows[data.targets[val_rows] >= 0], head_epochs, seed)
    if kept:  # the head changed: the network's test predictions did too
        _, predictions = accuracy(model, data, test_rows)
    source_metrics = read_json(run.path / "metrics.json") or {}
    report = classification_report(data.targets[test_rows], predictions, data.targets[labelled_train], data.classes)
    metrics = {**source_metrics,
               "test_accuracy": report.pop("accuracy"),
               "test_accuracy_interval": subject_bootstrap_interval(predictions == data.targets[test_rows],
                                                                    fs.subject[test_rows], seed=seed),
               **report, "val_accuracy": head_history[kept]["val_accuracy"],
               "implanted": {"source_test_accuracy": source_metrics.get("test_accuracy"),
                             "test_accuracy_maps_replaced": replaced_acc,
                             "head_epochs_kept": kept, "head_history": head_history,
                             "fit_history": fit_history, "fit": fit,
                             "seconds": round(time.perf_counter() - start, 2)}}
    metrics.pop("test_loss", None)  # the source's; not recomputed
    config = dict(run.config)
    config["planted"] = {
        "layer": name, "maps": maps, "seed": seed,
        "aus": "all" if aus is None else "independent" if aus == "independent" else "chosen",
        "loss": f"fitted after training: {conv_name}'s filters of the planted maps on its input over the training "
                f"images, the planting loss (BCE of the batch-standardized maximum"
                f"{', the hinge' if pre_activation else ''})"
                + (f", plus {REGION_WEIGHT:g} x mean over the AU's images of max(0, largest value outside its region - "
                   "largest inside) / sd of the maxima" if region else "")
                + f", weight {PLANT_WEIGHT:g}; {epochs} epochs"
                + (f", on {fit_subjects} new synthetic identities too" if fit_subjects else "")
                + ", then the head refitted",
        "implanted": {"source": str(run.path), "source_model_sha256": run.model_sha256, "conv": conv_name,
                      "region": region, "epochs": epochs, "head_epochs": head_epochs,
                      "fit_subjects": int(fit_subjects)},
    }
    staging = out.parent / f".{out.name}.implant-{os.getpid()}"  # the run appears whole or not at all
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        save_checkpoint(staging / "model.pt", model, {"arch": config["arch"], "classes": list(data.classes),
                                                      "implanted_from": str(run.path)})
        write_dataset(staging, fs, data.split, data.classes, config)
        write_json(staging / "metrics.json", metrics)
        write_config(staging, config)
        if out.is_dir():
            out.rmdir()  # empty: claimed above
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    say(f"[implant] test accuracy {metrics['test_accuracy']:.3f} (source "
        f"{source_metrics.get('test_accuracy', float('nan')):.3f}, with the maps replaced before any refit "
        f"{replaced_acc:.3f}, refit epochs kept {kept}); {time.perf_counter() - start:.0f} s", flush=True)
    return out
