"""Why `interpret implant` fits with the region term at weight 1: planted filters fitted with
several region weights on a trained run, each judged on new synthetic identities.

usage: python analyses/implant_fit_choices.py RUN [--fresh 60] [--weights 0,0.3,1] [--fit-subjects 0]
For each weight of the peak-in-region term (0: the planting loss alone) the filters of every
usable AU are fitted as `implant` fits them (its epochs, batch, rate and seed; with
`--fit-subjects N` on N new synthetic identities too, as `implant --fit-subjects N`), then scored
on `--fresh` identities the run never saw (after those): how many pass the detector bar (AUROC >=
0.75), their mean AUROC, and the share of AU-present images whose planted map peaks inside the
AU's region. Writes RUN/analyses/implant_fit_choices.md (`_fitN.md` with `--fit-subjects N`) and
prints it. The run's network is not changed.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from interpret import load_run, stats
from interpret.errors import InterpretError
from interpret.implant import FIT_EPOCHS, conv_inputs, filter_maps, fit_setup, region_cells
from interpret.io import write_text
from interpret.truth import fresh_config, fresh_dataset
from interpret.verdict import DETECTOR_AUROC


def peaks_and_hits(features, inside, presence, weight, bias, conv, pre_activation):
    """Per image and AU the planted map's maximum, and whether it lies in the AU's region."""
    z = filter_maps(features, weight, bias, conv, pre_activation)
    hit = torch.gather(inside.flatten(2), 2, z.flatten(2).argmax(2)[..., None])[..., 0]
    return z.amax(dim=(2, 3)).numpy(), hit.numpy() & presence


def main(run_dir: str, fresh_subjects: int, weights: list[float], fit_subjects: int = 0) -> str:
    run = load_run(run_dir, device="cpu")
    own = int(run.config["data"].get("subjects", 0))
    fresh_config(run, fresh_subjects)  # a run that cannot have new identities fails before the fits
    if fit_subjects < 0:
        raise InterpretError(f"--fit-subjects must be 0 or more, got {fit_subjects}")
    data = run.dataset
    seed = int(run.config["seed"])
    extra = fresh_dataset(run, fit_subjects, first=own, split="train") if fit_subjects else None
    setup = fit_setup(run.model.eval(), data, "relu3", None, seed, True, run.path, extra=extra)
    codes = setup.codes
    fresh = fresh_dataset(run, fresh_subjects, first=own + fit_subjects)
    every = np.arange(len(fresh))
    fresh_features = conv_inputs(run.model, setup.conv_name, fresh, every)
    fresh_inside = region_cells(fresh, every, codes, tuple(setup.inside.shape[-2:]))
    fresh_presence = np.asarray(fresh.faceset.au_present, dtype=bool)[:, setup.columns]
    rows = ["| region weight | verified on new faces | mean AUROC there | AU images peaking in region | fit s |",
            "|---|---|---|---|---|"]
    for weight in weights:
        began = time.perf_counter()
        w, b, _ = setup.fit(FIT_EPOCHS, seed, weight)
        seconds = time.perf_counter() - began
        peaks, hits = peaks_and_hits(fresh_features, fresh_inside, fresh_presence, w, b, setup.conv,
                                     setup.pre_activation)
        aurocs = [float(stats.auroc(peaks[:, [k]], fresh_presence[:, k])[0]) for k in range(len(codes))]
        rows.append(f"| {weight:g} | {sum(a >= DETECTOR_AUROC for a in aurocs)} of {len(codes)} | "
                    f"{np.nanmean(aurocs):.3f} | {hits.sum() / fresh_presence.sum():.0%} | {seconds:.0f} |")
        print(rows[-1], flush=True)
    text = (f"Planted filters fitted on {run_dir}"
            + (f" and {fit_subjects} new identities ({len(extra)} images)" if fit_subjects else "")
            + f" ({setup.conv_name}, {len(codes)} AUs, {FIT_EPOCHS} epochs, seed {seed}), judged on {fresh_subjects} "
            f"new synthetic identities ({len(fresh)} images):\n\n" + "\n".join(rows) + "\n")
    name = "implant_fit_choices" + (f"_fit{fit_subjects}" if fit_subjects else "")
    write_text(Path(run_dir) / "analyses" / f"{name}.md", text)
    return text


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--fresh", type=int, default=60)
    parser.add_argument("--weights", default="0,0.3,1")
    parser.add_argument("--fit-subjects", type=int, default=0)
    args = parser.parse_args()
    try:
        print(main(args.run, args.fresh, [float(w) for w in args.weights.split(",")], args.fit_subjects))
    except InterpretError as error:  # one line, no traceback
        raise SystemExit(f"error: {error}")
