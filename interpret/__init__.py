"""interpret: what has a facial-expression CNN learned, and does it match FACS action units?"""

__version__ = "0.1.0"


def load_run(path, device: str = "cpu"):
    """Load a training run directory: ``.model`` (eval mode) and ``.dataset`` (fixed order)."""
    from interpret.runs import load_run as _load_run

    return _load_run(path, device=device)


__all__ = ["__version__", "load_run"]
