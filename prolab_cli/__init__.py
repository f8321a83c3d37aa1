"""prolab: property-level label spaces from language descriptions (ProLab, ECCV 2024)."""

__version__ = "0.1.0"
