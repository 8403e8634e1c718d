"""Photometry of cutouts (rule photometry): synthetic sources of known flux, the simulated survey's truth, the table's
layout and the errors of bad input."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest

from pipeline.core import photometry as phot
from pipeline.sim.survey import simulate_survey
from pipeline.steps import photometry as step
from pipeline.steps.cutouts import extract_to_hdf5
from pipeline.store import photometry as store
from pipeline.store.cubes import write_cutouts

SCALE = 0.396


def _gaussian(size, x0, y0, flux, sigma_px):
    yy, xx = np.mgrid[0:size, 0:size]
    return flux / (2 * np.pi * sigma_px**2) * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * sigma_px**2))


def _write(path, cubes, bands=("g", "r", "i"), noise=None):
    n = len(cubes)
    res = {"cubes": np.asarray(cubes, np.float32), "object_id": np.arange(n, dtype=np.int64) + 10}
    res.update(coverage=np.ones((n, len(bands)), np.float32), bands=list(bands))
    if noise is not None:
        res.update(
            pixel_noise=np.full((n, len(bands)), noise, np.float32), exposures=np.ones((n, len(bands)), np.float32)
        )
    write_cutouts(res, path, {"pixel_scale_arcsec": SCALE})
    return path


def test_known_fluxes_and_errors(tmp_path):
    """Gaussian sources of known fluxes and colours on white noise of known sigma: Kron fluxes to their errors,
    errors matching the scatter over many noise draws, a neighbour deblended, NaN magnitudes of negative fluxes."""
    rng = np.random.default_rng(0)
    size, sigma = 48, 0.05
    fluxes = np.array([20.0, 40.0, 60.0])
    cubes = []
    for k in range(40):
        c = (size - 1) / 2 + rng.uniform(-0.5, 0.5, 2)
        cube = np.stack([_gaussian(size, c[0], c[1], f, 2.0) for f in fluxes])
        if k % 2:  # a neighbour 5" to the east
            cube += np.stack([_gaussian(size, c[0] - 12.6, c[1], 0.5 * f, 2.0) for f in fluxes])
        cubes.append(cube + rng.normal(0, sigma, cube.shape))
    path = _write(tmp_path / "c.h5", cubes, noise=sigma)
    table, meta = step.measure_shard(path)
    assert list(table.columns) == store.columns(["g", "r", "i"])
    assert meta["correlation_from"] == "pixel_noise" and all(
        v == pytest.approx(1.0, abs=0.1) for v in meta["correlation"].values()
    )
    assert (table.flag & store.FLAGS["not_detected"] == 0).all()
    assert ((table.flag & store.FLAGS["blended"]) > 0).sum() >= 15  # the neighbours touch (deblended)
    for b, f in zip("gri", fluxes, strict=True):
        # Kron (2.5 first-moment radii, 3.13 sigma) holds 99.3 % of a Gaussian's light; the error of the median of
        # 40 is 0.8 % in g
        ratio = table[f"flux_{b}"] / f
        assert 0.97 < ratio.median() < 1.025, (b, ratio.median())
        pull = (table[f"flux_{b}"] - table[f"flux_{b}"].mean()) / table[f"fluxerr_{b}"]
        assert 0.6 < pull.std() < 1.5, (b, pull.std())
        # 3" aperture (1.5" = 3.8 px radius) of a sigma = 2 px Gaussian: 1 - exp(-r^2 / 2 sigma^2) = 0.84
        assert table[f"flux_aper_{b}"].median() / f == pytest.approx(1 - np.exp(-((1.5 / SCALE) ** 2) / 8), abs=0.02)
        assert np.allclose(table[f"mag_{b}"], 22.5 - 2.5 * np.log10(table[f"flux_{b}"]), atol=1e-4)
    # 2.5 first-moment radii of the Gaussian (3.13 sigma), on the ellipse of the smoothed detection image (photutils'
    # convolved_data: sigma 2.56 px) and widened by the noise
    assert 1.0 < table["kron_radius_arcsec"].median() / (2.5 * 1.2533 * 2.0 * SCALE) < 1.6
    # colours: g - r of 20 and 40: 0.753
    assert (table.mag_g - table.mag_r).median() == pytest.approx(2.5 * np.log10(2), abs=0.02)
    mag, err = phot.magnitudes(np.array([1.0, 0.0, -1.0]), np.array([0.1, 0.1, 0.1]), 22.5)
    assert mag[0] == 22.5 and np.isnan(mag[1:]).all() and np.isnan(err[1:]).all()


def test_an_empty_centre_is_flagged_and_measured_in_the_aperture(tmp_path):
    rng = np.random.default_rng(1)
    cube = rng.normal(0, 0.05, (3, 32, 32))
    cube[:, 4:9, 4:9] += 1.0  # something in a corner, nothing at the centre
    table, _ = step.measure_shard(_write(tmp_path / "e.h5", [cube]))
    assert table.flag[0] & store.FLAGS["not_detected"]
    assert np.isfinite(table.flux_r[0]) and table.flux_r[0] == table.flux_aper_r[0]
    assert np.isnan(table.kron_radius_arcsec[0])


def test_settings_of_the_config_and_of_the_command_line():
    """detect and photometry share one settings object: the schema's defaults are the command line's, a config
    section overrides them, and lengths in arcsec become pixels of the images' scale."""
    import argparse

    parser = argparse.ArgumentParser()
    phot.add_detect_arguments(parser)
    assert phot.settings_from_args(parser.parse_args([])) == phot.DetectSettings.from_config()
    settings = phot.settings_from_args(parser.parse_args(["--threshold", "2.5", "--aperture-diameter", "2"]))
    assert settings == phot.DetectSettings.from_config({"threshold": 2.5, "aperture_diameter_arcsec": 2.0})
    params = settings.in_pixels(0.5)
    assert params.threshold == 2.5 and params.aperture_radius_px == 2.0
    assert params.kernel_fwhm_px == settings.kernel_fwhm_arcsec / 0.5 and params.contrast == settings.deblend_contrast


