"""Known-answer tests of the point metrics, the binned tables and the PDF quality measures."""

import numpy as np
import pandas as pd
import pytest

from pipeline.core import io, metrics
from pipeline.core.pdf_metrics import crps_hist, pdf_quality, pit_values
from pipeline.steps import evaluate
from pipeline.store.pdfs import write_pdfs
from pipeline.store.predictions import load_predictions


def test_sigma_mad_known_values():
    dz = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
    assert metrics.sigma_mad(dz) == pytest.approx(1.4826)
    rng = np.random.default_rng(0)
    assert metrics.sigma_mad(rng.normal(0.3, 0.02, 200_000)) == pytest.approx(0.02, rel=0.01)


def test_outlier_boundary_is_inclusive_and_bias_is_mean():
    dz = np.array([0.15, -0.15, 0.1499, 0.0])
    m = metrics.point_metrics(dz, 0.15)
    assert m["outlier_fraction"] == 0.5
    assert m["bias"] == pytest.approx(np.mean(dz))
    assert m["n"] == 4


def test_delta_z_normalised():
    assert metrics.delta_z([1.1], [1.0])[0] == pytest.approx(0.05)


def test_binned_equal_counts_and_fold_std():
    rng = np.random.default_rng(1)
    n = 803
    values = rng.normal(size=n)
    dz = rng.normal(0, 0.01, n)
    folds = np.arange(n) % 5
    rows = metrics.binned_metrics(values, dz, folds, 0.05, n_bins=8)
    counts = [r["n"] for r in rows]
    assert len(rows) == 8 and sum(counts) == n and max(counts) - min(counts) <= 1
    assert all(r["lo"] <= r["centre"] <= r["hi"] for r in rows)
    assert all(np.isfinite(r["sigma_mad_fold_std"]) for r in rows)


def _gaussian_pdfs(z_true, centre, sigma, edges):
    cdf = 0.5 * (1 + _erf((edges[None, :] - centre[:, None]) / (np.sqrt(2) * sigma)))
    pdf = np.diff(cdf, axis=1)
    return pdf / pdf.sum(axis=1, keepdims=True)


def _erf(x):
    from scipy.special import erf

    return erf(x)


def test_pit_calibrated_vs_overconfident():
    rng = np.random.default_rng(12)
    n, sigma = 4000, 0.03
    edges = np.linspace(-0.5, 1.5, 2001)
    centre = rng.uniform(0.2, 0.8, n)
    z_true = centre + sigma * rng.normal(size=n)
    good = pdf_quality(_gaussian_pdfs(z_true, centre, sigma, edges), edges, z_true)
    bad = pdf_quality(_gaussian_pdfs(z_true, centre, sigma / 3, edges), edges, z_true)
    assert good["ks"]["p_value"] > 0.01
    assert bad["ks"]["p_value"] < 1e-6
    assert good["coverage_68"] == pytest.approx(0.68, abs=0.03)
    assert good["coverage_95"] == pytest.approx(0.95, abs=0.02)
    assert bad["coverage_68"] < 0.4
    assert sum(good["pit_hist"]["counts"]) == n


def test_pit_interpolates_within_bin():
    edges = np.array([0.0, 1.0, 2.0])
    pdf = np.array([[0.5, 0.5]])
    assert pit_values(pdf, edges, np.array([0.5]))[0] == pytest.approx(0.25)
    assert pit_values(pdf, edges, np.array([3.0]))[0] == 1.0


def test_crps_delta_like_pdf_near_zero_and_analytic():
    edges = np.linspace(0, 1, 1001)
    pdf = np.zeros((1, 1000))
    pdf[0, 500] = 1.0
    z = np.array([edges[500] + 0.0005])
    assert crps_hist(pdf, edges, z)[0] < 1e-3
    # A flat PDF on [0, 1] with the truth at 0.5: integral of F^2 + (1-F)^2 over halves = 1/12.
    flat = np.full((1, 1000), 1e-3)
    assert crps_hist(flat, edges, np.array([0.5]))[0] == pytest.approx(1 / 12, rel=1e-6)


def _write_predictions(tmp_path, n=500, seed=0):
    rng = np.random.default_rng(seed)
    zs = rng.uniform(0.05, 0.35, n)
    pred = pd.DataFrame(
        {
            "object_id": np.arange(n, dtype=np.int64),
            "z_spec": zs,
            "z_phot": zs + 0.01 * rng.normal(size=n),
            "fold": np.arange(n) % 5,
            "mag_r": rng.uniform(14, 17.8, n),
        }
    )
    pred["z_mode"] = pred["z_mean"] = pred["z_phot"]
    pred["z_lo68"], pred["z_hi68"] = pred["z_phot"] - 0.01, pred["z_phot"] + 0.01
    path = tmp_path / "model.parquet"
    io.write_parquet(pred, path)
    edges = np.linspace(0, 0.4, 81)
    pdf = _gaussian_pdfs(zs, pred["z_phot"].to_numpy(), 0.01, edges)
    perm = rng.permutation(n)  # the HDF5 rows need not follow the Parquet order
    write_pdfs(tmp_path / "model.pdf.hdf5", pred["object_id"].to_numpy()[perm], pdf[perm], edges)
    return path


def test_main_writes_json(tmp_path):
    path = _write_predictions(tmp_path)
    out = tmp_path / "m.json"
    evaluate.main(["--predictions", str(path), "--outlier-threshold", "0.05", "--out", str(out)])
    m = io.read_json(out)
    assert m["model"] == "model" and m["n"] == 500 and m["outlier_threshold"] == 0.05
    assert len(m["folds"]) == 5 and len(m["binned"]["mag"]) == 8 and len(m["binned"]["z_spec"]) == 8
    assert set(m["rail"]) >= {"bias_median", "sigma_iqr"}
    assert m["pdf"]["ks"]["p_value"] > 0.01  # aligned by object_id despite the shuffled HDF5 rows
    assert m["coverage_68_columns"] == pytest.approx(0.68, abs=0.06)


def test_missing_files_raise(tmp_path):
    with pytest.raises(FileNotFoundError, match="predictions not found"):
        evaluate.main(["--predictions", str(tmp_path / "x.parquet"), "--outlier-threshold", "0.05", "--out", "o"])
    path = _write_predictions(tmp_path)
    with pytest.raises(FileNotFoundError, match="PDF file not found"):
        load_predictions(path, tmp_path / "nope.pdf.h5")
