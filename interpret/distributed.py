"""Several processes, one result: PyTorch's own distributed engine under `torchrun`.

`torchrun --nproc-per-node N -m interpret train ...` starts N processes; each finds its rank in
the environment torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK). `session()` (or the `entry`
decorator) opens the process group: gloo for CPU tensors, and NCCL for CUDA tensors when torch
sees a GPU (each process then uses `cuda:LOCAL_RANK`); it waits at a barrier when the work is
done and closes the group. Without those variables, or with WORLD_SIZE 1, nothing is
initialised and the code runs single-process exactly as before.

Determinism under N processes (documented contract):
- the epoch order is DistributedSampler's: one permutation of the rows from a CPU generator
  seeded `seed + epoch` (identical on every rank), padded by wrapping to a multiple of N; rank r
  takes positions r, r+N, ... So at a global batch B (B/N per rank), global step s covers
  exactly the rows of positions s*B .. s*B+B-1 of that permutation;
- the augmentation generator of rank r is seeded `seed + r`, and so is its global torch
  generator (dropout) after the model is built; the model starts from seed `seed` on every
  rank (DDP also broadcasts rank 0's weights);
- metrics are means over all ranks (`all_reduce`).
Rank 0 alone writes files (`is_main`), each atomically.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F

from interpret.errors import InterpretError

ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class Ranks:
    """This process's place among the processes of one job (rank 0 of 1 when alone)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        """True when several processes share the work."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files and prints progress."""
        return self.rank == 0


def launched() -> bool:
    """True when torchrun (or any launcher setting RANK/WORLD_SIZE/LOCAL_RANK) started several processes."""
    return all(key in os.environ for key in ENV) and int(os.environ["WORLD_SIZE"]) > 1


def current() -> Ranks:
    """The ranks of the open process group, or a lone rank 0 when none is open."""
    if not (dist.is_available() and dist.is_initialized()):
        return Ranks()
    rank = dist.get_rank()
    return Ranks(rank, dist.get_world_size(), int(os.environ.get("LOCAL_RANK", rank)))


@contextlib.contextmanager
def session():
    """Open the process group when `launched()` (and none is open yet), yield `current()`;
    barrier then close on success, close only on failure (the other ranks may be gone)."""
    if not launched() or dist.is_initialized():
        yield current()
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group(backend="cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo")
    try:
        yield current()
        dist.barrier()
    finally:
        dist.destroy_process_group()


def entry(func):
    """Decorator: run `func` inside `session()`, so one call works alone and under torchrun."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with session():
            return func(*args, **kwargs)

    return wrapper


def local_device(device: torch.device, ranks: Ranks) -> torch.device:
    """`cuda:LOCAL_RANK` for a CUDA run with several processes, else `device` unchanged."""
    if ranks.active and device.type == "cuda":
        return torch.device("cuda", ranks.local_rank)
    return device


def per_rank_batch(global_batch: int, ranks: Ranks) -> int:
    """The batch each rank takes so that N ranks together take `global_batch`."""
    if global_batch % ranks.world_size:
        raise InterpretError(f"the recipe's batch {global_batch} does not split over {ranks.world_size} "
                             "processes; use a process count that divides it")
    return global_batch // ranks.world_size


def epoch_order(n: int, seed: int, epoch: int, ranks: Ranks, device: torch.device) -> torch.Tensor:
    """This rank's rows for `epoch`, DistributedSampler's way (module docstring), on `device`."""
    generator = torch.Generator().manual_seed(seed + epoch)
    order = torch.randperm(n, generator=generator)
    padded = math.ceil(n / ranks.world_size) * ranks.world_size
    order = order.repeat(math.ceil(padded / max(n, 1)))[:padded]
    return order[ranks.rank::ranks.world_size].to(device)


def shard_range(n: int, index: int, count: int) -> tuple[int, int]:
    """Rows [start, stop) of contiguous shard `index` of `count` over n rows (sizes differ by <= 1)."""
    if not 0 <= index < count:
        raise InterpretError(f"shard {index} of {count} does not exist (shards are numbered 0..{count - 1})")
    return index * n // count, (index + 1) * n // count


def mean_over_ranks(values, ranks: Ranks, device: torch.device) -> list[float]:
    """Each value averaged over all ranks (all_reduce); the values themselves when alone."""
    if not ranks.active:
        return [float(v) for v in values]
    total = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return (total / ranks.world_size).tolist()


def score_sharded(logits_of, images: torch.Tensor, targets: torch.Tensor, ranks: Ranks) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of all rows, each rank scoring its contiguous shard;
    `logits_of(images)` gives float32 logits. Sums are reduced across ranks."""
    start, stop = shard_range(len(images), ranks.rank, ranks.world_size)
    sums = torch.zeros(2, dtype=torch.float64, device=images.device)
    if stop > start:
        logits = logits_of(images[start:stop])
        y = targets[start:stop]
        sums[0] = F.cross_entropy(logits, y, reduction="sum").double()
        sums[1] = (logits.argmax(1) == y).sum().double()
    dist.all_reduce(sums)
    return float(sums[0]) / len(images), float(sums[1]) / len(images)


def gather(obj, ranks: Ranks) -> list:
    """Every rank's `obj`, in rank order (a one-element list when alone)."""
    if not ranks.active:
        return [obj]
    out = [None] * ranks.world_size
    dist.all_gather_object(out, obj)
    return out


def wrap(model: torch.nn.Module, ranks: Ranks, device: torch.device) -> torch.nn.Module:
    """`model` in DistributedDataParallel when several ranks train, else itself."""
    if not ranks.active:
        return model
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
