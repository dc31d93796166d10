"""The paper's preprocessing on batched tensors (REFERENCE §1), on whatever device the batch is.

Training: random rotation in (-15°, +15°), random horizontal flip, random 96x96 crop of the
99x99 face, per-image standardization. The geometric steps are one affine resampling
(`grid_sample`), so a batch costs one kernel on a GPU. Evaluation: the centre 96x96 crop and the
same standardization — deterministic, no interpolation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

CROP = 96
MAX_ROTATION = 15.0


def eval_offset(size: int) -> int:
    """Top-left corner of the centre crop inside a `size` x `size` face."""
    return (size - CROP) // 2


def standardize(x: torch.Tensor) -> torch.Tensor:
    """Subtract each image's mean, divide by its standard deviation."""
    flat = x.flatten(1)
    mean = flat.mean(1).view(-1, 1, 1, 1)
    std = flat.std(1).clamp_min(1e-6).view(-1, 1, 1, 1)
    return (x - mean) / std


def evaluate(images: torch.Tensor) -> torch.Tensor:
    """(B, S, S) uint8 faces -> (B, 1, 96, 96) float32 network input (centre crop)."""
    o = eval_offset(images.shape[-1])
    crop = images[:, None, o:o + CROP, o:o + CROP].float()
    return standardize(crop)


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(B, S, S) uint8 faces -> (B, 1, 96, 96) float32 randomly rotated, flipped, cropped.

    `generator` lives on the images' device and fixes every random choice.
    """
    batch, size = images.shape[0], images.shape[-1]
    device = images.device
    angle = (torch.rand(batch, generator=generator, device=device) * 2 - 1) * math.radians(MAX_ROTATION)
    flip = torch.rand(batch, generator=generator, device=device) < 0.5
    shift = torch.randint(0, size - CROP + 1, (batch, 2), generator=generator, device=device).float()
    cos, sin = torch.cos(angle), torch.sin(angle)
    sign = torch.where(flip, -1.0, 1.0)
    # input pixel = A (output pixel - c) + c + shift, with A = rotation @ diag(sign, 1)
    a = torch.stack([torch.stack([cos * sign, -sin], -1), torch.stack([sin * sign, cos], -1)], 1)
    centre = torch.full((batch, 2), (CROP - 1) / 2, device=device)
    b = centre + shift - (a @ centre[..., None])[..., 0]
    # to grid_sample's normalised coordinates (align_corners=False) of output and input
    theta = torch.cat([a * (CROP / size), ((2 / size) * (a @ centre[..., None])[..., 0] + (2 / size) * b
                                            + 1 / size - 1)[..., None]], 2)
    grid = F.affine_grid(theta, (batch, 1, CROP, CROP), align_corners=False)
    out = F.grid_sample(images[:, None].float(), grid, mode="bilinear", padding_mode="border",
                        align_corners=False)
    return standardize(out)
