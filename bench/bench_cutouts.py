"""Time :func:`pipeline.cutouts.extract_cutouts` against ``reproject.reproject_interp`` called per source.

Both resample the same sources onto the same TAN grids (bilinear, no background subtraction); the script prints
both timings, their ratio and the largest difference relative to each cutout's peak, after dividing our output
by the flux scale factor (output / input pixel area at the tile centre), which reproject does not apply.

Usage: python bench/bench_cutouts.py [N_SOURCES] [SIZE]   (uses ../shared/data/sdss-frames when present,
otherwise a synthetic 2048 x 1489 field of noise)
"""

from __future__ import annotations

import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning
from astropy.wcs.utils import proj_plane_pixel_area

from pipeline.cutouts import extract_cutouts

FIELD = Path(__file__).resolve().parents[2] / "shared" / "data" / "sdss-frames" / "001035-6-0017"
SCALE = 0.396


def _frames(tmp: Path) -> dict[str, list[str]]:
    """Uncompressed copies of the five SDSS frames (or synthetic ones), so neither side times decompression."""
    out = {}
    for band in "ugriz":
        path = tmp / f"{band}.fits"
        if FIELD.exists():
            with fits.open(FIELD / f"frame-{band}-001035-6-0017.fits.bz2") as hdul:
                fits.PrimaryHDU(hdul[0].data, header=hdul[0].header).writeto(path)
        else:
            rng = np.random.default_rng(0)
            w = WCS(naxis=2)
            w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
            w.wcs.crval = [150.0, 2.0]
            w.wcs.crpix = [1024.5, 745.0]
            w.wcs.cd = np.array([[-1, 0.05], [0.05, 1]]) * SCALE / 3600
            img = rng.lognormal(0, 1, (1489, 2048))
            fits.PrimaryHDU(img.astype(np.float32), header=w.to_header()).writeto(path)
        out[band] = [str(path)]
    return out


def _output_wcs(ra, dec, size):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [(size + 1) / 2, (size + 1) / 2]
    w.wcs.cdelt = [-SCALE / 3600, SCALE / 3600]
    return w


def main(n_sources=50, size=64):
    from reproject import reproject_interp

    warnings.simplefilter("ignore", FITSFixedWarning)
    n_sources, size = int(n_sources), int(size)
    with tempfile.TemporaryDirectory() as tmp:
        files = _frames(Path(tmp))
        images = {}
        for band, (path,) in files.items():
            with fits.open(path) as hdul:
                images[band] = (np.array(hdul[0].data), WCS(hdul[0].header))
        data, wcs = images["r"]
        rng = np.random.default_rng(1)
        ny, nx = data.shape
        xy = rng.uniform([100, 100], [nx - 100, ny - 100], (n_sources, 2))
        ra, dec = wcs.all_pix2world(xy[:, 0], xy[:, 1], 0)
        sources = pd.DataFrame({"object_id": np.arange(n_sources), "ra": ra, "dec": dec})

        t0 = time.perf_counter()
        res = extract_cutouts(
            sources, files, size=size, pixel_scale_arcsec=SCALE, interpolation="bilinear", background="none"
        )
        t_ours = time.perf_counter() - t0

        t0 = time.perf_counter()
        ref = np.zeros_like(res["cubes"])
        for i in range(n_sources):
            out_wcs = _output_wcs(ra[i], dec[i], size)
            for b, band in enumerate(res["bands"]):
                ref[i, b] = reproject_interp(images[band], out_wcs, shape_out=(size, size), order="bilinear")[0]
        t_ref = time.perf_counter() - t0

    out_area = (SCALE / 3600) ** 2
    factor = np.array([out_area / proj_plane_pixel_area(images[b][1]) for b in res["bands"]])
    inner = slice(3, size - 3)
    ours = res["cubes"][:, :, inner, inner] / factor[None, :, None, None]
    diff = np.abs(ours - ref[:, :, inner, inner]).max(axis=(2, 3))
    peak = np.abs(ref[:, :, inner, inner]).max(axis=(2, 3))
    print(f"{n_sources} sources x {len(res['bands'])} bands, {size} x {size} px, bilinear")
    print(f"extract_cutouts:                 {t_ours:8.2f} s  ({1e3 * t_ours / n_sources:.1f} ms/source)")
    print(f"reproject_interp per source:     {t_ref:8.2f} s  ({1e3 * t_ref / n_sources:.1f} ms/source)")
    print(f"speed-up (reproject / ours):     {t_ref / t_ours:8.1f}")
    print(f"max |ours - reproject| / peak:   {(diff / peak).max():.2e}  (median {np.median(diff / peak):.2e})")
    print(f"flux factors (out/in pixel area): {np.round(factor, 5).tolist()}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
