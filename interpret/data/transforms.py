"""The paper's preprocessing on batched tensors (REFERENCE §1), on whatever device the batch is.

Training: random rotation in (-15°, +15°), random horizontal flip, random 96x96 crop of the
99x99 face, per-image standardization. The geometric steps are one affine resampling
(`grid_sample`), so a batch costs one kernel on a GPU. Evaluation: the centre 96x96 crop and the
same standardization — deterministic, no interpolation.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

CROP = 96
MAX_ROTATION = 15.0
NORMALIZATIONS = ("standardize", "unit", "symmetric")


@dataclass(frozen=True)
class InputSpec:
    """What a network takes: the face crop is resized to `resize` (if it differs), its centre
    `size` x `size` cut, replicated to `channels`, then normalized: 'standardize' (per image zero
    mean, unit std), 'unit' (x / 255) or 'symmetric' (x / 127.5 - 1, Keras' [-1, 1])."""

    size: int = CROP
    channels: int = 1
    normalize: str = "standardize"
    resize: int | None = None

    def __post_init__(self) -> None:
        if self.normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize must be one of {', '.join(NORMALIZATIONS)}, got {self.normalize!r}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict | None) -> "InputSpec":
        """The spec a config records; configs from before specs existed mean the paper's input."""
        return cls(**values) if values else PAPER_INPUT


#: The paper's input: the centre 96x96 of the 99x99 face, grey, standardized.
PAPER_INPUT = InputSpec()


def normalize(x: torch.Tensor, how: str) -> torch.Tensor:
    """Float pixels in [0, 255] -> network range, per `InputSpec.normalize`."""
    if how == "standardize":
        return standardize(x)
    if how == "unit":
        return x / 255.0
    if how == "symmetric":
        return x / 127.5 - 1.0
    raise ValueError(f"unknown normalization {how!r}")


def eval_offset(size: int) -> int:
    """Top-left corner of the centre crop inside a `size` x `size` face."""
    return (size - CROP) // 2


def standardize(x: torch.Tensor) -> torch.Tensor:
    """Subtract each image's mean, divide by its standard deviation."""
    flat = x.flatten(1)
    mean = flat.mean(1).view(-1, 1, 1, 1)
    std = flat.std(1).clamp_min(1e-6).view(-1, 1, 1, 1)
    return (x - mean) / std


def evaluate(images: torch.Tensor, spec: InputSpec = PAPER_INPUT) -> torch.Tensor:
    """(B, S, S) uint8 faces -> (B, C, size, size) float32 network input: resize (area) if the
    spec asks, centre crop, channel replication, normalization. The paper's spec is exactly the
    centre 96x96 crop, standardized: no interpolation."""
    x = images[:, None].float()
    if spec.resize is not None and spec.resize != x.shape[-1]:
        x = F.interpolate(x, size=(spec.resize, spec.resize), mode="area")
    side = x.shape[-1]
    if side < spec.size:
        raise ValueError(f"faces of {side}x{side} are smaller than the network input {spec.size}x{spec.size}")
    o = (side - spec.size) // 2
    x = x[..., o:o + spec.size, o:o + spec.size]
    return normalize(x, spec.normalize).expand(-1, spec.channels, -1, -1).contiguous()


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
