"""Point-estimate metrics of photometric redshifts (paper Section 5.1), per fold and in bins, plus PDF quality.

Paper definitions, on dz = (z_phot - z_spec) / (1 + z_spec):

- ``sigma_mad`` = 1.4826 * median(|dz - median(dz)|)
- ``outlier_fraction`` = share of objects with |dz| >= T (T = 0.05 for SDSS, 0.15 otherwise)
- ``bias`` = mean(dz)

The RAIL/qp conventions (bias as the median, sigma_IQR, outliers beyond max(0.06, 3 sigma_IQR)) are reported
separately under ``rail`` so that nobody mistakes one set for the other. Fractions are plain numbers.

``photoz evaluate`` (:mod:`pipeline.steps.evaluate`) writes them for a predictions file.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

METRICS = ("sigma_mad", "outlier_fraction", "bias")


def delta_z(z_phot, z_spec) -> np.ndarray:
    """Normalised residuals (z_phot - z_spec) / (1 + z_spec)."""
    z_phot = np.asarray(z_phot, dtype=float)
    z_spec = np.asarray(z_spec, dtype=float)
    return (z_phot - z_spec) / (1.0 + z_spec)


MAD_SCALE = 1.4826  # the MAD of a Gaussian times this is its standard deviation


def sigma_mad(dz) -> float:
    """1.4826 times the median absolute deviation from the median of ``dz`` (NaN for an empty set)."""
    dz = np.asarray(dz, dtype=float)
    if len(dz) == 0:
        return float("nan")
    return float(MAD_SCALE * np.median(np.abs(dz - np.median(dz))))


def point_metrics(dz, outlier_threshold: float) -> dict:
    """The paper's three metrics of a set of residuals ``dz``; an empty set gives NaN metrics and ``n`` = 0."""
    dz = np.asarray(dz, dtype=float)
    if len(dz) == 0:
        return {"sigma_mad": float("nan"), "outlier_fraction": float("nan"), "bias": float("nan"), "n": 0}
    return {
        "sigma_mad": sigma_mad(dz),
        "outlier_fraction": float(np.mean(np.abs(dz) >= outlier_threshold)),
        "bias": float(np.mean(dz)),
        "n": int(len(dz)),
    }


def rail_metrics(dz) -> dict:
    """RAIL/qp point-estimate conventions, which differ from the paper's (see module docstring)."""
    dz = np.asarray(dz, dtype=float)
    q25, q75 = np.percentile(dz, [25, 75])
    sigma_iqr = (q75 - q25) / 1.349
    threshold = max(0.06, 3.0 * sigma_iqr)
    return {
        "bias_median": float(np.median(dz)),
        "sigma_iqr": float(sigma_iqr),
        "outlier_fraction_3sigma_iqr": float(np.mean(np.abs(dz) > threshold)),
        "outlier_threshold_3sigma_iqr": float(threshold),
    }


def equal_count_bins(values, n_bins: int) -> np.ndarray:
    """Bin index (0..n_bins-1) of each value such that the bins hold equal counts (to within one object).

    Ranks, not quantile edges, decide the bins, so ties never unbalance them.
    """
    values = np.asarray(values, dtype=float)
    order = np.argsort(values, kind="stable")
    ids = np.empty(len(values), dtype=np.int64)
    ids[order] = np.arange(len(values)) * n_bins // max(len(values), 1)
    return ids


def evaluation_sample(pred: pd.DataFrame, mag_column: str | None, mag_max: float | None) -> np.ndarray:
    """Rows (N,) that the metrics and comparisons use: all, or those with ``mag_column`` <= ``mag_max`` (the paper
    evaluates its deep surveys at i <= 24 while training on everything); a missing column is an error then."""
    if mag_max is None:
        return np.ones(len(pred), bool)
    if not mag_column or mag_column not in pred.columns:
        raise KeyError(f"evaluation.mag_max needs the magnitude column {mag_column!r} in the predictions")
    return pred[mag_column].to_numpy(float) <= mag_max


def add_sample_arguments(parser, verb: str) -> None:
    """The command-line options of ``photoz evaluate`` and ``photoz compare`` that pick and score their objects (the
    outlier threshold and the evaluation-only magnitude cut of :func:`evaluation_sample`), defaults the schema's."""
    from pipeline.core.config import schema_default

    parser.add_argument(
        "--outlier-threshold", type=float, default=schema_default("evaluation.outlier_threshold"),
        help="|dz| at or above: outlier",
    )  # fmt: skip
    parser.add_argument(
        "--mag-column", default=schema_default("survey.mag_column"),
        help="magnitude column of --mag-max (and of evaluate's binned table)",
    )  # fmt: skip
    parser.add_argument(
        "--mag-max", type=float, default=schema_default("evaluation.mag_max"),
        help=f"{verb} only objects with --mag-column <= this",
    )  # fmt: skip


def _fold_table(dz, folds, outlier_threshold) -> list[dict]:
    rows = []
    for f in np.unique(folds):
        rows.append({"fold": int(f), **point_metrics(dz[folds == f], outlier_threshold)})
    return rows


