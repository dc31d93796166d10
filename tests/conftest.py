"""Shared test fixtures."""

from __future__ import annotations

import pytest
import torch

EMOTIONS7 = ["anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise"]


@pytest.fixture(scope="session")
def make_untrained_run(tmp_path_factory):
    """Factory: a run directory holding an untrained (seeded) network and a complete config.

    `make_untrained_run(name, arch="zhu2019", classes=EMOTIONS7, **config_overrides)`; the data
    spec is 2 synthetic subjects (2 folds), so `load_run` and `build_cache` work on it quickly.
    """
    from interpret.models import build_model, input_spec
    from interpret.runs import save_checkpoint, write_config

    root = tmp_path_factory.mktemp("untrained_runs")

    def make(name: str, arch: str = "zhu2019", classes=EMOTIONS7, seed: int = 0, **overrides):
        path = root / name
        torch.manual_seed(seed)
        model = build_model(arch, len(classes))
        save_checkpoint(path / "model.pt", model, {"arch": arch})
        config = {"arch": arch, "classes": list(classes),
                  "data": {"spec": "synthetic", "subjects": 2, "seed": 0}, "protocol": "paper", "size": 99,
                  "input": input_spec(arch).to_dict(),
                  "split": {"kind": "kfold", "folds": 2, "fold": 0, "seed": 0}, "seed": seed}
        config.update(overrides)
        write_config(path, config)
        return path

    return make