def test_correlation_factor():
    rng = np.random.default_rng(2)
    white = rng.normal(size=(20, 40, 40))
    assert phot.correlation_factor(white) == pytest.approx(1.0, abs=0.1)
    from scipy.ndimage import uniform_filter

    smooth = uniform_filter(rng.normal(size=(20, 60, 60)), size=(1, 3, 3))[:, 10:-10, 10:-10]
    assert phot.correlation_factor(smooth) == pytest.approx(9.0, rel=0.15)  # a 3 x 3 box: variance / 9, sum x 9


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A small simulated SDSS-like survey like the demo's (galaxies r = 14-18.3) and 48-pixel cutouts of it."""
    out = tmp_path_factory.mktemp("phot")
    survey = out / "survey"
    simulate_survey({"preset": "sdss", "n_sources": 120, "seed": 42, "mag_range": [14.0, 18.3]}, survey, workers=2)
    truth = pd.read_parquet(survey / "sources.parquet")
    files = {b: sorted(str(p) for p in (survey / "mosaics" / b).glob("*.fits")) for b in "ugriz"}
    extract_to_hdf5(truth, files, out / "cut.h5", size=48, background="none")
    return out / "cut.h5", truth


def test_simulated_survey_against_truth(demo, tmp_path):
    path, truth = demo
    out = tmp_path / "phot.parquet"
    step.main(["--cutouts", str(path), "--out", str(out)])
    table, meta = store.read(out)
    assert meta["bands"] == list("ugriz") and meta["zero_point"] == 22.5 and meta["flags"] == store.FLAGS
    assert table.object_id.dtype == np.int64 and sorted(table.object_id) == sorted(truth.object_id)
    m = table.merge(truth, on="object_id", suffixes=("", "_true"))
    clean = m.flag == 0
    assert clean.sum() > 25
    for b in "gri":
        d = (m[f"mag_{b}"] - m[f"mag_true_{b}"])[clean]
        assert abs(d.median()) < 0.05, (b, d.median())
        assert 1.4826 * (d - d.median()).abs().median() < 0.08
    dc = ((m.mag_g - m.mag_r) - (m.mag_true_g - m.mag_true_r))[clean]
    assert abs(dc.median()) < 0.03
    assert (table.flux_u <= 0).sum() == table.mag_u.isna().sum() - table.flux_u.isna().sum()


def test_bad_input_is_named(demo, tmp_path):
    path, _ = demo
    with pytest.raises(ValueError, match=r"cut.h5: detection band\(s\) \['y'\]"):
        step.measure_shard(path, detect_bands=["y"])
    with h5py.File(path) as f:
        assert "pixel_noise" in f
