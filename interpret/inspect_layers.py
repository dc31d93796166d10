"""`interpret layers`: the analysable layers of a run's model.

A layer is analysable when its module's output is a 4-D map (B, C, H, W) on the run's input:
convolutions, activations, pools, blocks. Each is listed with its output shape, its receptive
field (`interpret.receptive`), the projection path `deconv` takes for it, and its declared
number, if any.
"""

from __future__ import annotations

from dataclasses import dataclass

from interpret.layers import layer_shorthands, map_layers
from interpret.receptive import ReceptiveField, receptive_field


@dataclass(frozen=True)
class LayerInfo:
    name: str
    shape: tuple[int, int, int]
    field: ReceptiveField
    path: str
    number: int | None


def describe_layers(run) -> list[LayerInfo]:
    """Every analysable layer of `run.model`, in forward order."""
    from interpret.deconv import projection_path

    model = run.model
    x = run.dataset.images(0, 1).to(run.device)
    numbers = {name: number for number, name in layer_shorthands(model).items()}
    return [LayerInfo(name, shape, receptive_field(model, name, tuple(x.shape[1:])), projection_path(model, name),
                      numbers.get(name))
            for name, shape in map_layers(model, x)]


def format_layers(layers: list[LayerInfo]) -> str:
    """A plain-text table, one row per layer."""
    rows = [("layer", "number", "output (C x H x W)", "receptive field", "projection")]
    rows += [(info.name, "" if info.number is None else str(info.number), " x ".join(map(str, info.shape)),
              info.field.describe(), info.path) for info in layers]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)
