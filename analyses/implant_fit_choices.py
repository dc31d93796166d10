"""Why `interpret implant` fits with the region term at weight 1: planted filters fitted with
several region weights on a trained run, each judged on new synthetic identities.

usage: python analyses/implant_fit_choices.py RUN [--fresh 60] [--weights 0,0.3,1]
For each weight of the peak-in-region term (0: the planting loss alone) the filters of every
usable AU are fitted as `implant` fits them (its epochs, batch, rate and seed), then scored on
`--fresh` identities the run never saw: how many pass the detector bar (AUROC >= 0.75), their
mean AUROC, and the share of AU-present images whose planted map peaks inside the AU's region.
Writes RUN/analyses/implant_fit_choices.md and prints it. The run's network is not changed.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from interpret import load_run, stats
from interpret.errors import InterpretError
from interpret.implant import FIT_EPOCHS, conv_inputs, feeding_conv, filter_maps, fit_filters, region_cells
from interpret.io import write_text
from interpret.layers import get_module
from interpret.planting import choose_maps, usable_aus
from interpret.truth import fresh_config, fresh_dataset
from interpret.verdict import DETECTOR_AUROC


def peaks_and_hits(features, inside, presence, weight, bias, conv, pre_activation):
    """Per image and AU the planted map's maximum, and whether it lies in the AU's region."""
    z = filter_maps(features, weight, bias, conv, pre_activation)
    hit = torch.gather(inside.flatten(2), 2, z.flatten(2).argmax(2)[..., None])[..., 0]
    return z.amax(dim=(2, 3)).numpy(), hit.numpy() & presence


def main(run_dir: str, fresh_subjects: int, weights: list[float]) -> str:
    run = load_run(run_dir, device="cpu")
    fresh_config(run, fresh_subjects)  # a run that cannot have new identities fails before the fits
    model, data = run.model.eval(), run.dataset
    seed = int(run.config["seed"])
    conv_name, pre_activation = feeding_conv(model, "relu3", data.rows([0]))
    conv = get_module(model, conv_name)
    fs = data.faceset
    split = np.asarray(data.split).astype(str)
    train_rows = np.flatnonzero(split == "train")
    presence_all = np.asarray(fs.au_present, dtype=bool)
    codes = usable_aus(presence_all[train_rows], [int(c) for c in fs.au_codes], None)
    columns = [list(fs.au_codes).index(c) for c in codes]
    maps = choose_maps(conv.out_channels, codes, seed)
    chosen = torch.as_tensor(list(maps.values()))
    features = conv_inputs(model, conv_name, data, np.arange(len(data)))
    with torch.no_grad():
        shape = tuple(conv(features[:1].float()).shape[-2:])
    inside = region_cells(data, np.arange(len(data)), codes, shape)
    fresh = fresh_dataset(run, fresh_subjects)
    fresh_features = conv_inputs(model, conv_name, fresh, np.arange(len(fresh)))
    fresh_inside = region_cells(fresh, np.arange(len(fresh)), codes, shape)
    fresh_presence = np.asarray(fresh.faceset.au_present, dtype=bool)[:, columns]
    presence = torch.from_numpy(presence_all[:, columns])
    rows = ["| region weight | verified on new faces | mean AUROC there | AU images peaking in region | fit s |",
            "|---|---|---|---|---|"]
    for weight in weights:
        began = time.perf_counter()
        w, b, _ = fit_filters(features, presence, inside, conv.weight[chosen], conv.bias[chosen], train_rows,
                              FIT_EPOCHS, seed, weight, pre_activation, conv.stride, conv.padding, conv.dilation)
        seconds = time.perf_counter() - began
        peaks, hits = peaks_and_hits(fresh_features, fresh_inside, fresh_presence, w, b, conv, pre_activation)
        aurocs = [float(stats.auroc(peaks[:, [k]], fresh_presence[:, k])[0]) for k in range(len(codes))]
        rows.append(f"| {weight:g} | {sum(a >= DETECTOR_AUROC for a in aurocs)} of {len(codes)} | "
                    f"{np.nanmean(aurocs):.3f} | {hits.sum() / fresh_presence.sum():.0%} | {seconds:.0f} |")
        print(rows[-1], flush=True)
    text = (f"Planted filters fitted on {run_dir} ({conv_name}, {len(codes)} AUs, {FIT_EPOCHS} epochs, seed {seed}), "
            f"judged on {fresh_subjects} new synthetic identities ({len(fresh)} images):\n\n" + "\n".join(rows) + "\n")
    write_text(Path(run_dir) / "analyses" / "implant_fit_choices.md", text)
    return text


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--fresh", type=int, default=60)
    parser.add_argument("--weights", default="0,0.3,1")
    args = parser.parse_args()
    try:
        print(main(args.run, args.fresh, [float(w) for w in args.weights.split(",")]))
    except InterpretError as error:  # one line, no traceback
        raise SystemExit(f"error: {error}")
