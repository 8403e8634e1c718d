"""Tests of the cutout step on small synthetic FITS tiles (and on real SDSS frames when they are present)."""

from __future__ import annotations

import argparse
import copy

import h5py
import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from pipeline.core import mosaics as cutouts_mosaics
from pipeline.core import resample
from pipeline.steps import cutouts
from pipeline.steps.cutouts import extract_cutouts, shard_of
from pipeline.store.cubes import write_cutouts

from conftest import SHARED_DATA

DATA = SHARED_DATA
SDSS = DATA / "sdss-frames" / "001035-6-0017"
RA0, DEC0 = 150.0, 2.0
SCALE = 0.396


def tile_wcs(ra, dec, shape, scale_arcsec=SCALE, rot_deg=0.0, crpix=None):
    """A TAN WCS with a CD matrix, rotated by ``rot_deg``, reference at ``crpix`` (1-based; default centre)."""
    ny, nx = shape
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = crpix if crpix is not None else [(nx + 1) / 2, (ny + 1) / 2]
    c, s = np.cos(np.deg2rad(rot_deg)), np.sin(np.deg2rad(rot_deg))
    d = scale_arcsec / 3600.0
    w.wcs.cd = np.array([[-d * c, d * s], [d * s, d * c]])
    return w


def render(wcs, shape, blobs, scale_arcsec):
    """Image in flux per pixel of Gaussian blobs ``(ra, dec, flux, sigma_arcsec)``, sampled at pixel centres."""
    ny, nx = shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    ra, dec = wcs.all_pix2world(xx, yy, 0)
    img = np.zeros(shape)
    for bra, bdec, flux, sigma in blobs:
        # Offsets on the tangent plane at the blob, in arcsec.
        dra = (ra - bra + 180) % 360 - 180
        dx = dra * np.cos(np.deg2rad(bdec)) * 3600
        dy = (dec - bdec) * 3600
        img += flux / (2 * np.pi * sigma**2) * np.exp(-(dx**2 + dy**2) / (2 * sigma**2)) * scale_arcsec**2
    return img


def write_tile(path, wcs, data, extension=False):
    header = wcs.to_header()
    header["BUNIT"] = "nanomaggy"
    if extension:
        hdul = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data.astype(np.float32), header=header)])
    else:
        hdul = fits.HDUList([fits.PrimaryHDU(data.astype(np.float32), header=header)])
    hdul.writeto(path)
    return str(path)


def sources(ra, dec):
    ra, dec = np.atleast_1d(ra), np.atleast_1d(dec)
    return pd.DataFrame({"object_id": np.arange(len(ra), dtype=np.int64) + 100, "ra": ra, "dec": dec})


def output_wcs(ra, dec, size, scale_arcsec=SCALE):
    """The grid the step promises: TAN at the source, north up, east left, source at the array centre."""
    return tile_wcs(ra, dec, (size, size), scale_arcsec)


@pytest.fixture
def rotated_tile(tmp_path):
    """A 200 x 180 tile rotated by 30 deg, reference pixel off-centre; a blob at the centre plus a +dec and a +ra
    companion of different fluxes."""
    shape = (200, 180)
    w = tile_wcs(RA0 + 0.001, DEC0 - 0.002, shape, rot_deg=30.0, crpix=[70.0, 120.0])
    off = 6.0 / 3600
    blobs = [
        (RA0, DEC0, 100.0, 1.0),
        (RA0, DEC0 + off, 50.0, 0.8),
        (RA0 + off / np.cos(np.deg2rad(DEC0)), DEC0, 25.0, 0.8),
    ]
    path = write_tile(tmp_path / "tile.fits", w, render(w, shape, blobs, SCALE))
    return path, w


def test_tan_grid_matches_astropy_wcs():
    size = 16
    xi, eta = resample.tan_grid(size, SCALE)
    ra, dec = resample.tan_to_sky([RA0, 359.999], [DEC0, -89.9], xi, eta)
    for k, (r0, d0) in enumerate([(RA0, DEC0), (359.999, -89.9)]):
        rr, cc = np.mgrid[0:size, 0:size]
        ref_ra, ref_dec = output_wcs(r0, d0, size).all_pix2world(cc, rr, 0)
        dra = (ra[k] - ref_ra + 180) % 360 - 180
        assert np.abs(dra * np.cos(np.deg2rad(dec[k]))).max() < 1e-10
        assert np.abs(dec[k] - ref_dec).max() < 1e-10


def test_centred_and_oriented(rotated_tile):
    path, _ = rotated_tile
    size = 48
    res = extract_cutouts(sources(RA0, DEC0), {"r": [path]}, size=size, background="none")
    img = res["cubes"][0, 0]
    assert res["cubes"].shape == (1, 1, size, size) and res["cubes"].dtype == np.float32
    assert res["coverage"][0, 0] == 1.0
    c = (size - 1) / 2
    # The main blob: centroid of the central region at the array centre.
    r, q = np.mgrid[0:size, 0:size]
    core = np.hypot(r - c, q - c) < 5
    w = img * core
    assert abs((w * r).sum() / w.sum() - c) < 0.05
    assert abs((w * q).sum() / w.sum() - c) < 0.05
    # 6 arcsec = 15.2 px: +dec lands above (higher row), +ra to the left (lower column).
    step = 6.0 / SCALE
    north = img[int(round(c + step)), int(round(c))]
    east = img[int(round(c)), int(round(c - step))]
    assert north > 0.5 * img.max() * 0.5 and east > 0.1 * img.max()
    assert img[int(round(c - step)), int(round(c))] < 1e-3 * img.max()  # nothing south
    assert img[int(round(c)), int(round(c + step))] < 1e-3 * img.max()  # nothing west


