"""Procedural grey faces with planted, graded action units: the embedded default data set."""

from interpret.synth.export import write_synthetic
from interpret.synth.sequences import generate_sequences, synthetic_faceset

__all__ = ["generate_sequences", "synthetic_faceset", "write_synthetic"]
