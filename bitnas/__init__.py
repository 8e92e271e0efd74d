"""bitnas: multi-objective search for compact binary and low-bit neural networks."""

__version__ = "0.1.0"
