"""The one definition of the redshift bins, shared by training, ensembling and metrics."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ZGrid:
    """``n_bins`` equal-width bins on ``[z_min, z_max]``.

    Moments and point estimates use bin centres, never left edges.
    """

    z_min: float = 0.0
    z_max: float = 0.4
    n_bins: int = 180

    def __post_init__(self):
        if not self.z_max > self.z_min:
            raise ValueError(f"zgrid: z_max ({self.z_max}) must exceed z_min ({self.z_min})")
        if self.n_bins < 2:
            raise ValueError(f"zgrid: n_bins must be at least 2, got {self.n_bins}")

    @classmethod
    def from_config(cls, cfg: dict) -> ZGrid:
        return cls(float(cfg["z_min"]), float(cfg["z_max"]), int(cfg["n_bins"]))

    def as_dict(self) -> dict:
        return {"z_min": self.z_min, "z_max": self.z_max, "n_bins": self.n_bins}

    @property
    def edges(self) -> np.ndarray:
        return np.linspace(self.z_min, self.z_max, self.n_bins + 1)

    @property
    def centres(self) -> np.ndarray:
        e = self.edges
        return 0.5 * (e[1:] + e[:-1])

    @property
    def width(self) -> float:
        return (self.z_max - self.z_min) / self.n_bins

    def bin_index(self, z) -> np.ndarray:
        """Index of the bin holding each redshift; values outside the grid go to the first or last bin."""
        idx = np.floor((np.asarray(z, dtype=float) - self.z_min) / self.width).astype(np.int64)
        return np.clip(idx, 0, self.n_bins - 1)
