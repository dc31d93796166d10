"""interpret: what has a facial-expression CNN learned, and does it match FACS action units?

The Python entry points of every step (each is the function its CLI command wraps; `help()` on
any of them gives its contract). They are imported on first use, so `import interpret` stays light.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: name -> "module:attribute" of every documented entry point, in pipeline order.
ENTRY_POINTS = {
    "load_faceset": "interpret.data:load_faceset",
    "synthetic_faceset": "interpret.synth:synthetic_faceset",
    "train": "interpret.training:train",
    "import_model": "interpret.importing:import_model",
    "load_pretrained": "interpret.pretrained:load_pretrained",
    "load_run": "interpret.runs:load_run",
    "describe_layers": "interpret.inspect_layers:describe_layers",
    "run_cache": "interpret.cache:run_cache",
    "run_deconv": "interpret.deconv:run_deconv",
    "project": "interpret.deconv:project",
    "run_au_map": "interpret.aumap:run_au_map",
    "run_sanity": "interpret.sanity:run_sanity",
    "probe_run": "interpret.probe:probe_run",
    "predict_source": "interpret.predict_session:predict_source",
    "evaluate_videos": "interpret.evaluate_video:evaluate_videos",
    "write_report": "interpret.report:write_report",
    "run_demo": "interpret.demo:run_demo",
}


def __getattr__(name: str):
    if name not in ENTRY_POINTS:
        raise AttributeError(f"module 'interpret' has no attribute {name!r}")
    module, attribute = ENTRY_POINTS[name].split(":")
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *ENTRY_POINTS])


__all__ = ["__version__", *ENTRY_POINTS]
