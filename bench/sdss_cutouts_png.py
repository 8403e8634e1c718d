"""Draw 5-band cutouts of the brightest isolated peaks of a real SDSS field into a PNG, to look at by eye.

Usage: python bench/sdss_cutouts_png.py [OUT.png]   (default /tmp/sdss_cutouts.png; needs ../shared/data)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.io import fits
from astropy.wcs import WCS
from scipy import ndimage

from pipeline.steps.cutouts import extract_cutouts

FIELD = Path(__file__).resolve().parents[2] / "shared" / "data" / "sdss-frames" / "001035-6-0017"


def bright_sources(r_file: str, n: int, isolation_px: int = 81, margin: int = 150) -> pd.DataFrame:
    """The ``n`` brightest unsaturated maxima of the smoothed r frame, isolated within ``isolation_px``."""
    with fits.open(r_file) as hdul:
        img = hdul[0].data.astype(np.float64)
        wcs = WCS(hdul[0].header)
    ny, nx = img.shape
    # Peaks of the smoothed image: cosmic rays (one sharp pixel, r only) fade, stars and galaxies stay.
    smooth = ndimage.gaussian_filter(img, 2.0)
    peaks = (smooth == ndimage.maximum_filter(smooth, size=isolation_px)) & (smooth > 2) & (img < 40)
    # No brighter pixel (a cosmic ray) in the stamp, and below saturation in every band (r < 40 nanomaggies).
    peaks &= ndimage.maximum_filter(img, size=isolation_px) == ndimage.maximum_filter(img, size=5)
    ys, xs = np.nonzero(peaks)
    keep = (xs > margin) & (xs < nx - margin) & (ys > margin) & (ys < ny - margin)
    xs, ys = xs[keep], ys[keep]
    order = np.argsort(smooth[ys, xs])[::-1][:n]
    ra, dec = wcs.all_pix2world(xs[order], ys[order], 0)
    return pd.DataFrame({"object_id": np.arange(len(ra), dtype=np.int64), "ra": ra, "dec": dec})


def main(out="/tmp/sdss_cutouts.png", n=6):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = {b: [str(FIELD / f"frame-{b}-001035-6-0017.fits.bz2")] for b in "ugriz"}
    res = extract_cutouts(bright_sources(files["r"][0], n), files, size=64)
    fig, axes = plt.subplots(len(res["object_id"]), len(res["bands"]), figsize=(10, 2 * len(res["object_id"])))
    for i, cube in enumerate(res["cubes"]):
        for b, band in enumerate(res["bands"]):
            ax = axes[i, b]
            img = cube[b]
            lo, hi = np.percentile(img, [5, 99.8])
            ax.imshow(np.arcsinh((img - lo) / max(hi - lo, 1e-6) * 10), origin="lower", cmap="gray")
            ax.plot([31.5], [31.5], "r+", ms=6)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{res['object_id'][i]} {band} cov={res['coverage'][i, b]:.2f}", fontsize=7)
    fig.suptitle("SDSS 001035-6-0017: north up, east left, 0.396 arcsec/px, lanczos3, local background")
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(*sys.argv[1:2])