def test_matches_reproject_bilinear(rotated_tile):
    from reproject import reproject_interp

    path, w = rotated_tile
    size = 40
    res = extract_cutouts(sources(RA0, DEC0), {"g": [path]}, size=size, interpolation="bilinear", background="none")
    ref, _ = reproject_interp(path, output_wcs(RA0, DEC0, size), shape_out=(size, size), order="bilinear")
    ratio = (SCALE / SCALE) ** 2  # same pixel scale: the area factor is 1 up to the TAN distortion
    inner = slice(3, size - 3)
    diff = res["cubes"][0, 0][inner, inner] - ratio * ref[inner, inner]
    assert np.abs(diff).max() < 1e-3 * ref.max()


@pytest.mark.parametrize("in_scale", [SCALE / 2, SCALE * 2])
@pytest.mark.parametrize("method", ["bilinear", "lanczos3"])
def test_flux_conserved(tmp_path, in_scale, method):
    shape = (160, 160) if in_scale < SCALE else (60, 60)
    w = tile_wcs(RA0, DEC0, shape, scale_arcsec=in_scale, rot_deg=12.0)
    # Wide enough to be well sampled by the coarser grid (sigma = 2.5 of its pixels).
    sigma = 2.5 * max(in_scale, SCALE)
    img = render(w, shape, [(RA0, DEC0, 1000.0, sigma)], in_scale)
    path = write_tile(tmp_path / "t.fits", w, img)
    size = 48
    res = extract_cutouts(sources(RA0, DEC0), {"i": [path]}, size=size, interpolation=method, background="none")
    assert res["coverage"][0, 0] == 1.0
    assert res["cubes"][0, 0].sum(dtype=np.float64) == pytest.approx(img.sum(), rel=2e-3)


def test_background_local_removes_pedestal(tmp_path):
    shape = (120, 120)
    w = tile_wcs(RA0, DEC0, shape)
    img = render(w, shape, [(RA0, DEC0, 100.0, 1.0)], SCALE) + 3.0
    path = write_tile(tmp_path / "t.fits", w, img)
    res = extract_cutouts(sources(RA0, DEC0), {"r": [path]}, size=48, background="local")
    cube = res["cubes"][0, 0]
    assert abs(np.median(cube[:5, :5])) < 1e-4
    assert cube.sum() == pytest.approx(100.0, rel=2e-3)


def test_overlapping_tiles_and_extension_hdu(tmp_path):
    """A source on the edge of two overlapping tiles (one in an image extension) is fully covered from both."""
    shape = (100, 100)
    half = 100 * SCALE / 3600 / np.cos(np.deg2rad(DEC0))
    w1 = tile_wcs(RA0 + 0.35 * half, DEC0, shape)  # east tile: the source sits near its west edge
    w2 = tile_wcs(RA0 - 0.35 * half, DEC0, shape, rot_deg=5.0)
    blob = [(RA0, DEC0, 100.0, 1.0)]
    p1 = write_tile(tmp_path / "a.fits", w1, render(w1, shape, blob, SCALE))
    p2 = write_tile(tmp_path / "b.fits", w2, render(w2, shape, blob, SCALE), extension=True)
    for files in ([p1, p2], [p2, p1]):
        res = extract_cutouts(sources(RA0, DEC0), {"z": files}, size=64, background="none")
        assert res["coverage"][0, 0] == 1.0
        assert res["cubes"][0, 0].sum() == pytest.approx(100.0, rel=2e-3)
    one = extract_cutouts(sources(RA0, DEC0), {"z": [p1]}, size=64, background="none")
    assert 0.3 < one["coverage"][0, 0] < 0.9


def test_nan_lowers_coverage_and_outside_source(tmp_path, caplog):
    shape = (100, 100)
    w = tile_wcs(RA0, DEC0, shape)
    img = render(w, shape, [(RA0, DEC0, 100.0, 1.0)], SCALE)
    img[60:70, 20:40] = np.nan
    path = write_tile(tmp_path / "t.fits", w, img)
    res = extract_cutouts(sources([RA0, RA0 + 5.0], [DEC0, DEC0]), {"u": [path], "g": [path]}, size=48)
    assert res["bands"] == ["u", "g"]
    assert 0.5 < res["coverage"][0, 0] < 1.0
    assert np.all(np.isfinite(res["cubes"]))
    assert res["n_outside"] == 1
    assert np.all(res["coverage"][1] == 0) and np.all(res["cubes"][1] == 0)
    assert any("outside every mosaic" in r.message for r in caplog.records)


