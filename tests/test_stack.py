"""Stacking on a simulated Stripe-82-like region: eight epochs per band with their own grids, seeing, sky and zero
points, satellite trails and cosmic rays (``pipeline.sim.epochs``). The noise of the stack, the clipping of an
artefact, the fluxes of isolated sources, and the single-tile choice on one exposure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from scipy.spatial import cKDTree

from pipeline.core.mosaics import StackOptions
from pipeline.sim.survey import simulate_survey
from pipeline.steps.cutouts import extract_cutouts

N_EPOCHS = 8
CFG = {"preset": "sdss", "n_sources": 120, "seed": 11, "tile_size_px": 400, "star_fraction": 0.3, "epochs": N_EPOCHS}
SCALE = 0.396
STACK = StackOptions(zero_point_keys=("MAGZERO",), exposure_keys=("EPOCH",))
BAND = "r"


@pytest.fixture(scope="module")
def region(tmp_path_factory):
    out = tmp_path_factory.mktemp("stripe82") / "survey"
    summary = simulate_survey(CFG, out, workers=2)
    truth = pd.read_parquet(out / "sources.parquet")
    return out, summary, truth


def _epoch_files(out, band, epochs):
    return sorted(str(p) for e in epochs for p in (out / "mosaics" / band).glob(f"epoch-{e:02d}-tile-*.fits"))


def _cut(out, ra, dec, epochs, size, options=STACK, band=BAND, background="none"):
    df = pd.DataFrame({"object_id": np.arange(len(ra)), "ra": ra, "dec": dec})
    return extract_cutouts(
        df, {band: _epoch_files(out, band, epochs)}, size=size, background=background, options=options
    )


def _empty_positions(summary, truth, n, clear_arcsec, seed=0):
    """Random positions inside the field with no true source within ``clear_arcsec``."""
    rng = np.random.default_rng(seed)
    ra0, dec0 = summary["field_centre_deg"]
    half = 0.8 * summary["field_side_deg"] / 2
    ra = ra0 + rng.uniform(-half, half, 20 * n) / np.cos(np.deg2rad(dec0))
    dec = dec0 + rng.uniform(-half, half, 20 * n)
    tree = cKDTree(_plane(truth.ra, truth.dec, dec0))
    far = np.isinf(tree.query(_plane(ra, dec, dec0), distance_upper_bound=clear_arcsec)[0])
    return ra[far][:n], dec[far][:n]


def _plane(ra, dec, dec0):
    """Positions in arcsec on a plane (small field): east and north."""
    return np.column_stack([np.asarray(ra) * 3600 * np.cos(np.deg2rad(dec0)), np.asarray(dec) * 3600])


def _sky_pixels(cubes, coverage_ok=True):
    """1.4826 MAD of the valid pixels of empty-sky cutouts (robust to the cosmic rays of single epochs)."""
    vals = cubes[:, 0][cubes[:, 0] != 0.0]
    return 1.4826 * np.median(np.abs(vals - np.median(vals)))


def test_epochs_differ_and_carry_artefacts(region):
    out, summary, _ = region
    epochs = summary["epochs"][BAND]
    assert len(epochs) == N_EPOCHS and summary["parameters"]["epochs"] == N_EPOCHS
    zps = {e["zero_point"] for es in summary["epochs"].values() for e in es}
    assert len(zps) == 5 * N_EPOCHS  # every exposure in its own units
    assert any(e["trail"] for es in summary["epochs"].values() for e in es)
    assert any(e["n_cosmic_rays"] for es in summary["epochs"].values() for e in es)
    fwhm = [e["psf_fwhm_arcsec"] for e in epochs]
    assert max(fwhm) / min(fwhm) > 1.2
    files = _epoch_files(out, BAND, range(N_EPOCHS))
    assert len(files) == 4 * N_EPOCHS  # 2 x 2 tiles per epoch
    crval = set()
    for path in files[::4]:
        h = fits.getheader(path)
        assert h["BUNIT"] == "adu" and "EPOCH" in h and "MAGZERO" in h
        crval.add((round(h["CRVAL1"], 6), round(h["CRVAL2"], 6), round(h["CD1_2"], 9)))
    assert len(crval) == N_EPOCHS  # each epoch on its own grid


def test_stack_noise_falls_as_one_over_sqrt_n(region):
    """The per-pixel noise of stacks of 1, 2, 4 and 8 epochs against the inverse-variance combination of the
    single-epoch noises (sigma / sqrt(N) for equal noises), measured on empty sky through the same resampling."""
    out, summary, truth = region
    ra, dec = _empty_positions(summary, truth, 60, clear_arcsec=12.0)
    assert len(ra) >= 30
    size = 24
    single = np.array([_sky_pixels(_cut(out, ra, dec, [e], size)["cubes"]) for e in range(N_EPOCHS)])
    rows = []
    for k in (1, 2, 4, 8):
        measured = _sky_pixels(_cut(out, ra, dec, range(k), size)["cubes"])
        predicted = 1.0 / np.sqrt((1.0 / single[:k] ** 2).sum())
        rows.append((k, measured, predicted, measured / predicted, measured / single[0] * np.sqrt(k)))
    print("\nN  stack sigma  predicted  ratio  sigma*sqrt(N)/sigma_1")
    for k, measured, predicted, ratio, flat in rows:
        print(f"{k}  {measured:.5f}      {predicted:.5f}    {ratio:.3f}  {flat:.3f}")
    assert all(row[3] == pytest.approx(1.0, abs=0.10) for row in rows), rows


def test_a_trail_in_one_epoch_is_clipped_away(region):
    out, summary, truth = region
    band, epoch = next((b, e["epoch"]) for b in summary["bands"] for e in summary["epochs"][b] if e["trail"])
    trail = summary["epochs"][band][epoch]["trail"]
    # Points along the trail, in the sky: through the epoch's tile that holds each point.
    points = []
    for t in np.linspace(-150, 150, 7):
        x, y = trail["x"] + t * np.cos(trail["angle"]), trail["y"] + t * np.sin(trail["angle"])
        for path in _epoch_files(out, band, [epoch]):
            h = fits.getheader(path)
            tx, ty = x - h["TILEX0"], y - h["TILEY0"]
            if 20 < tx < h["NAXIS1"] - 20 and 20 < ty < h["NAXIS2"] - 20:
                points.append(WCS(h).all_pix2world(tx, ty, 0))
                break
    ra, dec = np.array(points, dtype=float).T
    size = 24
    others = [e for e in range(N_EPOCHS) if e != epoch]
    clean = _cut(out, ra, dec, others, size, band=band)["cubes"][:, 0]
    clipped = _cut(out, ra, dec, range(N_EPOCHS), size, band=band)["cubes"][:, 0]
    unclipped = _cut(out, ra, dec, range(N_EPOCHS), size, band=band, options=StackOptions(
        clip_sigma=None, zero_point_keys=("MAGZERO",), exposure_keys=("EPOCH",)))["cubes"][:, 0]  # fmt: skip
    noise = _sky_pixels(clipped[:, None])
    # the trail crosses the centre of every cutout: averaged in, it stands out; clipped, the stack of all eight is
    # the stack of the seven clean epochs to a fraction of the noise
    centre = slice(size // 2 - 2, size // 2 + 2)
    assert (unclipped - clean)[:, centre, centre].mean() > 2.0 * noise
    assert np.abs((clipped - clean)[:, centre, centre]).mean() < 0.5 * noise


def test_isolated_source_fluxes_within_their_errors(region):
    """Aperture fluxes of isolated stars in the stack of eight epochs (zero points from 24 to 25, seeing from
    about 1 to 2 arcsec) against their true fluxes, with errors from empty apertures and photon noise."""
    out, summary, truth = region
    dec0 = summary["field_centre_deg"][1]
    tree = cKDTree(_plane(truth.ra, truth.dec, dec0))
    dist, _ = tree.query(_plane(truth.ra, truth.dec, dec0), k=2)
    ra0 = summary["field_centre_deg"][0]
    half = 0.8 * summary["field_side_deg"] / 2
    inside = (np.abs((truth.ra - ra0) * np.cos(np.deg2rad(dec0))) < half) & (np.abs(truth.dec - dec0) < half)
    stars = truth[truth.is_star & (dist[:, 1] > 12.0) & inside & (truth[f"mag_true_{BAND}"] < 21.0)]
    assert len(stars) >= 8
    size = 40
    c = (size - 1) / 2
    rr, cc = np.mgrid[0:size, 0:size]
    aperture = np.hypot(rr - c, cc - c) < 14  # 5.5": beyond the truncation of the worst PSF
    # the images are sky-subtracted: no local background, whose ring of faint neighbours would bias the fluxes low
    res = _cut(out, stars.ra.to_numpy(), stars.dec.to_numpy(), range(N_EPOCHS), size)
    flux = res["cubes"][:, 0][:, aperture].sum(axis=1)
    true = 10 ** (-0.4 * (stars[f"mag_true_{BAND}"].to_numpy() - 22.5))
    # the error of an aperture of sky: the scatter of empty apertures in the same stack
    ra, dec = _empty_positions(summary, truth, 60, clear_arcsec=14.0, seed=1)
    empty = _cut(out, ra, dec, range(N_EPOCHS), size)["cubes"][:, 0][:, aperture].sum(axis=1)
    sky_err = 1.4826 * np.median(np.abs(empty - np.median(empty)))
    # photon noise of the star in the weighted mean of the epochs: weights 1 / sigma_e^2, gains in e- per nmgy
    sig, gain = [], []
    for e in range(N_EPOCHS):
        h = fits.getheader(_epoch_files(out, BAND, [e])[0])
        adu = 10 ** (0.4 * (h["MAGZERO"] - 22.5))
        sig.append(h["SKYSIG"] / adu)
        gain.append(h["GAIN"] * adu)
    w = 1 / np.array(sig) ** 2
    photon = np.sqrt(true * (w**2 / np.array(gain)).sum() / w.sum() ** 2)
    error = np.hypot(sky_err, photon)
    pull = (flux - true) / error
    assert abs(np.median(pull)) < 0.5 and np.mean(np.abs(pull) < 3) > 0.85, pull
    # the bright ones (errors below 0.5 %): no bias from the clipping of their cores in the epochs of good seeing
    bright = error / true < 0.005
    assert bright.any() and np.all(np.abs(flux[bright] / true[bright] - 1) < 0.01), flux[bright] / true[bright]
    print(
        f"\n{len(stars)} stars: median pull {np.median(pull):+.2f}, rms pull {np.std(pull):.2f}, "
        f"flux / true of the bright ones {np.round(flux[bright] / true[bright], 4)}"
    )


def test_stack_equals_best_on_one_exposure(region):
    """Sources covered by one exposure (its four overlapping tiles: one exposure by EPOCH): stack = best."""
    out, summary, truth = region
    sample = truth.iloc[:30]
    ra, dec = sample.ra.to_numpy(), sample.dec.to_numpy()
    best = _cut(out, ra, dec, [3], 24, options=StackOptions(combine="best", zero_point_keys=("MAGZERO",)))
    stack = _cut(out, ra, dec, [3], 24)
    assert np.array_equal(best["cubes"], stack["cubes"]) and np.array_equal(best["coverage"], stack["coverage"])
    assert set(np.unique(stack["exposures"])) <= {0.0, 1.0}