def binned_metrics(values, dz, folds, outlier_threshold: float, n_bins: int = 8, ids=None) -> list[dict]:
    """Metrics in ``n_bins`` equal-count bins of ``values``, with the standard deviation between folds.

    Each bin holds its ``centre`` (median of the values in it), ``lo``/``hi`` (smallest and largest value), its
    count, the metrics over all its objects, and ``<metric>_fold_std``: the standard deviation (ddof=1) of the
    metric computed fold by fold inside the bin, the error bars of the paper's Fig. 2 (NaN with fewer than two
    folds). ``ids`` gives the bin of each object instead (e.g. bins drawn on another sample of the same objects).
    """
    values = np.asarray(values, dtype=float)
    ids = equal_count_bins(values, n_bins) if ids is None else np.asarray(ids)
    out = []
    for b in range(n_bins):
        sel = ids == b
        if not sel.any():
            continue
        v = values[sel]
        row = {"bin": b, "centre": float(np.median(v)), "lo": float(v.min()), "hi": float(v.max())}
        row.update(point_metrics(dz[sel], outlier_threshold))
        per_fold = _fold_table(dz[sel], folds[sel], outlier_threshold) if folds is not None else []
        for m in METRICS:
            vals = np.array([r[m] for r in per_fold], dtype=float)
            row[f"{m}_fold_std"] = float(np.std(vals, ddof=1)) if len(vals) >= 2 else float("nan")
        out.append(row)
    return out


def evaluate(
    pred: pd.DataFrame,
    pdf: np.ndarray | None,
    z_edges: np.ndarray | None,
    outlier_threshold: float,
    mag_column: str | None,
    n_bins: int = 8,
    mag_max: float | None = None,
) -> dict:
    """All metrics of one model's predictions.

    Parameters
    ----------
    pred : DataFrame
        Predictions with at least ``z_phot`` and ``z_spec``; ``fold`` and ``mag_column`` are used when present.
        Rows without a finite ``z_phot`` and ``z_spec`` are dropped (and counted in ``n_dropped``).
    pdf : ndarray, shape (N, n_bins_z), optional
        PDFs in the same row order as ``pred``; enables the ``pdf`` section.
    z_edges : ndarray, shape (n_bins_z + 1,), optional
        Redshift bin edges of ``pdf``.
    outlier_threshold : float
        |dz| at or above which an object is an outlier.
    mag_column : str, optional
        Magnitude column for the binned table; skipped when absent from ``pred``.
    n_bins : int
        Number of equal-count bins for the binned tables.
    mag_max : float, optional
        Evaluate only the objects with ``mag_column`` <= ``mag_max`` (:func:`evaluation_sample`); the others are
        counted in ``n_cut``.

    Returns
    -------
    dict
        JSON-ready metrics (see module docstring and ``docs``); fractions are plain numbers. ``estimate`` says what
        ``z_phot`` is (the PDF median, or ``z_reg`` for a regression-only model).
    """
    for col in ("z_phot", "z_spec"):
        if col not in pred.columns:
            raise KeyError(f"predictions lack the column {col!r}")
    keep = evaluation_sample(pred, mag_column, mag_max)
    n_cut = int((~keep).sum())
    ok = np.isfinite(pred["z_phot"].to_numpy(float)) & np.isfinite(pred["z_spec"].to_numpy(float)) & keep
    n_dropped = int((~ok).sum()) - n_cut
    if n_dropped:
        logger.warning("dropping %d rows without a finite z_phot and z_spec", n_dropped)
    if not ok.any():
        raise ValueError("no object has a finite z_phot and z_spec")
    pred = pred.loc[ok]
    if pdf is not None:
        pdf = np.asarray(pdf)[ok]
    dz = delta_z(pred["z_phot"], pred["z_spec"])
    folds = pred["fold"].to_numpy() if "fold" in pred.columns else None

    result = {**point_metrics(dz, outlier_threshold), "outlier_threshold": float(outlier_threshold)}
    result["n_dropped"] = n_dropped
    result["n_cut"] = n_cut
    result["mag_max"] = mag_max
    result["estimate"] = str(pred["estimate"].iloc[0]) if "estimate" in pred.columns else "median"
    result["definitions"] = {
        "dz": "(z_phot - z_spec) / (1 + z_spec)",
        "sigma_mad": "1.4826 * median(|dz - median(dz)|)",
        "outlier_fraction": "fraction with |dz| >= outlier_threshold",
        "bias": "mean(dz)",
        "fold_std": "standard deviation (ddof=1) of the metric between folds",
    }
    result["rail"] = rail_metrics(dz)
    result["folds"] = _fold_table(dz, folds, outlier_threshold) if folds is not None else []
    result["binned"] = {"z_spec": binned_metrics(pred["z_spec"], dz, folds, outlier_threshold, n_bins)}
    if mag_column and mag_column in pred.columns:
        mag = pred[mag_column].to_numpy(float)
        good = np.isfinite(mag)
        f = folds[good] if folds is not None else None
        result["binned"]["mag"] = binned_metrics(mag[good], dz[good], f, outlier_threshold, n_bins)
        result["mag_column"] = mag_column
    elif mag_column:
        logger.warning("magnitude column %r not in predictions: no magnitude bins", mag_column)
    if "z_lo68" in pred.columns and "z_hi68" in pred.columns:
        zs = pred["z_spec"].to_numpy(float)
        inside = (zs >= pred["z_lo68"].to_numpy(float)) & (zs <= pred["z_hi68"].to_numpy(float))
        result["coverage_68_columns"] = float(np.mean(inside))
    if pdf is not None:
        from pipeline.core.pdf_metrics import pdf_quality

        result["pdf"] = pdf_quality(pdf, z_edges, pred["z_spec"].to_numpy(float))
    return result