def test_shards_partition_the_sources():
    rng = np.random.default_rng(1)
    df = pd.DataFrame(
        {"object_id": np.arange(1000), "ra": rng.uniform(-5, 5, 1000) % 360, "dec": rng.uniform(-3, 3, 1000)}
    )
    for n in (1, 3, 4, 7):
        shard = shard_of(df, n)
        assert shard.min() == 0 and shard.max() == n - 1
        counts = np.bincount(shard, minlength=n)
        assert counts.max() - counts.min() <= 2
        assert np.array_equal(shard, shard_of(df.sample(frac=1, random_state=2).sort_index(), n))
    shard = shard_of(df, 4)
    # Compact: the RA range of a shard (across RA = 0) is far below the catalog's 10 deg.
    for k in range(4):
        ra = (df["ra"][shard == k] + 180) % 360 - 180
        assert ra.max() - ra.min() < 7


def test_shard_argument_selects_subset(rotated_tile):
    path, _ = rotated_tile
    df = sources(RA0 + np.linspace(-3e-3, 3e-3, 6), DEC0 + np.linspace(-3e-3, 3e-3, 6))
    ids = []
    for k in range(3):
        res = extract_cutouts(df, {"r": [path]}, size=8, shard=(k, 3))
        ids.extend(res["object_id"])
    assert sorted(ids) == sorted(df["object_id"])


def test_errors(tmp_path):
    df = sources(RA0, DEC0)
    bad = tmp_path / "bad.fits"
    bad.write_text("not a fits file")
    with pytest.raises(ValueError, match="bad.fits"):
        extract_cutouts(df, {"r": [str(bad)]})
    nowcs = tmp_path / "nowcs.fits"
    fits.PrimaryHDU(np.zeros((10, 10), np.float32)).writeto(nowcs)
    with pytest.raises(ValueError, match="nowcs.fits.*celestial WCS"):
        extract_cutouts(df, {"r": [str(nowcs)]})
    with pytest.raises(ValueError, match="'ra'"):
        extract_cutouts(df.drop(columns="ra"), {"r": [str(nowcs)]})
    out = tmp_path / "out.h5"
    with pytest.raises(ValueError, match="matches no file"):
        cutouts.main(["--sources", "x.parquet", "--band", f"r={tmp_path}/none*.fits", "--out", str(out)])
    src = tmp_path / "s.parquet"
    df.to_parquet(src)
    with pytest.raises(ValueError, match="celestial WCS"):
        cutouts.main(["--sources", str(src), "--band", f"r={nowcs}", "--out", str(out)])
    assert not out.exists() and not list(tmp_path.glob(".out.h5*"))


def test_main_writes_hdf5(rotated_tile, tmp_path):
    path, _ = rotated_tile
    src = tmp_path / "s.parquet"
    sources([RA0, RA0 + 1e-3], [DEC0, DEC0]).to_parquet(src)
    out = tmp_path / "cubes.h5"
    argv = ["--sources", str(src), "--band", f"r={path}", "--band", f"g={path}", "--size", "16", "--out", str(out)]
    cutouts.main(argv + ["--interpolation", "bilinear", "--shard", "0/1"])
    with h5py.File(out) as h5:
        assert h5["cubes"].shape == (2, 2, 16, 16) and h5["cubes"].chunks[0] == 2
        # Rows come in processing (sky) order: match them by object_id.
        assert sorted(h5["object_id"][:]) == [100, 101]
        assert h5["coverage"].shape == (2, 2)
        assert list(h5.attrs["bands"]) == ["g", "r"]
        assert h5.attrs["size"] == 16 and h5.attrs["pixel_scale_arcsec"] == SCALE
        assert h5.attrs["interpolation"] == "bilinear" and h5.attrs["background"] == "local"
        assert "flux per output pixel" in h5.attrs["flux_convention"]
        assert h5.attrs["units"] == "nanomaggy per output pixel"


def test_write_cutouts_empty(tmp_path):
    res = {"cubes": np.zeros((0, 2, 8, 8), np.float32), "object_id": np.zeros(0, np.int64)}
    res.update(coverage=np.zeros((0, 2), np.float32), bands=["g", "r"], n_outside=0)
    write_cutouts(res, tmp_path / "e.h5", {"pixel_scale_arcsec": SCALE})
    with h5py.File(tmp_path / "e.h5") as h5:
        assert h5["cubes"].shape == (0, 2, 8, 8)


