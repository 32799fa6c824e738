"""rlhf: RLHF and alignment training on Ray."""

__version__ = "0.1.0"
