"""Tests of the embedded simulated survey (small surveys, a few seconds in all)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from pipeline.sim.catalog import component_fluxes, draw_catalog
from pipeline.sim.noise import mag_to_flux
from pipeline.sim.presets import HSC, SDSS, get_preset
from pipeline.sim.render import TRUNC_RE, moffat_stamp
from pipeline.sim.sed import ColourGrid, _ab_mags, bulge_to_total, extinction_coefficients, galaxy_sed
from pipeline.sim.specz import mock_survey
from pipeline.sim.survey import merge_shards, simulate_survey
from pipeline.steps.simulate import main

from conftest import SHARED_DATA

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


def _isolated_fluxes_agree(out, df, band, wanted, xy_px, reach) -> int:
    """Pixel sums of isolated sources agree with their true flux within 5 sigma; returns how many were checked."""
    checked = 0
    for i in wanted:
        dist = np.hypot(*(xy_px - xy_px[i]).T)
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
    return checked


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
        wanted = np.flatnonzero((~df["is_star"]) & (df[f"mag_true_{band}"] < 19.5))
        checked += _isolated_fluxes_agree(out, df, band, wanted, xy, reach)
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


def test_morphology_hints_at_the_type_without_naming_it():
    """Bulge-to-total scatters around its type relation, and inclined disks are redder: the colours of a galaxy depend
    on what its image shows, and its image does not tell its SED type exactly."""
    grid = ColourGrid(SDSS.filters)
    cat = draw_catalog(SDSS, 4000, 0.0, np.random.default_rng(1), 3.0, grid)
    late = cat[(cat.sed_type > 1.5) & (cat.z_true < 0.15)]
    residual = late.bulge_to_total - bulge_to_total(late.sed_type.to_numpy())
    assert 0.05 < residual[late.bulge_to_total > 0].std() < 0.2
    g_r = late.mag_true_g - late.mag_true_r
    # edge-on disks redder by ~0.1-0.2 in g - r (Masters et al. 2010), at the same type and redshift mix
    assert 0.08 < g_r[late.q_disk < 0.35].median() - g_r[late.q_disk > 0.8].median() < 0.3
    # the images' bulge + disk split adds up to the catalogue's true flux, and puts the dust in the disk
    (bulge_g, disk_g), (bulge_r, disk_r) = (component_fluxes(cat, SDSS, grid, band) for band in "gr")
    assert np.allclose(bulge_g + disk_g, mag_to_flux(cat.mag_true_g.to_numpy()), rtol=1e-9)
    both = (~cat.is_star & (cat.bulge_to_total > 0.05) & (cat.bulge_to_total < 0.9)).to_numpy()
    ratio = (disk_r[both] / disk_g[both]) * (bulge_g[both] / bulge_r[both])
    gradient = pd.Series(2.5 * np.log10(ratio))  # disk g - r minus bulge g - r
    q = cat.q_disk.to_numpy()[both]
    assert gradient[q < 0.35].median() - gradient[q > 0.8].median() > 0.08


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


def test_bad_input_is_named(tmp_path):
    with pytest.raises(ValueError, match="'nope'"):
        simulate_survey({"preset": "nope", "n_sources": 10, "seed": 1}, tmp_path / "x")
    assert len(get_preset("cfhtls").bands) == 5 and len(get_preset("hsc").bands) == 10
    base = {"preset": "sdss", "n_sources": 10, "seed": 1}
    with pytest.raises(ValueError, match="band 'r': unknown filter curve 'sdss2010-rr'"):
        simulate_survey({**base, "filters": {"r": "sdss2010-rr"}}, tmp_path / "x")
    with pytest.raises(ValueError, match=r"bands \['Q'\] are not in the sdss preset"):
        simulate_survey({**base, "filters": {"Q": "sdss2010-r"}}, tmp_path / "x")
    with pytest.raises(ValueError, match="bright limit 18.0 must be below faint limit 14.0"):
        simulate_survey({**base, "mag_range": [18.0, 14.0]}, tmp_path / "x")
    with pytest.raises(ValueError, match="outside the"):
        simulate_survey({**base, "mag_range": [14.0, 45.0]}, tmp_path / "x")
    assert not (tmp_path / "x").exists()


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


def test_overlapping_tiles_agree(survey):
    out, _ = survey
    a, b = (fits.open(p)[0] for p in _tiles(out, "r")[:2])
    dx = b.header["TILEX0"] - a.header["TILEX0"]
    assert b.header["TILEY0"] == a.header["TILEY0"] and 0 < dx < a.data.shape[1]
    np.testing.assert_array_equal(a.data[:, dx:], b.data[:, : a.data.shape[1] - dx])


def test_shards_and_workers_give_the_same_bytes(tmp_path):
    cfg = {"preset": "sdss", "n_sources": 40, "seed": 5, "tile_size_px": 200}
    whole = simulate_survey(cfg, tmp_path / "whole", workers=2)
    for k in range(3):
        simulate_survey(cfg, tmp_path / f"part{k}", workers=1, shard=f"{k}/3")
    merged = merge_shards([tmp_path / f"part{k}" for k in (2, 0, 1)], tmp_path / "merged")
    assert merged == whole
    files = sorted(p.relative_to(tmp_path / "whole") for p in (tmp_path / "whole").rglob("*") if p.is_file())
    assert len(files) > 20
    for rel in files:
        assert (tmp_path / "whole" / rel).read_bytes() == (tmp_path / "merged" / rel).read_bytes(), rel
    with pytest.raises(ValueError, match="shards 0..N-1"):
        merge_shards([tmp_path / "part0", tmp_path / "part1"], tmp_path / "m2")
    with pytest.raises(ValueError, match="need 0 <= K < N"):
        simulate_survey(cfg, tmp_path / "bad", shard="3/3")


# ---------------------------------------------------------------- the HSC-like preset: NIR grid, SIP, coverage

HSC_CFG = {"preset": "hsc", "n_sources": 220, "seed": 11, "tile_size_px": 300}


@pytest.fixture(scope="module")
def hsc(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim") / "hsc"
    return out, simulate_survey(HSC_CFG, out)


def test_hsc_bands_grids_and_coverage(hsc):
    out, summary = hsc
    assert summary["bands"] == ["u", "g", "r", "i", "z", "y", "Y", "J", "H", "Ks"]
    assert summary["filters"]["J"] == "vista_vircam_J" and summary["pixel_scale_arcsec"]["J"] == 0.34
    for band in ("i", "J"):
        h = fits.getheader(_tiles(out, band)[0])
        assert h["CTYPE1"] == "RA---TAN-SIP" and h["A_ORDER"] == 3 and "B_0_3" in h
        w = WCS(h)
        assert w.sip is not None
        assert abs(w.proj_plane_pixel_scales()[0].to_value("arcsec") - HSC.scale(band)) < 1e-6
    df = pd.read_parquet(out / "sources.parquet")
    from pipeline.sim.catalog import tan_project

    xi, _ = tan_project(df["ra"], df["dec"])
    side = summary["field_side_deg"]
    east = xi > -side / 2 + 0.7 * side
    assert east.sum() > 20 and df.loc[east, "mag_J"].isna().all() and df.loc[east, "mag_i"].notna().mean() > 0.8
    assert df.loc[~east & ~df["is_star"], "mag_J"].notna().all()
    # NIR pixels over the east part of the field are blank; optical ones are not.
    for band, blank in (("J", True), ("i", False)):
        frac = []
        for path in _tiles(out, band):
            with fits.open(path) as hdul:
                w, data = WCS(hdul[0].header), hdul[0].data
            x, y = w.all_world2pix(df.loc[east, "ra"], df.loc[east, "dec"], 0)
            ok = (x >= 0) & (x < data.shape[1] - 1) & (y >= 0) & (y < data.shape[0] - 1)
            frac.extend(np.isnan(data[np.round(y[ok]).astype(int), np.round(x[ok]).astype(int)]))
        assert (np.mean(frac) > 0.95) if blank else (np.mean(frac) < 0.1), band


def _centroid(data, x, y, sigma=1.5, half=6):
    """Gaussian-weighted centroid iterated to convergence (unbiased for a symmetric profile); None near NaNs/edges."""
    cx, cy = float(x), float(y)
    for _ in range(20):
        ix, iy = int(round(cx)), int(round(cy))
        if not (half <= ix < data.shape[1] - half and half <= iy < data.shape[0] - half):
            return None
        box = data[iy - half : iy + half + 1, ix - half : ix + half + 1]
        if not np.isfinite(box).all():
            return None
        yy, xx = np.mgrid[iy - half : iy + half + 1, ix - half : ix + half + 1]
        w = box * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2))
        if w.sum() <= 0:
            return None
        cx, cy = (w * xx).sum() / w.sum(), (w * yy).sum() / w.sum()
    return cx, cy


def test_sip_positions_are_recovered(hsc):
    """Sources sit where a SIP-aware reader says, and the distortion is large enough to matter."""
    out, _ = hsc
    df = pd.read_parquet(out / "sources.parquet")
    bright = df[(df["mag_true_i"] < 22.5) & ~df["in_pair"]]
    checked, errors, big = 0, [], 0
    for path in _tiles(out, "i"):
        with fits.open(path) as hdul:
            header, data = hdul[0].header, hdul[0].data.astype(float)
        w = WCS(header)
        x, y = w.all_world2pix(bright["ra"], bright["dec"], 0)
        x_tan, y_tan = w.wcs_world2pix(bright["ra"], bright["dec"], 0)  # SIP ignored
        for xi, yi, xt, yt in zip(x, y, x_tan, y_tan, strict=True):
            got = _centroid(data, xi, yi)
            if got is None:
                continue
            cx, cy = got
            # a faint disk's centroid is noisy to ~0.1 px: each within 0.3 px, typically within 0.1, while the
            # distortion SIP models moves sources by 0.6 px and more
            assert np.hypot(cx - xi, cy - yi) < 0.3, (path.name, cx, xi, cy, yi)
            errors.append(np.hypot(cx - xi, cy - yi))
            checked += 1
            if np.hypot(xt - xi, yt - yi) > 0.6:
                big += 1
                assert np.hypot(cx - xt, cy - yt) > 0.3
    assert checked >= 10 and big >= 2, (checked, big)
    assert np.median(errors) < 0.1, errors


def test_nir_aperture_flux_and_noise(hsc):
    out, _ = hsc
    df = pd.read_parquet(out / "sources.parquet")
    xy = np.column_stack([df["ra"] * np.cos(np.radians(15.0)), df["dec"]]) * 3600
    checked = 0
    for band in ("Y", "Ks"):
        scale = HSC.scale(band)
        reach = (
            np.where(df["is_star"], 0.0, TRUNC_RE * np.fmax(df["r_bulge_arcsec"], df["r_disk_arcsec"]).fillna(0.0))
            + 2.5 * HSC.psf_fwhm_arcsec[band]
        ) / scale + 2
        wanted = np.flatnonzero(df[f"mag_{band}"].notna() & (df[f"mag_true_{band}"] < 22.5))
        checked += _isolated_fluxes_agree(out, df, band, wanted, xy / scale, reach)
        # Sky noise far from every source matches the band's depth.
        with fits.open(_tiles(out, band)[-1]) as hdul:
            header, data = hdul[0].header, hdul[0].data.astype(float)
        x, y = WCS(header).all_world2pix(df["ra"], df["dec"], 0)
        yy, xx = np.mgrid[: data.shape[0], : data.shape[1]]
        empty = np.isfinite(data)
        for xi, yi, ri in zip(x, y, reach + 6, strict=True):
            empty &= (xx - xi) ** 2 + (yy - yi) ** 2 > ri**2
        assert empty.sum() > 3000
        n_eff = 1.0 / np.sum(moffat_stamp(HSC.psf_fwhm_arcsec[band] / scale, HSC.moffat_beta) ** 2)
        expected = mag_to_flux(HSC.depth_mag[band]) / (5 * np.sqrt(n_eff))
        assert abs(data[empty].std() / expected - 1) < 0.1, band
    assert checked >= 4, checked


def test_nir_colours_follow_the_filters():
    grid = ColourGrid(HSC.filters)
    k = {b: grid.bands.index(b) for b in HSC.bands}
    z = np.linspace(0.0, 1.2, 7)
    bulge, _ = grid.component_mags(np.zeros(len(z)), z)
    i_ks = bulge[:, k["i"]] - bulge[:, k["Ks"]]
    assert np.all(np.diff(i_ks) > 0)  # the 4000 A break and the old stars' spectrum move through i into z and y
    j_ks = bulge[0, k["J"]] - bulge[0, k["Ks"]]
    assert -0.3 < j_ks < 0.4  # J - K of an elliptical is ~0.9 Vega, ~0 AB
    late = grid.component_mags(np.array([3.0]), np.array([0.0]))[1]
    assert late[0, k["i"]] - late[0, k["Ks"]] < i_ks[0] - 0.3
    r = extinction_coefficients(HSC.filters)
    assert r["u"] > r["g"] > r["i"] > r["Y"] > r["J"] > r["H"] > r["Ks"] > 0.2


def test_cfhtls_runs(tmp_path):
    summary = simulate_survey({"preset": "cfhtls", "n_sources": 60, "seed": 2}, tmp_path / "c")
    assert summary["pixel_scale_arcsec"]["i"] == 0.186 and summary["sip_distortion"]
    df = pd.read_parquet(tmp_path / "c" / "sources.parquet")
    assert df.loc[~df["is_star"], "mag_true_i"].max() < 25.2


# ---------------------------------------------------------------- injection into the user's mosaics


def _synthetic_tile(path, zp=27.0, sigma=4.0, n=360, psf=True):
    rng = np.random.default_rng(0)
    h = fits.Header()
    h["CTYPE1"], h["CTYPE2"] = "RA---TAN-SIP", "DEC--TAN-SIP"
    h["CRVAL1"], h["CRVAL2"] = 150.0, 2.0
    h["CRPIX1"], h["CRPIX2"] = n / 2, n / 2
    h["CD1_1"], h["CD1_2"], h["CD2_1"], h["CD2_2"] = -0.25 / 3600, 0.0, 0.0, 0.25 / 3600
    h["A_ORDER"], h["B_ORDER"], h["A_2_0"], h["B_0_2"] = 2, 2, 4e-6, -3e-6
    h["MAGZERO"] = zp
    if psf:
        h["SEEING"] = 1.0
    data = rng.normal(0.0, sigma, (n, n)).astype(np.float32)
    data[10:20, 10:200] = np.nan
    fits.PrimaryHDU(data, h).writeto(path)
    return data


def test_injection_into_a_users_tile(tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    before = {b: _synthetic_tile(inp / f"img-{b}.fits") for b in ("g", "r")}
    cfg = {"preset": "sdss", "n_sources": 12, "seed": 3, "mag_range": [16.0, 17.5]}
    globs = {b: str(inp / f"img-{b}.fits") for b in ("r", "g")}
    from pipeline.sim.inject import inject_survey

    summary = inject_survey(cfg, globs, tmp_path / "out")
    assert summary["bands"] == ["g", "r"] and summary["zero_point"]["r"] == 27.0
    df = pd.read_parquet(tmp_path / "out" / "sources.parquet")
    assert len(df) == 12 and df["injected_r"].all() and not df["is_star"].any()
    specz = pd.read_parquet(tmp_path / "out" / "specz" / "injected.parquet")
    assert np.allclose(np.sort(specz["z"]), np.sort(df["z_true"]))
    for band in ("g", "r"):
        with fits.open(tmp_path / "out" / "mosaics" / band / f"img-{band}.fits") as hdul:
            h, after = hdul[0].header, hdul[0].data.astype(float)
        assert h["MAGZERO"] == 27.0 and h["INJECTD"] == 12 and h["A_2_0"] == 4e-6
        assert np.array_equal(np.isnan(after), np.isnan(before[band]))
        diff = after - before[band]
        w = WCS(h)
        x, y = w.all_world2pix(df["ra"], df["dec"], 0)
        expected = mag_to_flux(df[f"mag_true_{band}"]) * 10 ** (0.4 * (27.0 - 22.5))
        # All the injected light is in the image (no gain: no photon noise added), and each source sits where the
        # SIP WCS puts it.
        assert abs(np.nansum(diff) / expected.sum() - 1) < 0.03
        xy = np.column_stack([x, y])
        for k, (xi, yi) in enumerate(xy):
            others = np.delete(xy, k, axis=0)
            if np.hypot(*(others - xy[k]).T).min() < 25:
                continue  # a neighbour's light would pull the centroid
            got = _centroid(diff, xi, yi, sigma=2.0, half=8)
            if got is not None:
                assert np.hypot(got[0] - xi, got[1] - yi) < 0.2, (band, k, got, xi, yi)
    with pytest.raises(ValueError, match="no PSF FWHM"):
        _synthetic_tile(inp / "nopsf.fits", psf=False)
        inject_survey(cfg, {"r": str(inp / "nopsf.fits")}, tmp_path / "o2")
    with pytest.raises(ValueError, match=r"bands \['J'\] are not in the sdss preset"):
        inject_survey(cfg, {"J": str(inp / "img-r.fits")}, tmp_path / "o3")
    with pytest.raises(FileNotFoundError, match="no file matches"):
        inject_survey(cfg, {"r": str(inp / "none-*.fits")}, tmp_path / "o4")


SDSS_FRAMES = SHARED_DATA / "sdss-frames"


@pytest.mark.skipif(not SDSS_FRAMES.exists(), reason="real SDSS frames not present in ../shared/data")
def test_injection_into_a_real_sdss_frame(tmp_path):
    frame = sorted(SDSS_FRAMES.glob("*/frame-r-*.fits*"))[0]
    cfg = {"preset": "sdss", "n_sources": 15, "seed": 4, "mag_range": [17.0, 18.0]}
    main(["--out", str(tmp_path / "out"), "--preset", "sdss", "--n-sources", "15", "--seed", "4",
          "--inject-into", f"r={frame}", "--psf-fwhm", "1.3"])  # fmt: skip
    summary = json.loads((tmp_path / "out" / "survey.json").read_text())
    assert summary["zero_point"]["r"] == 22.5 and cfg["n_sources"] == summary["n_sources"]
    out_file = tmp_path / "out" / summary["tiles"]["r"][0]
    before = fits.getdata(frame).astype(float)
    after = fits.getdata(out_file).astype(float)
    df = pd.read_parquet(tmp_path / "out" / "sources.parquet")
    expected = mag_to_flux(df.loc[df["injected_r"], "mag_true_r"]).sum()
    assert df["injected_r"].mean() > 0.8
    assert abs(np.nansum(after - before) / expected - 1) < 0.05


def test_multi_epoch_survey_is_reproducible_and_calibrated(tmp_path):
    """Three epochs per band in ADU of their own zero points, on their own grids; the same seed gives the same
    bytes, sharded or not; an isolated bright star's flux in one epoch, by its zero point, is its true flux."""
    cfg = {**CFG, "n_sources": 60, "epochs": 3}
    a = simulate_survey(cfg, tmp_path / "a", workers=1)
    simulate_survey(cfg, tmp_path / "b", workers=2)
    assert a["parameters"]["epochs"] == 3 and set(a["epochs"]) == set(a["bands"])
    names = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert any("epoch-02-tile-" in str(n) for n in names)
    for rel in names:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    parts = [simulate_survey(cfg, tmp_path / f"p{k}", workers=1, shard=f"{k}/2") for k in range(2)]
    assert parts[0]["tiles"] != parts[1]["tiles"]
    merge_shards([tmp_path / "p0", tmp_path / "p1"], tmp_path / "m")
    for rel in names:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "m" / rel).read_bytes(), rel
    df = pd.read_parquet(tmp_path / "a" / "sources.parquet")
    star = df[df.is_star].sort_values("mag_true_r").iloc[0]
    checked = 0
    for e, meta in enumerate(a["epochs"]["r"]):
        if meta["trail"] or meta["n_cosmic_rays"]:
            continue  # an artefact may cross the star
        path = tmp_path / "a" / "mosaics" / "r" / f"epoch-{e:02d}-tile-00.fits"
        with fits.open(path) as hdul:
            h, img = hdul[0].header, hdul[0].data.astype(float)
        assert h["EPOCH"] == e and h["MAGZERO"] == meta["zero_point"] and h["BUNIT"] == "adu"
        x, y = WCS(h).all_world2pix(star.ra, star.dec, 0)
        yy, xx = np.mgrid[0 : img.shape[0], 0 : img.shape[1]]
        aperture = np.hypot(xx - x, yy - y) < 3 * meta["psf_fwhm_arcsec"] / 0.396
        if np.isnan(img[aperture]).any():
            continue
        flux = img[aperture].sum() * 10 ** (-0.4 * (meta["zero_point"] - 22.5))
        assert flux == pytest.approx(mag_to_flux(star.mag_true_r), rel=0.05), (e, star.mag_true_r)
        checked += 1
    assert checked