@pytest.fixture(scope="module")
def sdss_cutouts():
    """Bright isolated peaks of the r frame, as sources, cut out in all five bands."""
    from scipy import ndimage

    files = {b: [str(SDSS / f"frame-{b}-001035-6-0017.fits.bz2")] for b in "ugriz"}
    with fits.open(files["r"][0]) as hdul:
        img = hdul[0].data.astype(np.float64)
        w = WCS(hdul[0].header)
    ny, nx = img.shape
    # Peaks of the smoothed image: cosmic rays (one sharp pixel, r only) fade, stars and galaxies stay.
    smooth = ndimage.gaussian_filter(img, 2.0)
    peaks = (smooth == ndimage.maximum_filter(smooth, size=81)) & (smooth > 2) & (img < 40)
    # No brighter pixel (a cosmic ray) in the stamp, and below saturation in every band (r < 40 nanomaggies).
    peaks &= ndimage.maximum_filter(img, size=81) == ndimage.maximum_filter(img, size=5)
    ys, xs = np.nonzero(peaks)
    keep = (xs > 150) & (xs < nx - 150) & (ys > 150) & (ys < ny - 150)
    order = np.argsort(smooth[ys[keep], xs[keep]])[::-1][:5]
    xs, ys = xs[keep][order], ys[keep][order]
    # Sub-pixel positions: the intensity-weighted centroid of a 7 x 7 box around each peak.
    box = np.mgrid[-3:4, -3:4]
    stamps = np.stack([img[y - 3 : y + 4, x - 3 : x + 4] for x, y in zip(xs, ys, strict=True)])
    stamps = np.clip(stamps, 0, None)
    dy, dx = ((stamps[:, None] * box).sum(axis=(2, 3)) / stamps.sum(axis=(1, 2))[:, None]).T
    ra, dec = w.all_pix2world(xs + dx, ys + dy, 0)
    return extract_cutouts(sources(ra, dec), files, size=64)


@pytest.mark.skipif(not SDSS.exists(), reason="real SDSS frames not available")
def test_sdss_frames(sdss_cutouts):
    res = sdss_cutouts
    assert res["bands"] == ["u", "g", "r", "i", "z"]
    assert len(res["object_id"]) >= 3
    assert np.all(res["coverage"] == 1.0)
    c = (64 - 1) / 2
    for cube in res["cubes"]:
        for b in (1, 2):  # g, r
            row, col = np.unravel_index(np.argmax(cube[b]), cube[b].shape)
            assert abs(row - c) <= 1 and abs(col - c) <= 1, (b, row, col)


def sip_wcs(shape, ra=RA0, dec=DEC0, scale_arcsec=SCALE):
    """A TAN-SIP WCS with strong 2nd and 3rd order distortion (about 2 px at the tile edge)."""
    ny, nx = shape
    d = scale_arcsec / 3600.0
    h = fits.Header()
    h.update(NAXIS=2, NAXIS1=nx, NAXIS2=ny, CTYPE1="RA---TAN-SIP", CTYPE2="DEC--TAN-SIP", CRVAL1=ra, CRVAL2=dec)
    h.update(CRPIX1=nx / 2 - 10.0, CRPIX2=ny / 2 + 7.0, CD1_1=-d, CD1_2=0.02 * d, CD2_1=0.02 * d, CD2_2=d)
    h.update(A_ORDER=3, B_ORDER=3, A_2_0=1e-4, A_0_2=-5e-5, A_1_1=8e-5, A_3_0=4e-7, A_1_2=-3e-7)
    h.update(B_2_0=-6e-5, B_0_2=1e-4, B_1_1=5e-5, B_0_3=3e-7, B_2_1=2e-7)
    return WCS(h)


def tpv_wcs(shape, ra=RA0, dec=DEC0, scale_arcsec=SCALE):
    """A TPV WCS (DECam/SCAMP style) with 2nd and 3rd order PV terms (about 1 px at the tile corners)."""
    ny, nx = shape
    d = scale_arcsec / 3600.0
    h = fits.Header()
    h.update(NAXIS=2, NAXIS1=nx, NAXIS2=ny, CTYPE1="RA---TPV", CTYPE2="DEC--TPV", CRVAL1=ra, CRVAL2=dec)
    h.update(CRPIX1=nx / 2 + 5.0, CRPIX2=ny / 2 - 3.0, CD1_1=-d, CD1_2=0.0, CD2_1=0.0, CD2_2=d)
    h.update(PV1_0=0.0, PV1_1=1.0, PV1_2=0.0, PV1_4=0.3, PV1_5=-0.2, PV1_6=0.15, PV1_7=-80.0, PV1_9=60.0)
    h.update(PV2_0=0.0, PV2_1=1.0, PV2_2=0.0, PV2_4=0.2, PV2_5=0.1, PV2_6=-0.3, PV2_8=70.0, PV2_10=-50.0)
    return WCS(h)


def _max_fit_error_px(wcs, ra, dec, size):
    """Largest distance (input px) between the control-point fit and the exact per-pixel map."""
    grid = resample.ControlGrid(size, SCALE)
    x, y, area, check = grid.map(wcs, ra, dec)
    ex, ey, area_exact = grid.exact_map(wcs, ra, dec)
    # The fit's analytic Jacobian against central differences of the exact map (themselves good to ~1e-4 here).
    assert np.abs(area[:, 1:-1, 1:-1] / area_exact[:, 1:-1, 1:-1] - 1).max() < 1e-3
    return max(np.hypot(x - ex, y - ey).max(), check.max())


