"""A trained run applied to other data: a run directory whose model is copied and whose data is new.

AU-labelled data often has no emotion labels to train on (DISFA, BP4D, OpenFace / py-feat
output for any video). `probe_run` writes ``OUT/`` with the trained run's ``model.pt`` and a
``config.json`` whose `data` is the new spec (with its reader options, e.g. a DISFA presence
threshold or `landmarks`) and whose protocol is `frames` (every frame keeps its own labels);
`probe_of` names the source run. `cache`, `deconv`, `au-map`, `sanity` and `report` then run
on it unchanged. No image of the new data was seen in training, so its `split` is not used.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from interpret.errors import InterpretError, located
from interpret.io import atomic_path, sha256_file
from interpret.runs import read_config, run_faceset, write_config


def probe_run(run, data: str, out, options: dict | None = None) -> Path:
    """Write the probe run directory `out` for trained run `run` on `data`; returns its path."""
    run, out = Path(run), Path(out)
    config = read_config(run)
    model = run / "model.pt"
    if not model.is_file():
        raise located(model, "missing: the run has no trained model")
    if out.resolve() == run.resolve():
        raise InterpretError(f"{out}: the probe must go to a new directory, not the trained run's")
    spec = data if data == "synthetic" else str(Path(data).expanduser().resolve())
    probe = dict(config)
    probe["data"] = {"spec": spec, **(options or {})}
    probe["protocol"] = "frames"
    probe["probe_of"] = {"run": str(run.resolve()), "model_sha256": sha256_file(model)}
    run_faceset(probe)  # read the data now: bad input fails before anything is written
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "model.pt") as tmp:
        shutil.copyfile(model, tmp)
    write_config(out, probe)
    return out
