"""Tests of the embedded simulated survey (small surveys, a few seconds in all)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from pipeline.sim.noise import mag_to_flux
from pipeline.sim.presets import SDSS, get_preset
from pipeline.sim.render import TRUNC_RE, moffat_stamp
from pipeline.sim.sed import ColourGrid, _ab_mags, galaxy_sed
from pipeline.sim.specz import mock_survey
from pipeline.simulate import main, simulate_survey

CFG = {"preset": "sdss", "n_sources": 150, "seed": 7, "tile_size_px": 400}


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim") / "survey"
    summary = simulate_survey(CFG, out)
    return out, summary


def _tiles(out, band):
    return sorted((out / "mosaics" / band).glob("tile-*.fits"))


def test_files_and_columns(survey):
    out, summary = survey
    assert summary["bands"] == ["u", "g", "r", "i", "z"]
    assert json.loads((out / "survey.json").read_text()) == summary
    for band in summary["bands"]:
        tiles = _tiles(out, band)
        assert len(tiles) >= 4
        with fits.open(tiles[0]) as hdul:
            h, data = hdul[0].header, hdul[0].data
        assert data.dtype == np.dtype(">f4")
        assert h["BUNIT"] == "nanomaggy" and h["MAGZERO"] == 22.5 and h["ZP"] == 22.5
        assert h["PSF_FWHM"] == SDSS.psf_fwhm_arcsec[band] and h["SKYSUB"] is True
        assert "CD1_1" in h and WCS(h).has_celestial
        assert "DATE" not in h
    nan_tiles = sum(np.isnan(fits.getdata(t)).any() for b in summary["bands"] for t in _tiles(out, b))
    assert nan_tiles >= 5
    df = pd.read_parquet(out / "sources.parquet")
    for col in ["object_id", "ra", "dec", "ebv", "z_true", "sed_type", "is_star"]:
        assert col in df
    for band in summary["bands"]:
        assert f"mag_{band}" in df and f"mag_true_{band}" in df
    assert df["object_id"].dtype == np.int64 and df["object_id"].is_unique
    assert df["is_star"].dtype == bool and 0 < df["is_star"].sum() < len(df)
    assert len(df) == CFG["n_sources"]
    assert 0.005 < df["ebv"].min() and df["ebv"].max() < 0.1 and df["ebv"].std() > 0
    assert (np.abs(df["ra"] - 185.0) < 0.2).all() and (np.abs(df["dec"] - 15.0) < 0.2).all()
    mgs = pd.read_parquet(out / "specz" / "mgs.parquet")
    gama = pd.read_parquet(out / "specz" / "gama.parquet")
    assert list(mgs.columns) == ["ra", "dec", "z", "zwarning"] and mgs["zwarning"].dtype.kind == "i"
    assert list(gama.columns) == ["RA", "DEC", "Z", "NQ"] and gama["NQ"].between(1, 4).all()
    assert len(mgs) > 0 and len(gama) > len(mgs)
    assert summary["specz"]["mgs"]["secure_values"] == [0]
    assert summary["specz"]["gama"]["secure_values"] == [3, 4]


def test_same_seed_identical_bytes(survey, tmp_path):
    out, _ = survey
    again = tmp_path / "again"
    simulate_survey(CFG, again)
    for rel in ["mosaics/r/tile-00.fits", "mosaics/u/tile-03.fits", "sources.parquet", "specz/gama.parquet"]:
        assert (out / rel).read_bytes() == (again / rel).read_bytes(), rel
    assert (out / "survey.json").read_bytes() == (again / "survey.json").read_bytes()


def test_bands_do_not_share_a_pixel_grid(survey):
    out, summary = survey
    wcs = {b: WCS(fits.getheader(_tiles(out, b)[0])) for b in summary["bands"]}
    corners = {b: w.pixel_to_world(np.array([0.0, 399.0]), np.array([0.0, 399.0])) for b, w in wcs.items()}
    angles = {b: np.degrees(np.arctan2(w.wcs.cd[1, 0], w.wcs.cd[1, 1])) for b, w in wcs.items()}
    bands = summary["bands"]
    for i, a in enumerate(bands):
        for b in bands[i + 1 :]:
            sep = corners[a].separation(corners[b]).arcsec
            assert sep.max() > 0.5 * SDSS.pixel_scale_arcsec, (a, b)
            assert abs(angles[a] - angles[b]) > 0.005, (a, b)


def _pixel_sum(out, band, ra, dec, radius_px):
    """Sum of the pixels within ``radius_px`` of a position, from the first tile holding the whole aperture."""
    for path in _tiles(out, band):
        with fits.open(path) as hdul:
            header, data = hdul[0].header, hdul[0].data.astype(float)
        x, y = WCS(header).world_to_pixel_values(ra, dec)
        r = int(np.ceil(radius_px))
        if r <= x < data.shape[1] - r - 1 and r <= y < data.shape[0] - r - 1:
            yy, xx = np.mgrid[: data.shape[0], : data.shape[1]]
            inside = (xx - x) ** 2 + (yy - y) ** 2 <= radius_px**2
            values = data[inside]
            if np.isnan(values).any():
                return None
            return values.sum(), inside.sum(), header
    return None


def test_aperture_flux_matches_catalog(survey):
    out, _ = survey
    df = pd.read_parquet(out / "sources.parquet")
    scale = SDSS.pixel_scale_arcsec
    reach = (
        np.where(df["is_star"], 0.0, TRUNC_RE * np.fmax(df["r_bulge_arcsec"], df["r_disk_arcsec"]).fillna(0.0)) / scale
        + 2.5 * 1.6 / scale
        + 2
    )
    xy = np.column_stack([df["ra"] * np.cos(np.radians(15.0)), df["dec"]]) * 3600 / scale
    checked = 0
    for band in ["g", "r", "i", "z"]:
        for i in np.flatnonzero((~df["is_star"]) & (df[f"mag_true_{band}"] < 19.5)):
            dist = np.hypot(*(xy - xy[i]).T)
            dist[i] = np.inf
            if (dist < reach[i] + reach).any():
                continue
            got = _pixel_sum(out, band, df["ra"][i], df["dec"][i], reach[i])
            if got is None:
                continue
            total, npix, h = got
            true = mag_to_flux(df[f"mag_true_{band}"][i])
            sigma = np.sqrt(npix * h["SKYSIG"] ** 2 + true / h["GAIN"])
            assert abs(total - true) < 5 * sigma, (band, i, total, true, sigma)
            checked += 1
    assert checked >= 5, checked


def test_sky_noise_matches_depth(survey):
    out, _ = survey
    df = pd.read_parquet(out / "sources.parquet")
    scale = SDSS.pixel_scale_arcsec
    for band in ["g", "r"]:
        with fits.open(_tiles(out, band)[0]) as hdul:
            header, data = hdul[0].header, hdul[0].data.astype(float)
        x, y = WCS(header).world_to_pixel_values(df["ra"], df["dec"])
        reach = TRUNC_RE * np.fmax(df["r_bulge_arcsec"], df["r_disk_arcsec"]).fillna(0.0) / scale + 12
        yy, xx = np.mgrid[: data.shape[0], : data.shape[1]]
        empty = np.isfinite(data)
        for xi, yi, ri in zip(x, y, reach, strict=True):
            empty &= (xx - xi) ** 2 + (yy - yi) ** 2 > ri**2
        assert empty.sum() > 10000
        fwhm_px = SDSS.psf_fwhm_arcsec[band] / scale
        n_eff = 1.0 / np.sum(moffat_stamp(fwhm_px, SDSS.moffat_beta) ** 2)
        expected = mag_to_flux(SDSS.depth_mag[band]) / (5 * np.sqrt(n_eff))
        measured = data[empty].std()
        assert abs(measured / expected - 1) < 0.1, (band, measured, expected)
        assert abs(header["SKYSIG"] / expected - 1) < 1e-6
        assert abs(np.mean(data[empty])) < 0.05 * expected


def test_elliptical_colours_follow_the_filters():
    grid = ColourGrid(SDSS.filters)
    z = np.array([0.0, 0.1, 0.2, 0.3])
    bulge, disk = grid.component_mags(np.zeros(4), z)
    g_r = bulge[:, 1] - bulge[:, 2]
    assert np.all(np.diff(g_r) > 0.1)  # the 4000 A break moves from g into r
    assert 0.6 < g_r[0] < 0.9  # red-sequence g - r at z = 0
    late = grid.component_mags(np.array([3.0]), np.array([0.0]))[1]
    assert late[0, 1] - late[0, 2] < g_r[0] - 0.3
    # The grid integrates the speclite curves the way speclite does.
    import astropy.units as u
    import speclite.filters

    wave, sed = galaxy_sed(0.0)
    wave_obs, flux = wave * 1.2, sed / 1.2
    filters = speclite.filters.load_filters("sdss2010-g", "sdss2010-r")
    ref = filters.get_ab_magnitudes(flux * u.erg / u.s / u.cm**2 / u.AA, wave_obs * u.AA)
    ours = [_ab_mags(wave_obs, flux, name) for name in ("sdss2010-g", "sdss2010-r")]
    assert abs((ours[0] - ours[1]) - (ref["sdss2010-g"][0] - ref["sdss2010-r"][0])) < 0.01
    assert abs(ours[0] - bulge[2, 1] - (ours[1] - bulge[2, 2])) < 0.01


def test_specz_flags_and_failures():
    rng = np.random.default_rng(3)
    n = 4000
    df = pd.DataFrame(
        {
            "ra": rng.uniform(184.9, 185.1, n),
            "dec": rng.uniform(14.9, 15.1, n),
            "mag_r": rng.uniform(14.0, 20.5, n),
            "z_true": rng.uniform(0.01, 0.35, n),
            "is_star": rng.uniform(size=n) < 0.1,
        }
    )
    df.loc[df["is_star"], "z_true"] = 0.0
    mgs, seen = mock_survey(SDSS.specz[0], df, rng, np.zeros(n, bool))
    gama, _ = mock_survey(SDSS.specz[1], df, rng, seen)
    assert list(mgs.columns) == ["ra", "dec", "z", "zwarning"]
    assert (df.loc[seen, "mag_r"] <= 17.77).all() and not df.loc[seen, "is_star"].any()
    bright_gal = (df["mag_r"] <= 17.77) & ~df["is_star"]
    assert 0.85 < seen.sum() / bright_gal.sum() < 0.95
    # Rows are sorted by observed RA: match each one to its truth by position.
    dra = np.abs(mgs["ra"].to_numpy()[:, None] - df.loc[seen, "ra"].to_numpy()[None, :])
    ddec = np.abs(mgs["dec"].to_numpy()[:, None] - df.loc[seen, "dec"].to_numpy()[None, :])
    truth = df.loc[seen, "z_true"].to_numpy()[np.argmin(dra + ddec, axis=1)]
    bad = np.abs(mgs["z"] - truth) > 0.05 * (1 + truth)
    insecure = mgs["zwarning"] != 0
    assert insecure.sum() > 5 and bad[insecure].mean() > 0.25 and bad[~insecure].mean() < 0.01
    assert list(gama.columns) == ["RA", "DEC", "Z", "NQ"]
    assert set(gama["NQ"]) == {1, 2, 3, 4}
    assert (gama["RA"] >= df["ra"].max() - 0.6 * (df["ra"].max() - df["ra"].min()) - 1e-3).all()
    stars = gama["Z"].abs() < 0.003
    assert stars.sum() > 10 and (gama.loc[stars, "NQ"] >= 3).mean() > 0.9


def test_unknown_preset_is_named(tmp_path):
    with pytest.raises(ValueError, match="'nope'"):
        simulate_survey({"preset": "nope", "n_sources": 10, "seed": 1}, tmp_path / "x")
    for name in ("cfhtls", "hsc"):
        assert len(get_preset(name).bands) == 5


def test_refuses_to_overwrite_a_different_survey(tmp_path):
    out = tmp_path / "s"
    simulate_survey({"preset": "sdss", "n_sources": 20, "seed": 1}, out)
    before = (out / "sources.parquet").read_bytes()
    with pytest.raises(FileExistsError, match="different simulated survey"):
        simulate_survey({"preset": "sdss", "n_sources": 20, "seed": 2}, out)
    assert (out / "sources.parquet").read_bytes() == before
    simulate_survey({"preset": "sdss", "n_sources": 20, "seed": 1}, out)  # the same survey may be rebuilt
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError):
        simulate_survey({"preset": "sdss", "n_sources": 20, "seed": 1}, tmp_path / "other")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_main_reads_config_and_overrides(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("simulation:\n  preset: sdss\n  n_sources: 5000\n  seed: 3\n")
    main(["--config", str(cfg), "--out", str(tmp_path / "s"), "--n-sources", "25"])
    summary = json.loads((tmp_path / "s" / "survey.json").read_text())
    assert summary["parameters"]["n_sources"] == 25 and summary["seed"] == 3