@pytest.mark.parametrize("make_wcs", [sip_wcs, tpv_wcs], ids=["sip", "tpv"])
def test_distorted_wcs_fit_and_match_reproject(tmp_path, make_wcs):
    from reproject import reproject_interp

    shape = (260, 240)
    w = make_wcs(shape)
    # The distortion is real: the WCS departs from its linear part by about a pixel or more at a corner.
    lin = WCS(naxis=2)
    lin.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    lin.wcs.crval, lin.wcs.crpix, lin.wcs.cd = w.wcs.crval, w.wcs.crpix, w.wcs.cd
    corners = [[0, 0], [shape[1] - 1, 0], [0, shape[0] - 1], [shape[1] - 1, shape[0] - 1]]
    offset = np.subtract(w.all_pix2world(corners, 0), lin.all_pix2world(corners, 0)) * 3600
    assert np.hypot(offset[:, 0] * np.cos(np.deg2rad(DEC0)), offset[:, 1]).max() > 0.4
    # Sources over the whole tile, the corners included: the fit errs far below 1e-3 input px.
    xs, ys = np.meshgrid([40.0, 120.0, 200.0], [40.0, 130.0, 220.0])
    ra, dec = w.all_pix2world(xs.ravel(), ys.ravel(), 0)
    assert _max_fit_error_px(w, ra, dec, 64) < 1e-3
    # An analytic source near a corner of the tile, where the distortion is largest.
    sra, sdec = w.all_pix2world([[50.3, 60.7]], 0)[0]
    path = write_tile(tmp_path / "d.fits", w, render(w, shape, [(sra, sdec, 100.0, 1.2)], SCALE))
    with fits.open(path) as hdul:  # the header as written and read back, so both sides see the same WCS
        w_file = WCS(hdul[0].header)
    size = 40
    res = extract_cutouts(sources(sra, sdec), {"r": [path]}, size=size, interpolation="bilinear", background="none")
    ref, _ = reproject_interp(path, output_wcs(sra, sdec, size), shape_out=(size, size), order="bilinear")
    _assert_matches_reference(res["cubes"][0, 0], ref, w_file, sra, sdec, size)


@pytest.mark.parametrize("kind", ["fz", "gz"])
def test_compressed_tiles(tmp_path, kind):
    from reproject import reproject_interp

    shape = (150, 140)
    w = sip_wcs(shape)
    img = render(w, shape, [(RA0, DEC0, 100.0, 1.0)], SCALE).astype(np.float32)
    header = w.to_header(relax=True)
    header["BUNIT"] = "nanomaggy"
    if kind == "fz":
        path = tmp_path / "t.fits.fz"
        hdu = fits.CompImageHDU(img, header=header, compression_type="GZIP_2", quantize_level=0.0)
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    else:
        path = tmp_path / "t.fits.gz"
        fits.PrimaryHDU(img, header=header).writeto(path)
    with fits.open(path) as hdul:
        hdu = hdul[1] if kind == "fz" else hdul[0]
        data, w_file = np.array(hdu.data, dtype=np.float64), WCS(hdu.header)
    assert np.array_equal(data, img)  # lossless
    size = 32
    res = extract_cutouts(
        sources(RA0, DEC0), {"r": [str(path)]}, size=size, interpolation="bilinear", background="none"
    )
    assert res["units"] == {"r": "nanomaggy"} and res["coverage"][0, 0] == 1.0
    ref, _ = reproject_interp((data, w_file), output_wcs(RA0, DEC0, size), shape_out=(size, size), order="bilinear")
    _assert_matches_reference(res["cubes"][0, 0], ref, w_file, RA0, DEC0, size)


def _assert_matches_reference(cutout, ref, w_file, ra, dec, size):
    """Our cutout is in flux per output pixel: divided by the local area ratio (distortion included), it matches a
    surface-brightness reference to 1e-3 of the peak away from the border."""
    area = resample.ControlGrid(size, SCALE).map(w_file, [ra], [dec])[2][0]
    inner = slice(3, size - 3)
    diff = cutout[inner, inner] / area[inner, inner] - ref[inner, inner]
    assert np.abs(diff).max() < 1e-3 * ref.max()


@pytest.mark.parametrize(
    "method, dtype, tol",
    [("bilinear", np.float64, 1e-8), ("lanczos3", np.float64, 1e-8), ("lanczos3", np.float32, 2e-6)],
)
def test_interpolate_matches_reference(method, dtype, tol, monkeypatch):
    """The fast kernel against the plain 2-D gather, in both precisions of the Lanczos-3 taps (float32, the default,
    is good to a few float32 ulps of the values, far below any image's noise)."""
    monkeypatch.setattr(resample, "SAMPLE_DTYPE", dtype)
    rng = np.random.default_rng(3)
    img = rng.normal(size=(40, 50)).astype(">f4")  # big-endian, as FITS memory maps are
    img[20, 30] = np.nan
    x = np.concatenate([rng.uniform(-3, 52, 3000), [5.0, 5.0 + 1e-12, np.nan]])
    y = np.concatenate([rng.uniform(-3, 42, 3000), [7.0, 7.0, 3.0]])
    v, ok = resample.interpolate(img, x, y, method)
    v_ref, ok_ref = resample._interpolate_reference(img, x, y, method)
    assert np.array_equal(ok, ok_ref) and 0 < ok.sum() < len(x)
    assert np.abs(v - v_ref).max() < tol
    frac = np.linspace(0, 1, 101, endpoint=False)
    assert np.abs(resample._weights_fast(frac).T - resample._weights(frac, "lanczos3")).max() < tol


