"""Source detection in mosaics (rule detect): completeness and purity against a simulated survey's truth, the
catalog's contract, stable ids, bad input named, and a plausible catalog from real SDSS frames."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from scipy.spatial import cKDTree

from pipeline.cli import main as cli
from pipeline.sim.survey import simulate_survey
from pipeline.steps import detect

from conftest import SHARED_DATA

SDSS = SHARED_DATA / "sdss-frames" / "001035-6-0017"
BANDS = list("ugriz")


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    out = tmp_path_factory.mktemp("detect") / "survey"
    simulate_survey({"preset": "sdss", "n_sources": 150, "seed": 7, "tile_size_px": 400}, out, workers=2)
    return out, pd.read_parquet(out / "sources.parquet")


def _files(out, bands=BANDS):
    return {b: sorted(str(p) for p in (out / "mosaics" / b).glob("*.fits")) for b in bands}


def _match(a, b, radius):
    dec0 = float(np.mean(b.dec))
    plane = lambda d: np.column_stack([d.ra * 3600 * np.cos(np.deg2rad(dec0)), d.dec * 3600])  # noqa: E731
    d, i = cKDTree(plane(b)).query(plane(a), distance_upper_bound=radius)
    return np.where(np.isfinite(d), i, -1)


@pytest.fixture(scope="module")
def detected(survey, tmp_path_factory):
    out, _ = survey
    path = tmp_path_factory.mktemp("detected") / "sources.parquet"
    cli(["detect", "--out", str(path), "--preview", str(path.with_suffix(".png")),
         *(f"--band={b}={out}/mosaics/{b}/*.fits" for b in BANDS)])  # fmt: skip
    return pd.read_parquet(path), json.loads(path.with_suffix(".json").read_text()), path


def test_catalog_contract_and_truth(survey, detected):
    _, truth = survey
    cat, summary, path = detected
    assert cat.object_id.dtype == np.int64 and cat.object_id.is_unique
    for col in ["ra", "dec", "ebv", *(f"mag_{b}" for b in BANDS), *(f"magerr_{b}" for b in BANDS), "is_star"]:
        assert col in cat, col
    assert summary["n_sources"] == len(cat) and path.with_suffix(".png").stat().st_size > 10_000
    assert 0.005 < cat.ebv.min() and cat.ebv.max() < 0.1
    # completeness of the true sources to r = 20 (2 mag above the 5-sigma depth), close pairs apart
    found = _match(truth, cat, 1.0) >= 0
    bright = truth.mag_true_r < 20
    assert found[bright].mean() > 0.9, found[bright].mean()
    # purity of the detections to r = 21
    real = _match(cat, truth, 1.0) >= 0
    sel = cat.mag_r < 21
    assert real[sel].mean() > 0.9, real[sel].mean()
    # Kron magnitudes of the matched sources to r = 19, and the stars found as stars
    idx = _match(cat, truth, 1.0)
    m, t = cat[idx >= 0].reset_index(drop=True), truth.iloc[idx[idx >= 0]].reset_index(drop=True)
    ok = t.mag_true_r < 19
    d = (m.mag_r - t.mag_true_r)[ok]
    assert abs(d.median()) < 0.1 and 1.4826 * (d - d.median()).abs().median() < 0.1
    stars = t.is_star.to_numpy()
    assert m.is_star.to_numpy()[stars & ok].mean() > 0.7 and m.is_star.to_numpy()[~stars & ok].mean() < 0.1


def test_ids_do_not_depend_on_the_order_of_the_tiles(survey, detected):
    """Ids come from positions: the tiles in another order give the same sources with the same ids (the stack's
    sums in another order move a position by far less than the 3.6 mas of an id's step, but may cross one)."""
    out, _ = survey
    cat, _, _ = detected
    files = {b: fs[::-1] for b, fs in _files(out).items()}
    other, _ = detect.detect_sources(files, with_ebv=False)
    assert len(other) == len(cat)
    assert np.mean(np.isin(other.object_id, cat.object_id)) > 0.95
    near = _match(other, cat, 0.001)
    assert (near >= 0).all()
    ids = detect.object_ids([10.0, 10.0, 359.9999999], [-5.0, -5.0, 89.9])
    assert len(set(ids)) == 3 and ids.dtype == np.int64


def test_bad_input_is_named(survey, tmp_path, capsys):
    out, _ = survey
    with pytest.raises(ValueError, match=r"detection band\(s\) \['y'\]"):
        detect.detect_sources(_files(out, ["g", "r"]), detect_bands=["y"])
    nowcs = tmp_path / "nowcs.fits"
    fits.PrimaryHDU(np.zeros((10, 10), np.float32)).writeto(nowcs)
    argv = ["detect", "--band", f"r={nowcs}", "--out", str(tmp_path / "s.parquet")]
    assert cli(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nowcs.fits: no image HDU with a celestial WCS" in err
    argv = ["detect", "--band", f"r={out}/mosaics/r/*.fits", "--zero-point-key", "PHOTZP"]
    argv += ["--out", str(tmp_path / "s.parquet")]
    assert cli(argv) == 1
    assert "tile-00.fits: none of the zero-point keywords ['PHOTZP']" in capsys.readouterr().err


@pytest.mark.skipif(not SDSS.exists(), reason="real SDSS frames not available")
def test_real_sdss_frames_give_a_plausible_catalog(tmp_path):
    """A circle of 2' radius in the field 1035-6-17: sources at the density and depth of SDSS imaging."""
    files = {b: sorted(str(p) for p in SDSS.glob(f"frame-{b}-*.fits*")) for b in ("g", "r", "i")}
    from astropy.wcs import WCS

    with fits.open(files["r"][0]) as hdul:
        ra, dec = WCS(hdul[0].header).all_pix2world(1024, 745, 0)
    cat, summary = detect.detect_sources(files, region=(float(ra), float(dec), 2.0 / 60), with_ebv=False)
    area = np.pi * 2.0**2  # arcmin^2
    density = len(cat) / area
    assert 1.5 < density < 20, density  # SDSS imaging: a few objects per arcmin^2 to r = 22.5
    assert 20.5 < np.nanmedian(cat.mag_r) < 23.5
    assert cat.mag_r.min() < 19 and summary["n_stars"] >= 1
    assert np.nanmedian(cat.magerr_r[(cat.mag_r > 21.5) & (cat.mag_r < 22.5)]) < 0.3
