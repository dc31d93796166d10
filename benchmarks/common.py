"""Shared by the benchmarks: resident memory sampled in a thread, and an untrained run of any FaceSet."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import torch


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Samples the resident set size every 5 ms in a thread; `.peak` after the block."""

    def __enter__(self):
        self.peak, self._stop = rss_bytes(), threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss_bytes())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


def untrained_run(folder: Path, faceset, protocol: str):
    """A run of `faceset` with an untrained (seeded) zhu2019: the weights' values do not change
    what the cache or au-map costs. Every fifth row is a test row, the rest train. A folder that
    already holds model.pt keeps it (the same seeded weights; rewriting would change its SHA-256,
    the cache's key). The data is stored in RUN/dataset.h5 and read back, as every command on a
    run reads it: the crops stay on disk."""
    from interpret.datastore import dataset_path, read_dataset, write_dataset
    from interpret.models import build_model
    from interpret.runs import Run, RunDataset, save_checkpoint, write_config

    classes = list(faceset.emotions)
    torch.manual_seed(0)
    model = build_model("zhu2019", len(classes)).eval()
    config = {"arch": "zhu2019", "classes": classes, "size": 99, "protocol": protocol,
              "data": {"spec": "synthetic", "benchmark_rows": len(faceset)}}
    if not (folder / "model.pt").is_file():
        save_checkpoint(folder / "model.pt", model, {})
    write_config(folder, config)
    split = np.where(np.arange(len(faceset)) % 5 == 0, "test", "train")
    if not dataset_path(folder).is_file():
        write_dataset(folder, faceset, split, classes, config)
    faceset, split = read_dataset(folder, config)
    return Run(path=folder, config=config, model=model, dataset=RunDataset(faceset, split, classes),
               device=torch.device("cpu"))