def test_streaming_writer_bounded_memory(tmp_path):
    """The HDF5 writer holds one block of cutouts at a time: 10x the sources, far less than 10x the memory."""
    import tracemalloc

    shape = (300, 300)
    w = tile_wcs(RA0, DEC0, shape)
    paths = [write_tile(tmp_path / f"{b}.fits", w, np.ones(shape)) for b in "gr"]
    rng = np.random.default_rng(5)
    half = 100 * SCALE / 3600

    def peak(n):
        df = sources(RA0 + rng.uniform(-half, half, n), DEC0 + rng.uniform(-half, half, n))
        tracemalloc.start()
        out = cutouts.extract_to_hdf5(
            df,
            {"g": [paths[0]], "r": [paths[1]]},
            tmp_path / f"s{n}.h5",
            size=32,
            block_size=100,
            interpolation="bilinear",
        )
        used = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert out["n"] == n and set(out["opened"].values()) == {1}  # every file opened once
        with h5py.File(tmp_path / f"s{n}.h5") as h5:
            assert sorted(h5["object_id"][:]) == sorted(df["object_id"])
            assert np.allclose(h5["cubes"][:, :, 8:24, 8:24], 0.0, atol=1e-5)  # flat sky, background removed
        return used

    small, large = peak(200), peak(2000)
    cube_bytes = 2000 * 2 * 32 * 32 * 4
    assert large < 3 * small and large < cube_bytes


def test_extract_to_hdf5_matches_in_memory(rotated_tile, tmp_path):
    path, _ = rotated_tile
    df = sources(RA0 + np.linspace(-3e-3, 3e-3, 7), DEC0 + np.linspace(3e-3, -3e-3, 7))
    res = extract_cutouts(df, {"r": [path], "g": [path]}, size=16, block_size=3)
    cutouts.extract_to_hdf5(df, {"r": [path], "g": [path]}, tmp_path / "c.h5", size=16, block_size=3)
    with h5py.File(tmp_path / "c.h5") as h5:
        order = np.argsort(h5["object_id"][:])
        assert np.array_equal(h5["object_id"][:][order], res["object_id"])
        assert np.array_equal(h5["cubes"][:][order], res["cubes"])
        assert np.array_equal(h5["coverage"][:][order], res["coverage"])
        assert list(h5.attrs["bands"]) == ["g", "r"] and h5.attrs["interpolation"] == "lanczos3"


# --- stacking, calibration, weight maps, mosaic background ---------------------------------------------------------


def _noise_tile(path, w, shape, blobs, sigma, seed, zero_point=None, extra=None, weight=None):
    """A tile of ``blobs`` plus Gaussian noise of ``sigma``, in units of AB ``zero_point`` (nanomaggies if None)."""
    img = render(w, shape, blobs, SCALE) + np.random.default_rng(seed).normal(0, sigma, shape)
    header = w.to_header()
    if zero_point is not None:
        img = img * 10 ** (0.4 * (zero_point - 22.5))
        header["MAGZERO"] = zero_point
    for key, value in (extra or {}).items():
        header[key] = value
    hdus = [fits.PrimaryHDU(img.astype(np.float32), header=header)]
    if weight is not None:
        hdus.append(fits.ImageHDU(weight.astype(np.float32), name="WEIGHT"))
    fits.HDUList(hdus).writeto(path)
    return str(path)


def test_stack_equals_best_on_one_tile(rotated_tile):
    path, _ = rotated_tile
    df = sources(RA0 + np.linspace(-2e-3, 2e-3, 5), DEC0 + np.linspace(2e-3, -2e-3, 5))
    kw = dict(size=24, background="local")
    best = extract_cutouts(df, {"r": [path]}, options=cutouts.StackOptions(combine="best"), **kw)
    stack = extract_cutouts(df, {"r": [path]}, options=cutouts.StackOptions(combine="stack"), **kw)
    assert np.array_equal(best["cubes"], stack["cubes"]) and np.array_equal(best["coverage"], stack["coverage"])
    assert np.array_equal(stack["exposures"], (stack["coverage"] > 0).astype(np.float32))
    assert np.array_equal(best["pixel_noise"], stack["pixel_noise"])


