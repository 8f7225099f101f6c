"""decnet: the TTP rule store of a deception network."""

__version__ = "0.1.0"
