"""Point estimates of binned redshift PDFs: quantiles by linear interpolation of the CDF inside each bin."""

from __future__ import annotations

import numpy as np


def quantiles(pdf: np.ndarray, z_edges: np.ndarray, q) -> np.ndarray:
    """Quantiles (N, len(q)) of bin-probability PDFs, interpolating the CDF linearly inside each bin."""
    cdf = np.concatenate([np.zeros((len(pdf), 1)), np.cumsum(pdf, axis=1, dtype=np.float64)], axis=1)
    cdf /= cdf[:, -1:]
    q = np.atleast_1d(q)
    out = np.empty((len(pdf), len(q)))
    for j, qj in enumerate(q):
        # first edge where the CDF reaches q: the quantile lies in the bin ending there
        k = np.clip((cdf < qj).sum(axis=1), 1, len(z_edges) - 1)
        rows = np.arange(len(pdf))
        c0, c1 = cdf[rows, k - 1], cdf[rows, k]
        frac = np.where(c1 > c0, (qj - c0) / np.where(c1 > c0, c1 - c0, 1.0), 0.5)
        out[:, j] = z_edges[k - 1] + np.clip(frac, 0, 1) * (z_edges[k] - z_edges[k - 1])
    return out


def point_estimates(pdf: np.ndarray, z_edges: np.ndarray) -> dict:
    """``z_phot`` (median, the paper's choice), ``z_mode``, ``z_mean`` (bin centres) and the 68% interval."""
    centres = 0.5 * (z_edges[1:] + z_edges[:-1])
    norm = pdf / pdf.sum(axis=1, keepdims=True)
    q = quantiles(norm, z_edges, [0.5, 0.16, 0.84])
    return {
        "z_phot": q[:, 0],
        "z_mode": centres[np.argmax(norm, axis=1)],
        "z_mean": norm @ centres,
        "z_lo68": q[:, 1],
        "z_hi68": q[:, 2],
    }