def test_stack_of_exposures_lowers_the_noise_and_clips_a_cosmic_ray(tmp_path):
    """Six exposures of one field (dithered, rotated, different noise and zero points), one with a cosmic ray."""
    shape, sigma = (140, 140), np.array([0.2, 0.25, 0.3, 0.2, 0.35, 0.25])
    blob = [(RA0, DEC0, 500.0, 1.0)]
    paths = []
    for e, s in enumerate(sigma):
        w = tile_wcs(RA0 + 1e-4 * e, DEC0 - 7e-5 * e, shape, rot_deg=3.0 * e)
        zp = 24.0 + 0.2 * e
        path = _noise_tile(tmp_path / f"e{e}.fits", w, shape, blob, s, seed=e, zero_point=zp)
        if e == 2:  # a cosmic ray 10 output pixels north of the source
            with fits.open(path, mode="update") as hdul:
                x, y = w.all_world2pix(RA0, DEC0 + 10 * SCALE / 3600, 0)
                hdul[0].data[int(round(float(y))), int(round(float(x)))] += 500.0 * 10 ** (0.4 * (zp - 22.5))
        paths.append(path)
    size = 48
    opts = dict(zero_point_keys=("MAGZERO",))
    kw = dict(size=size, background="none", interpolation="lanczos3")
    stack = extract_cutouts(sources(RA0, DEC0), {"r": paths}, options=cutouts.StackOptions(**opts), **kw)
    cube = stack["cubes"][0, 0]
    assert stack["coverage"][0, 0] == 1.0
    assert 5.5 < stack["exposures"][0, 0] <= 6.0  # a few pixels lose the cosmic-ray exposure
    # flux preserved through six zero points 0.2 mag apart (to the noise of a 4" aperture: 1.9, i.e. 0.4 %)
    c = (size - 1) / 2
    rr, cc = np.mgrid[0:size, 0:size]
    aperture = np.hypot(rr - c, cc - c) < 10
    assert cube[aperture].sum() == pytest.approx(500.0, abs=6.0)
    # the cosmic ray is clipped; averaged without clipping it stays
    near = np.hypot(rr - (c + 10), cc - c) < 3
    unclipped = extract_cutouts(
        sources(RA0, DEC0), {"r": paths}, options=cutouts.StackOptions(clip_sigma=None, **opts), **kw
    )["cubes"][0, 0]
    assert unclipped[near].max() > 5.0 and np.abs(cube[near]).max() < 0.5
    # noise: the inverse-variance stack of six, against one exposure (both resampled alike)
    one = extract_cutouts(sources(RA0, DEC0), {"r": paths[:1]}, options=cutouts.StackOptions(**opts), **kw)
    sky = np.hypot(rr - c, cc - c) > 14
    expected = 1 / np.sqrt((1 / sigma**2).sum()) / sigma[0]
    assert np.std(cube[sky]) / np.std(one["cubes"][0, 0][sky]) == pytest.approx(expected, rel=0.15)
    assert stack["pixel_noise"][0, 0] / one["pixel_noise"][0, 0] == pytest.approx(expected, rel=0.1)


def test_tiles_of_one_exposure_are_not_stacked(tmp_path):
    """Two overlapping tiles cut from one exposure (same pixels in the overlap) count once with exposure_keys."""
    big = tile_wcs(RA0, DEC0, (100, 160))
    img = render(big, (100, 160), [(RA0, DEC0, 100.0, 1.0)], SCALE)
    img += np.random.default_rng(0).normal(0, 0.1, img.shape)
    paths = []
    for k, x0 in enumerate((0, 60)):
        w = big.deepcopy()
        w.wcs.crpix = [big.wcs.crpix[0] - x0, big.wcs.crpix[1]]
        header = w.to_header()
        header["RUN"], header["CAMCOL"] = 1035, 6
        path = tmp_path / f"f{k}.fits"
        fits.PrimaryHDU(img[:, x0 : x0 + 100].astype(np.float32), header=header).writeto(path)
        paths.append(str(path))
    df = sources(RA0, DEC0)
    kw = dict(size=32, background="none")
    grouped = extract_cutouts(df, {"r": paths}, options=cutouts.StackOptions(exposure_keys=("RUN", "CAMCOL")), **kw)
    apart = extract_cutouts(df, {"r": paths}, options=cutouts.StackOptions(), **kw)
    best = extract_cutouts(df, {"r": paths}, options=cutouts.StackOptions(combine="best"), **kw)
    assert grouped["exposures"][0, 0] == 1.0 and apart["exposures"][0, 0] > 1.5
    assert np.array_equal(grouped["cubes"], best["cubes"])
    # the same pixels averaged with themselves: the same values, to float32 rounding
    assert np.allclose(apart["cubes"], best["cubes"], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match=r"f0.fits.*EXPTIME.*cutouts.exposure_keys"):
        extract_cutouts(df, {"r": paths}, options=cutouts.StackOptions(exposure_keys=("EXPTIME",)), **kw)


def test_zero_points_scale_the_tiles_and_missing_keys_are_named(tmp_path):
    shape = (120, 120)
    w = tile_wcs(RA0, DEC0, shape)
    blob = [(RA0, DEC0, 100.0, 1.0)]
    adu = _noise_tile(tmp_path / "adu.fits", w, shape, blob, 0.0, 0, zero_point=27.0)
    nmgy = _noise_tile(tmp_path / "nmgy.fits", w, shape, blob, 0.0, 0, extra={"MAGZERO": 22.5})
    opts = cutouts.StackOptions(zero_point_keys=("MAGZP", "MAGZERO"))
    kw = dict(size=32, background="none")
    a = extract_cutouts(sources(RA0, DEC0), {"r": [adu]}, options=opts, **kw)["cubes"]
    b = extract_cutouts(sources(RA0, DEC0), {"r": [nmgy]}, options=opts, **kw)["cubes"]
    assert np.allclose(a, b, rtol=1e-5, atol=1e-6) and a.sum() == pytest.approx(100.0, rel=2e-3)
    # another reference zero point: 1 unit = AB 25 (0.1 nanomaggy units ... x 10)
    c = extract_cutouts(sources(RA0, DEC0), {"r": [adu]}, options=cutouts.StackOptions(zero_point=25.0,
                        zero_point_keys=("MAGZERO",)), **kw)["cubes"]  # fmt: skip
    assert c.sum() == pytest.approx(1000.0, rel=2e-3)
    plain = write_tile(tmp_path / "plain.fits", w, np.zeros(shape))
    with pytest.raises(ValueError, match=r"plain.fits: none of the zero-point keywords \['MAGZP', 'MAGZERO'\]"):
        extract_cutouts(sources(RA0, DEC0), {"r": [plain]}, options=opts, **kw)


