"""A layer's top-quantile activation thresholds (NetDissect's), streamed exactly over batches."""

from __future__ import annotations

import numpy as np
import torch

#: NetDissect's default top quantile of a map's activations over the dataset.
IOU_QUANTILE = 0.005


def top_k(quantile: float, n_images: int, map_shape) -> int:
    """How many of a map's values lie in its top `quantile` over `n_images` maps of `map_shape`."""
    return max(1, int(np.ceil(float(quantile) * int(n_images) * int(np.prod(map_shape)))))


def keep_top(values: torch.Tensor, k: int) -> torch.Tensor:
    """(C, <= k) each row's k largest of `values` (C, M), descending."""
    return values.topk(min(k, values.shape[1]), dim=1).values


class TopQuantile:
    """Each map's largest values over a stream of batches (B, C, h, w) of `n_images` images in all:
    the top k, k = ceil(quantile × n_images·h·w), whose k-th is the map's top-quantile threshold
    (NetDissect's, on the layer's grid). Exact; the top k of row shards' top ks is the whole's."""

    def __init__(self, n_images: int, quantile: float = IOU_QUANTILE):
        self.n_images, self.quantile = int(n_images), float(quantile)
        self.k: int | None = None
        self.values: torch.Tensor | None = None  # (C, <= k), descending

    def update(self, act: torch.Tensor) -> None:
        flat = act.detach().float().transpose(0, 1).reshape(act.shape[1], -1)
        if self.k is None:
            self.k = top_k(self.quantile, self.n_images, act.shape[2:])
        merged = flat if self.values is None else torch.cat([self.values, flat], dim=1)
        self.values = keep_top(merged, self.k)

    def thresholds(self) -> np.ndarray:
        """(C,) float64: the k-th largest value of each map."""
        if self.values is None or self.values.shape[1] < self.k:
            raise ValueError(f"fewer activations than the {self.n_images} images announced")
        return self.values[:, self.k - 1].cpu().numpy().astype(np.float64)
