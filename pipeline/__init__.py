"""Image-based photometric redshifts: cutouts, spec-z matching, CNNs, ensembles and metrics."""

__version__ = "0.1.0"