def test_weight_maps_mask_and_weigh(tmp_path):
    shape = (120, 120)
    w = tile_wcs(RA0, DEC0, shape)
    blob = [(RA0, DEC0, 100.0, 1.0)]
    weight = np.full(shape, 1 / 0.2**2)
    weight[55:65, 40:50] = 0.0  # a masked patch west of the source
    good = _noise_tile(tmp_path / "w.fits", w, shape, blob, 0.2, 0, weight=weight)
    res = extract_cutouts(sources(RA0, DEC0), {"r": [good]}, size=48, background="none")
    assert 0.9 < res["coverage"][0, 0] < 1.0  # the zero-weight pixels are masked
    # the noise of a pixel comes from the weight map: 0.2 per input pixel, a bit less after Lanczos-3
    assert 0.1 < res["pixel_noise"][0, 0] < 0.21
    none = extract_cutouts(sources(RA0, DEC0), {"r": [good]}, size=48, background="none",
                           options=cutouts.StackOptions(weight_hdu="none"))  # fmt: skip
    assert none["coverage"][0, 0] == 1.0
    wrong = _noise_tile(tmp_path / "wrong.fits", w, shape, blob, 0.2, 0, weight=np.ones((60, 120)))
    with pytest.raises(ValueError, match=r"wrong.fits: the weight map in HDU 'WEIGHT' has shape \(60, 120\)"):
        extract_cutouts(sources(RA0, DEC0), {"r": [wrong]}, size=48)
    with pytest.raises(ValueError, match=r"w.fits: no HDU named 'IVAR'"):
        extract_cutouts(sources(RA0, DEC0), {"r": [good]}, size=48, options=cutouts.StackOptions(weight_hdu="IVAR"))


def test_mosaic_background_removes_a_sky_gradient(tmp_path):
    """A tile that is not sky-subtracted: a sky of 50 with gradients of 4 and 2 across it (8 and 4 times the
    noise), and a source of 100."""
    shape = (400, 400)
    w = tile_wcs(RA0, DEC0, shape)
    yy, xx = np.mgrid[0:400, 0:400]
    sky = 50.0 + 4.0 * xx / 400 + 2.0 * yy / 400
    img = render(w, shape, [(RA0, DEC0, 100.0, 1.0)], SCALE) + sky
    img += np.random.default_rng(1).normal(0, 0.5, shape)
    path = write_tile(tmp_path / "sky.fits", w, img)
    ra, dec = w.all_pix2world([20.0, 380.0, 100.0, 199.5], [20.0, 380.0, 320.0, 199.5], 0)
    df = sources(ra, dec)
    kw = dict(size=32, background="none")
    raw = extract_cutouts(df, {"r": [path]}, **kw)["cubes"]
    model = extract_cutouts(df, {"r": [path]}, options=cutouts.StackOptions(mosaic_background="photutils"), **kw)
    cubes = model["cubes"]
    assert np.median(raw[:3]) > 49  # the sky is there without the model
    # and gone with it, gradient included, at the corners too: to 0.06, three times the error of a median of 32 x 32
    assert np.abs(np.median(cubes[:3], axis=(2, 3))).max() < 0.06
    rr, cc = np.mgrid[0:32, 0:32]
    aperture = np.hypot(rr - 15.5, cc - 15.5) < 8  # 99.4 % of the source, noise 0.5 * sqrt(201) = 7
    assert cubes[3, 0][aperture].sum() == pytest.approx(99.4, abs=15.0)
    assert model["pixel_noise"][:, 0] == pytest.approx(0.45, abs=0.05)  # the noise, not the gradient


def test_stack_options_defaults_are_the_schemas(demo_config):
    from pipeline.core.config import validate_config
    from pipeline.core.mosaics import StackOptions, stack_argv

    cfg = validate_config(copy.deepcopy(demo_config))
    assert StackOptions.from_config(cfg) == StackOptions()
    # the workflow's command line of the cutouts gives the same options back
    parser = argparse.ArgumentParser()
    cutouts_mosaics.add_stack_arguments(parser)
    assert cutouts_mosaics.options_from_args(parser.parse_args(list(map(str, stack_argv(cfg))))) == StackOptions()
    cfg["simulation"]["epochs"] = 4
    cfg = validate_config(cfg)
    opts = StackOptions.from_config(cfg)
    assert opts.zero_point_keys == ("MAGZERO",) and opts.exposure_keys == ("EPOCH",)
