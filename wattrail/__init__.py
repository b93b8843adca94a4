"""The `wattrail` command line and the demo that wires the parts together."""

__version__ = "0.1.0"
