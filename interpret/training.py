"""Training: recipes, a device-resident epoch loop, early stopping, resumable run directories.

The whole uint8 dataset lives on the training device; each batch is gathered, augmented
(`transforms.augment`, one affine resampling) and fed channels_last; on CUDA under bf16
autocast. Loss and correct counts accumulate on the device and are read once per epoch (on
CUDA the progress bar also reads them every `SYNC_EVERY` steps), so steps do not wait on the
host. A seed fixes model init, dropout, shuffling and augmentation: the same seed on CPU
gives the same weights and metrics, and a resumed run equals an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from interpret.progress import progress_bar, say

from interpret import __version__, distributed
from interpret.data.faceset import FaceSet
from interpret.data.protocols import is_sequence_data
from interpret.data.transforms import augment, evaluate
from interpret.datastore import write_dataset
from interpret.errors import InterpretError
from interpret.io import atomic_path, write_json, write_text
from interpret.layers import retain
from interpret.metrics import classification_report, subject_bootstrap_interval
from interpret.models import ARCHITECTURES, build_model, input_spec
from interpret.plots import plot_confusion, plot_curves
from interpret.runs import claim_run_dir, class_targets, resolve_device, run_faceset, run_split, save_checkpoint, write_config

CHECKPOINT = "checkpoint.pt"
#: On CUDA the progress bar reads the running loss/accuracy every this many steps.
SYNC_EVERY = 50
EVAL_BATCH = 256


@dataclass(frozen=True)
class Recipe:
    """Every hyper-parameter of a training recipe (all recorded in config.json).

    `lr` is the constant rate (schedule 'constant') or the peak of the one-cycle schedule:
    linear warm-up from ~0 over a `warmup` fraction of the steps (the He-initialised network
    starts with large logits, and its first steps overshoot at the paper's lr already), then
    cosine decay to lr * `final_lr_ratio` at the last step of the `epochs` budget.
    `momentum` is SGD's momentum or AdamW's beta1 (beta2 0.999); `weight_decay` is SGD's L2
    term or AdamW's decoupled decay.
    """

    name: str
    optimizer: str
    lr: float
    schedule: str
    momentum: float
    nesterov: bool
    weight_decay: float
    batch_size: int
    epochs: int
    patience: int
    warmup: float
    final_lr_ratio: float
    augmentation: str = "paper"
    selection: str = "best validation accuracy (ties: lower validation loss)"


RECIPES = {
    # REFERENCE §1: SGD momentum 0.9, weight decay 1e-4, constant lr 1e-3, batch 64, "until convergence".
    "paper": Recipe("paper", "sgd", 1e-3, "constant", 0.9, False, 1e-4, 64, epochs=60, patience=10,
                    warmup=0.0, final_lr_ratio=1.0),
    # Same model, data and augmentation. AdamW's per-weight step size copes with the hot He init
    # (initial logits std ~6) that makes SGD overshoot; warm-up, then cosine decay; batch 16
    # gives 4x the steps per epoch, which the small CK+-sized sets need (measured: faster fit).
    "fast": Recipe("fast", "adamw", 1e-4, "onecycle", 0.9, False, 1e-2, 16, epochs=20, patience=8,
                   warmup=0.15, final_lr_ratio=0.01),
}


def get_recipe(name: str, epochs: int | None = None) -> Recipe:
    if name not in RECIPES:
        raise InterpretError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    recipe = RECIPES[name]
    return recipe if epochs is None else replace(recipe, epochs=int(epochs))


def learning_rate(recipe: Recipe, step: int, total_steps: int) -> float:
    """The recipe's learning rate at optimizer step `step` (0-based) of `total_steps`."""
    if recipe.schedule == "constant":
        return recipe.lr
    if recipe.schedule != "onecycle":
        raise ValueError(f"unknown schedule {recipe.schedule!r}")
    warm = max(1, round(recipe.warmup * total_steps))
    if step < warm:
        return recipe.lr * (step + 1) / (warm + 1)
    progress = min(1.0, (step - warm) / max(1, total_steps - 1 - warm))
    return recipe.lr * (recipe.final_lr_ratio + (1 - recipe.final_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def make_optimizer(model: torch.nn.Module, recipe: Recipe, device: torch.device) -> torch.optim.Optimizer:
    fused = device.type == "cuda"
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                               nesterov=recipe.nesterov, weight_decay=recipe.weight_decay, fused=fused or None)
    if recipe.optimizer == "adam":  # the seed systems' Keras/PyTorch Adam (coupled L2, if any)
        return torch.optim.Adam(model.parameters(), lr=recipe.lr, betas=(recipe.momentum, 0.999),
                                weight_decay=recipe.weight_decay, fused=fused or None)
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=recipe.lr, betas=(recipe.momentum, 0.999),
                                 weight_decay=recipe.weight_decay, fused=fused or None)
    raise ValueError(f"unknown optimizer {recipe.optimizer!r}")


def autocast(device: torch.device):
    """bf16 autocast on CUDA, nothing (fp32) elsewhere."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()


def train_epoch(model: torch.nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor,
                targets: torch.Tensor, generator: torch.Generator, batch_size: int,
                lr_at: Callable[[int], float] | None = None, first_step: int = 0,
                bar=None, transform=augment, loss_fn=None, order: torch.Tensor | None = None,
                auxiliary=None) -> tuple[float, float]:
    """One pass over `images` ((N, S, S) uint8 on the training device) in a random order.

    Each batch is augmented on the device with `transform(batch, generator)`; `lr_at(step)` sets
    the learning rate before every step; `loss_fn(logits, targets, model)` (default cross-entropy)
    is minimised, plus `auxiliary(outputs, index)` if given: a loss computed from the outputs of
    its `layers` (retained, not detached; their inputs where it sets `inputs`) for batch rows
    `index` of `images`. `order`: the rows to visit (default: a permutation drawn from
    `generator`; under torchrun, the rank's shard).
    Returns the mean training loss and accuracy (one host read).
    """
    device = images.device
    if order is None:
        order = torch.randperm(len(images), generator=generator, device=device)
    n = len(order)
    model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen = 0
    sync_every = 1 if device.type == "cpu" else SYNC_EVERY
    for step, start in enumerate(range(0, n, batch_size)):
        if lr_at is not None:
            lr = lr_at(first_step + step)
            for group in optimizer.param_groups:
                group["lr"] = lr
        index = order[start:start + batch_size]
        x = transform(images[index], generator).contiguous(memory_format=torch.channels_last)
        y = targets[index]
        with retain(model, auxiliary.layers if auxiliary else [], detach=False,
                    inputs=getattr(auxiliary, "inputs", False)) as outputs, autocast(device):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y) if loss_fn is None else loss_fn(logits, y, model)
        if auxiliary is not None:
            loss = loss + auxiliary(outputs, index)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += len(index)
        loss_sum += loss.detach() * len(index)
        correct += (logits.detach().argmax(1) == (y if y.ndim == 1 else y.argmax(1))).sum()  # soft targets: their top
        if bar is not None:
            bar.update(1)
            if (step + 1) % sync_every == 0 or start + batch_size >= n:
                bar.set_postfix(loss=f"{loss_sum.item() / seen:.3f}", acc=f"{correct.item() / seen:.3f}")
    return loss_sum.item() / n, correct.item() / n


@torch.no_grad()
def predict(model: torch.nn.Module, images: torch.Tensor, batch_size: int = EVAL_BATCH, forward=None) -> torch.Tensor:
    """Float32 logits of the evaluation transform of (N, S, S) uint8 `images`, model in eval mode;
    `forward(model, batch)` replaces transform + model (a system's own input or test-time crops)."""
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        with autocast(images.device):
            if forward is not None:
                out.append(forward(model, images[start:start + batch_size]).float())
                continue
            x = evaluate(images[start:start + batch_size]).contiguous(memory_format=torch.channels_last)
            out.append(model(x).float())
    return torch.cat(out) if out else torch.zeros((0, 0), device=images.device)


def score(logits: torch.Tensor, targets: torch.Tensor) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) as host floats."""
    loss = F.cross_entropy(logits, targets)
    acc = (logits.argmax(1) == targets).float().mean()
    return float(loss), float(acc)


# ---------------------------------------------------------------- config and data


def make_config(data, arch: str, recipe: Recipe, folds: int, fold: int, split: str, protocol: str,
                subjects: int, seed: int, data_seed: int, device: str) -> dict:
    if arch not in ARCHITECTURES:
        raise InterpretError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    if str(data) == "synthetic":
        data_spec = {"spec": "synthetic", "subjects": int(subjects), "seed": int(data_seed)}
    else:
        data_spec = {"spec": str(Path(data).expanduser().resolve())}
    return {
        "arch": arch,
        "classes": None,
        "data": data_spec,
        "protocol": protocol,
        "size": 99,
        "input": input_spec(arch).to_dict(),
        "split": {"kind": split, "folds": int(folds), "fold": int(fold), "seed": int(seed)},
        "recipe": asdict(recipe),
        "seed": int(seed),
        "device": device,
        "epochs_run": 0,
        "package_version": __version__,
    }


def prepare(config: dict, classes=None) -> tuple[FaceSet, np.ndarray, np.ndarray]:
    """Load the run's data; fill in the resolved protocol and the classes (`classes` when the
    architecture fixes them, else the labelled ones). Returns the protocol-applied FaceSet, its
    split per row and class index per row (-1: unlabelled)."""
    faceset = run_faceset(config)
    if config["protocol"] == "auto":
        config["protocol"] = "paper" if is_sequence_data(faceset) else "frames"
    split = run_split(faceset, config)
    labelled = np.unique(faceset.emotion[faceset.emotion >= 0])
    if len(labelled) < 2:
        raise InterpretError(f"{config['data']['spec']}: training needs at least 2 emotion classes among "
                             f"labelled images, found {len(labelled)}")
    config["classes"] = list(classes) if classes else [faceset.emotions[i] for i in labelled]
    config["au_codes"] = [int(a) for a in faceset.au_codes]
    targets = class_targets(faceset, config["classes"])
    for part in ("train", "val", "test"):
        if not np.any((split == part) & (targets >= 0)):
            raise InterpretError(f"{config['data']['spec']}: the {part} split holds no labelled images "
                                 f"(split {config['split']}); use more subjects or fewer folds")
    return faceset, split, targets


def numeric_environment(device: torch.device) -> dict:
    """What bit-exact reproduction needs besides the seed: the same torch build, the same
    thread count and the same CPU kernels (or GPU); any of these changes the summation order."""
    return {"torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"}


#: A test split smaller than this gives an accuracy too noisy to read (one image = 3+ points).
MIN_TEST_IMAGES = 30


def data_warnings(faceset: FaceSet, split: np.ndarray, targets: np.ndarray, classes) -> list[str]:
    """What the reader assumed (`FaceSet.warnings`) and what makes the test figure weak."""
    warnings = list(faceset.warnings)
    test = targets[(split == "test") & (targets >= 0)]
    if len(test) < MIN_TEST_IMAGES:
        warnings.append(f"the test split holds only {len(test)} labelled images (< {MIN_TEST_IMAGES}): "
                        "its accuracy is very noisy")
    missing = [name for i, name in enumerate(classes) if not np.any(test == i)]
    if missing:
        warnings.append(f"no test image of class {', '.join(missing)}: its recall cannot be measured")
    return warnings


def describe_split(faceset: FaceSet, split: np.ndarray, targets: np.ndarray, config: dict) -> dict:
    """The split as metrics.json reports it, with image and subject counts of labelled rows."""
    kind = config["split"]["kind"]
    labelled = targets >= 0
    subjects = {part: set(faceset.subject[(split == part) & labelled]) for part in ("train", "val", "test")}
    out = dict(config["split"])
    out["subject_grouped"] = kind == "kfold"
    if kind == "kfold":
        out["description"] = (f"subject-grouped {config['split']['folds']}-fold: fold {config['split']['fold']} "
                              "is the test set, the next fold the validation set; no subject in two parts")
    elif kind == "usage":
        out["description"] = "the data's own partition: Training = train, PublicTest = validation, PrivateTest = test"
    else:
        out["description"] = ("paper split (subject-overlapping): random test and validation images; the same "
                              "subjects and near-duplicate frames appear in train and test, so accuracy is "
                              "optimistic")
    out["test_subjects_also_in_train"] = len(subjects["test"] & subjects["train"])
    out["counts"] = {part: {"images": int(((split == part) & labelled).sum()), "subjects": len(subjects[part])}
                     for part in ("train", "val", "test")}
    out["counts"]["unlabelled_images_not_trained"] = int((~labelled).sum())
    return out


# ---------------------------------------------------------------- checkpoints


def _comparable(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in ("epochs_run", "classes")}


def _snapshot(model: torch.nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _write_checkpoint(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _read_checkpoint(path: Path, config: dict, device: torch.device) -> dict | None:
    """The saved training state if `path` holds one for the same config, else None."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # an unreadable/foreign file is not resumed from, never trusted
        say(f"ignoring {path}: not a loadable training checkpoint ({type(err).__name__})")
        return None
    if not isinstance(state, dict) or _comparable(state.get("config", {})) != _comparable(config):
        say(f"ignoring {path}: it belongs to a different configuration; starting afresh")
        return None
    return state


# ---------------------------------------------------------------- the run


@distributed.entry
def train(data="synthetic", out="runs/run", arch: str = "zhu2019", recipe: str | None = None, epochs: int | None = None,
          folds: int = 10, fold: int = 0, split: str = "kfold", protocol: str = "auto", subjects: int = 40,
          seed: int = 0, device: str = "auto", data_seed: int | None = None, compile_model: bool = False,
          progress: bool = True, checkpoint_every: float = 30.0,
          on_epoch_end: Callable[[int, dict], None] | None = None, overwrite: bool = False,
          data_options: dict | None = None, valence_csv=None, sequence: dict | None = None,
          ferplus_mode: str | None = None, l2_convention: str | None = None, auxiliary=None,
          shuffle_labels: bool = False, lr: float | None = None) -> Path:
    """Train `arch` on `data` and write the run directory `out`; returns its path.

    `data_options`: reader keyword arguments recorded in the config's `data` (e.g.
    `{"landmarks": "auto"}` for landmark-box crops of data without landmark files).

    data: 'synthetic' (`subjects` identities generated with `data_seed`, default `seed`) or a
    dataset path. Early stopping on the validation subjects keeps the best-validation weights;
    the test split is scored once, at the end. `RUN/checkpoint.pt` is written after an epoch
    (not the last) when `checkpoint_every` seconds have passed since the last one (0: every
    epoch; the default spares sub-second GPU epochs ~0.5 GB writes each); a later
    call with the same configuration resumes from it. `on_epoch_end(epoch, history_row)` is
    called after each epoch (and its checkpoint). `compile_model` wraps the model in
    `torch.compile` (off by default: compile time exceeds the gain on short runs).

    The architecture's `interpret.systems.specs.TrainSpec` chooses the recipes (default: its
    `default_recipe`), labels, training transform, loss and any stage after training
    (`valence_csv`: a seed-000 valence CSV; `sequence`: wu2019's sequence options;
    `ferplus_mode`: train FER+ data in one of Microsoft's label modes; `l2_convention`: liu2019's
    penalty, 'keras' (default) or 'half').
    Under torchrun each process trains a shard with DistributedDataParallel at the recipe's
    global batch; rank 0 writes the files (`interpret.distributed` documents the seeding).
    `auxiliary(model, config, faceset, train_rows, device)` builds an extra training loss (see
    `train_epoch`; e.g. `interpret.planting.planting`) and records itself in `config`.
    `shuffle_labels` trains on emotion labels permuted across images (a negative control,
    `interpret.controls.shuffle_targets`); the test split is scored against the shuffled labels.
    `lr` replaces the recipe's (peak) learning rate; config.json records the recipe as used.
    """
    from interpret.systems.specs import infer, train_spec, train_transform

    out = Path(out)
    ranks = distributed.current()
    if ranks.is_main:
        claim_run_dir(out, overwrite)
    torch_device = distributed.local_device(resolve_device(device), ranks)
    progress = progress and ranks.is_main
    system = train_spec(arch, l2_convention)
    chosen = system.recipe(recipe, epochs)
    if lr is not None:
        chosen = replace(chosen, lr=float(lr))
    config = make_config(data, arch, chosen, folds, fold, split, protocol, subjects, seed,
                         seed if data_seed is None else data_seed, torch_device.type)
    config["data"].update(data_options or {})
    labels_config = system.labels_config(seed if data_seed is None else data_seed, valence_csv, ferplus_mode)
    if labels_config is not None:
        config["labels"] = labels_config
    if l2_convention is not None:
        config["l2_convention"] = l2_convention
    if system.configure is not None:
        config["sequence"] = system.configure(sequence)
    if ranks.active:
        config["distributed"] = {"world_size": ranks.world_size}
    faceset, split_of, targets = prepare(config, system.classes)
    if shuffle_labels:
        from interpret.controls import shuffle_targets

        targets = shuffle_targets(targets, seed)
        config["labels_shuffled"] = {"unit": "image", "seed": int(seed)}
    classes = config["classes"]
    warnings = data_warnings(faceset, split_of, targets, classes)
    for warning in warnings if ranks.is_main else ():
        say(f"warning: {warning}")
    train_rows = np.flatnonzero((split_of == "train") & (targets >= 0))
    val_rows = np.flatnonzero((split_of == "val") & (targets >= 0))
    test_rows = np.flatnonzero((split_of == "test") & (targets >= 0))

    pixels = torch.from_numpy(np.asarray(faceset.images)).to(torch_device)
    labels = torch.from_numpy(targets).to(torch_device)

    def part(rows):
        index = torch.from_numpy(rows).to(torch_device)
        return pixels[index], labels[index]

    loss_fn, soft = system.loss, None
    if (config.get("labels") or {}).get("kind") == "ferplus":  # FER+ soft label modes: (N, classes) targets
        from interpret.systems.labels import ferplus_training

        train_rows, soft, loss_fn = ferplus_training(faceset, train_rows, config, system.penalty)
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = part(train_rows), part(val_rows), part(test_rows)
    if soft is not None:
        y_train = torch.from_numpy(soft).to(torch_device)
    spec = input_spec(arch)
    transform = train_transform(chosen, spec)
    forward_eval = None if chosen.augmentation == "paper" else (lambda net, batch: infer(net, batch, spec))
    rank_batch = distributed.per_rank_batch(chosen.batch_size, ranks)
    steps_per_epoch = math.ceil(math.ceil(len(train_rows) / ranks.world_size) / rank_batch)
    total_steps = steps_per_epoch * chosen.epochs

    cuda_devices = [torch_device] if torch_device.type == "cuda" else []
    # cuDNN autotuning for training's fixed shapes, scoped: the settings are restored afterwards
    cudnn = (torch.backends.cudnn.flags(enabled=True, benchmark=True, deterministic=False,
                                        allow_tf32=torch.backends.cudnn.allow_tf32)
             if cuda_devices else contextlib.nullcontext())
    with torch.random.fork_rng(devices=cuda_devices), cudnn:
        torch.manual_seed(seed)
        model = build_model(arch, len(classes)).to(torch_device, memory_format=torch.channels_last)
        optimizer = make_optimizer(model, chosen, torch_device)
        generator = torch.Generator(device=torch_device)
        generator.manual_seed(seed + ranks.rank)
        if ranks.active:
            torch.manual_seed(seed + ranks.rank)
        wrapped = distributed.wrap(model, ranks, torch_device)
        forward = torch.compile(wrapped) if compile_model else wrapped
        extra_loss = auxiliary(model, config, faceset, train_rows, torch_device) if auxiliary else None

        history: list[dict] = []
        best = {"epoch": 0, "val_acc": -1.0, "val_loss": math.inf, "state_dict": _snapshot(model)}
        bad_epochs, start_epoch = 0, 0
        checkpoint_path = out / CHECKPOINT
        saved = _read_checkpoint(checkpoint_path, config, torch_device)
        if saved is not None:
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            saved.update(saved.get("ranks", [saved])[ranks.rank])
            generator.set_state(saved["generator"].cpu())
            torch.set_rng_state(saved["cpu_rng"].cpu())
            if cuda_devices and saved["cuda_rng"] is not None:
                torch.cuda.set_rng_state(saved["cuda_rng"].cpu(), torch_device)
            history, best, bad_epochs = saved["history"], saved["best"], saved["bad_epochs"]
            start_epoch = saved["epoch"]
            say(f"resuming {out} from its checkpoint after epoch {start_epoch}")

        last_saved = time.monotonic()
        for epoch in range(start_epoch + 1, chosen.epochs + 1):
            if bad_epochs >= chosen.patience:
                if progress:
                    say(f"early stop: validation accuracy has not improved for {bad_epochs} epochs")
                break
            began = time.perf_counter()
            with progress_bar(total=steps_per_epoch, desc=f"epoch {epoch}/{chosen.epochs}", leave=False,
                              enabled=progress) as bar:
                train_loss, train_acc = train_epoch(
                    forward, optimizer, x_train, y_train, generator, rank_batch,
                    lr_at=lambda step: learning_rate(chosen, step, total_steps),
                    first_step=(epoch - 1) * steps_per_epoch, bar=bar, transform=transform, loss_fn=loss_fn,
                    auxiliary=extra_loss,
                    order=distributed.epoch_order(len(x_train), seed, epoch, ranks, torch_device)
                    if ranks.active else None)
            if ranks.active:
                train_loss, train_acc = distributed.mean_over_ranks((train_loss, train_acc), ranks, torch_device)
                val_loss, val_acc = distributed.score_sharded(lambda x: predict(model, x, forward=forward_eval),
                                                              x_val, y_val, ranks)
            else:
                val_loss, val_acc = score(predict(forward, x_val, forward=forward_eval), y_val)
            row = {"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc, "val_loss": val_loss,
                   "val_acc": val_acc, "lr": optimizer.param_groups[0]["lr"],
                   "seconds": time.perf_counter() - began}
            history.append(row)
            if val_acc > best["val_acc"] or (val_acc == best["val_acc"] and val_loss < best["val_loss"]):
                best = {"epoch": epoch, "val_acc": val_acc, "val_loss": val_loss, "state_dict": _snapshot(model)}
                bad_epochs = 0
            else:
                bad_epochs += 1
            if progress:
                say(f"epoch {epoch:3d}  train loss {train_loss:.4f} acc {train_acc:.3f}  "
                           f"val loss {val_loss:.4f} acc {val_acc:.3f}  lr {row['lr']:.2e}  "
                           f"{row['seconds']:.1f} s" + ("  *" if best["epoch"] == epoch else ""))
            rank_states = distributed.gather({
                "generator": generator.get_state(), "cpu_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(torch_device) if cuda_devices else None}, ranks)
            if ranks.is_main and epoch < chosen.epochs and time.monotonic() - last_saved >= checkpoint_every:
                _write_checkpoint(checkpoint_path, {
                    "config": config, "epoch": epoch, "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": {"schedule": chosen.schedule, "step": epoch * steps_per_epoch,
                                  "total_steps": total_steps},
                    "generator": generator.get_state(), "cpu_rng": torch.get_rng_state(),
                    "cuda_rng": torch.cuda.get_rng_state(torch_device) if cuda_devices else None,
                    "best": best, "bad_epochs": bad_epochs, "history": history,
                    **({"ranks": rank_states} if ranks.active else {})})
                last_saved = time.monotonic()
            if on_epoch_end is not None:
                on_epoch_end(epoch, row)

        model.load_state_dict(best["state_dict"])
        if not ranks.is_main:
            return out
        test_logits = predict(model, x_test, forward=forward_eval)
        test_loss, _ = score(test_logits, y_test)
        predictions = test_logits.argmax(1).cpu().numpy()

    config["epochs_run"] = len(history)
    report = classification_report(targets[test_rows], predictions, targets[train_rows], classes)
    metrics = {
        "test_accuracy": report.pop("accuracy"),
        "test_loss": test_loss,
        "test_accuracy_interval": subject_bootstrap_interval(predictions == targets[test_rows],
                                                             faceset.subject[test_rows], seed=seed),
        "test_accuracy_interval_method": "95% percentile interval, 2,000 resamples of the test subjects",
        **report,
        "val_accuracy": best["val_acc"],
        "best_epoch": best["epoch"],
        "epochs_run": len(history),
        "stopped_early": len(history) < chosen.epochs,
        "protocol": config["protocol"],
        "split": describe_split(faceset, split_of, targets, config),
        "arch": arch,
        "recipe": chosen.name,
        "warnings": warnings,
        "environment": numeric_environment(torch_device),
    }
    if system.finish is not None:
        metrics.update(system.finish(model, config=config, out=out, faceset=faceset, split=split_of,
                                     targets=targets, device=torch_device, progress=progress))
    save_checkpoint(out / "model.pt", model, {
        "arch": arch, "classes": classes, "epoch": best["epoch"], "val_accuracy": best["val_acc"],
        "package_version": __version__})
    write_config(out, config)
    write_dataset(out, faceset, split_of, classes, config)
    write_history(out / "history.csv", history)
    write_json(out / "metrics.json", metrics)
    plot_curves(history, best["epoch"], out / "curves.png")
    grouped = "subject-grouped" if metrics["split"]["subject_grouped"] else "subject-overlapping"
    plot_confusion(report["confusion_matrix"], classes, out / "confusion.png",
                   f"test ({grouped}), accuracy {metrics['test_accuracy']:.3f}")
    checkpoint_path.unlink(missing_ok=True)
    if progress:
        say(f"test accuracy {metrics['test_accuracy']:.3f} ({grouped}; majority baseline "
                   f"{report['majority_baseline']['accuracy']:.3f}, chance {report['chance']:.3f}); "
                   f"best epoch {best['epoch']} of {len(history)}")
    return out


HISTORY_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds")


def write_history(path, history: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    write_text(path, buffer.getvalue())
