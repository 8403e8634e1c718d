"""Calibration and scoring of histogram PDFs: PIT, CRPS, interval coverage and uniformity tests.

A PDF is a row of ``pdf`` (N, n_bins) holding the probability of each bin of ``z_edges`` (n_bins + 1,); inside a
bin the density is flat, so the CDF is piecewise linear between the edges.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

#: Rows per block when working on (N, n_bins) arrays, so memory stays bounded for the full catalogue.
_BLOCK = 65536


def _cdf_at_edges(pdf: np.ndarray) -> np.ndarray:
    """CDF at each edge, shape (N, n_bins + 1), renormalised so that the last column is exactly 1."""
    cdf = np.concatenate([np.zeros((pdf.shape[0], 1)), np.cumsum(pdf, axis=1)], axis=1)
    total = cdf[:, -1:]
    return cdf / np.where(total > 0, total, 1.0)


def pit_values(pdf: np.ndarray, z_edges: np.ndarray, z_true: np.ndarray) -> np.ndarray:
    """Probability integral transform: the CDF of each PDF at its true redshift.

    Parameters
    ----------
    pdf : ndarray, shape (N, n_bins)
        Bin probabilities, each row summing to 1.
    z_edges : ndarray, shape (n_bins + 1,)
        Increasing bin edges.
    z_true : ndarray, shape (N,)
        True (spectroscopic) redshifts.

    Returns
    -------
    ndarray, shape (N,)
        PIT in [0, 1]; 0 below the grid and 1 above it.
    """
    pdf = np.asarray(pdf, dtype=float)
    z_edges = np.asarray(z_edges, dtype=float)
    z_true = np.asarray(z_true, dtype=float)
    out = np.empty(len(z_true))
    for s in range(0, len(z_true), _BLOCK):
        p, z = pdf[s : s + _BLOCK], z_true[s : s + _BLOCK]
        cdf = _cdf_at_edges(p)
        k = np.clip(np.searchsorted(z_edges, z, side="right") - 1, 0, len(z_edges) - 2)
        rows = np.arange(len(z))
        frac = np.clip((z - z_edges[k]) / (z_edges[k + 1] - z_edges[k]), 0.0, 1.0)
        out[s : s + _BLOCK] = cdf[rows, k] + frac * (cdf[rows, k + 1] - cdf[rows, k])
    return out


def crps_hist(pdf: np.ndarray, z_edges: np.ndarray, z_true: np.ndarray) -> np.ndarray:
    """Continuous ranked probability score of each histogram PDF, exact for a piecewise-linear CDF.

    CRPS = integral of (F(z) - H(z - z_true))^2 dz, in units of redshift; 0 for a perfect delta at the truth.

    Returns
    -------
    ndarray, shape (N,)
    """
    pdf = np.asarray(pdf, dtype=float)
    e = np.asarray(z_edges, dtype=float)
    z_true = np.asarray(z_true, dtype=float)
    out = np.empty(len(z_true))
    for s in range(0, len(z_true), _BLOCK):
        out[s : s + _BLOCK] = _crps_block(pdf[s : s + _BLOCK], e, z_true[s : s + _BLOCK])
    return out


def _crps_block(pdf, e, z):
    cdf = _cdf_at_edges(pdf)
    a, b = cdf[:, :-1], cdf[:, 1:]
    lo, hi = e[:-1][None, :], e[1:][None, :]
    zc = z[:, None]
    # Split each bin at the truth: below it the score integrates F^2, above it (1 - F)^2; F is linear in a bin,
    # so each piece is w * (f0^2 + f0 f1 + f1^2) / 3 with the end values f0, f1.
    cut = np.clip(zc, lo, hi)
    f_cut = a + (b - a) * (cut - lo) / (hi - lo)
    below = (cut - lo) * (a * a + a * f_cut + f_cut * f_cut) / 3.0
    ga, gb = 1.0 - f_cut, 1.0 - b
    above = (hi - cut) * (ga * ga + ga * gb + gb * gb) / 3.0
    score = (below + above).sum(axis=1)
    # Outside the grid F is 0 (below) or 1 (above), so a truth off the grid adds its distance to the grid.
    score += np.clip(e[0] - z, 0, None) + np.clip(z - e[-1], 0, None)
    return score


def anderson_darling_uniform(u: np.ndarray) -> float:
    """Anderson-Darling statistic A^2 of a sample against U(0, 1) (scipy's ``anderson`` has no uniform case)."""
    u = np.sort(np.clip(np.asarray(u, dtype=float), 1e-12, 1 - 1e-12))
    n = len(u)
    i = np.arange(1, n + 1)
    return float(-n - np.mean((2 * i - 1) * (np.log(u) + np.log1p(-u[::-1]))))


def pdf_quality(pdf: np.ndarray, z_edges: np.ndarray, z_true: np.ndarray, n_hist: int = 50) -> dict:
    """PIT histogram, uniformity tests, mean CRPS and central-interval coverage of a set of PDFs.

    Coverage uses the PIT: z_true lies in the central interval of probability p exactly when
    |PIT - 0.5| <= p / 2, so no quantiles need to be computed.
    """
    pit = pit_values(pdf, z_edges, z_true)
    counts, edges = np.histogram(pit, bins=n_hist, range=(0.0, 1.0))
    ks = stats.kstest(pit, "uniform")
    cvm = stats.cramervonmises(pit, "uniform")
    crps = crps_hist(pdf, z_edges, z_true)
    return {
        "n": int(len(pit)),
        "pit_hist": {"counts": counts.tolist(), "edges": edges.tolist()},
        "ks": {"statistic": float(ks.statistic), "p_value": float(ks.pvalue)},
        "cvm": {"statistic": float(cvm.statistic), "p_value": float(cvm.pvalue)},
        "ad": {"statistic": anderson_darling_uniform(pit)},
        "crps_mean": float(np.mean(crps)),
        "coverage_68": float(np.mean(np.abs(pit - 0.5) <= 0.34)),
        "coverage_95": float(np.mean(np.abs(pit - 0.5) <= 0.475)),
        "pit_outlier_fraction": float(np.mean((pit < 1e-4) | (pit > 1 - 1e-4))),
    }
