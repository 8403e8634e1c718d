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


def point_estimate_of(loss: dict) -> str:
    """What a model's ``z_phot`` is: ``"z_reg"`` for a regression-only model (classification weight 0, so its
    softmax head was never trained: paper Appendix A), else ``"median"``, the median of its PDF (Sec. 5.1)."""
    return "z_reg" if loss.get("classification", 1.0) == 0 else "median"


def delta_pdf(z: np.ndarray, z_edges: np.ndarray) -> np.ndarray:
    """PDFs (N, n_bins) holding all their probability in the bin of each ``z``: the PDF of a point estimate, for
    the PDF file of a regression-only model (values outside the grid go to its first or last bin)."""
    z = np.asarray(z, dtype=float)
    k = np.clip(np.searchsorted(z_edges, z, side="right") - 1, 0, len(z_edges) - 2)
    out = np.zeros((len(z), len(z_edges) - 1), np.float32)
    out[np.arange(len(z)), k] = 1.0
    return out
