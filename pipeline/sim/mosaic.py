"""Mosaic tiles: per-band pixel grids, rendering of all sources, noise, masked regions and FITS output.

Each band has its own celestial TAN grid, offset by a few arcsec and rotated by a fraction of a degree relative
to the others (as SDSS frames of different filters are), so that a multi-band cutout needs reprojection. A band's
sources are rendered onto one canvas covering the field; its tiles are overlapping windows cut from that canvas,
so overlapping tiles agree pixel for pixel. Images are sky subtracted (the subtracted level is in ``SKYLEVEL``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits

from .catalog import FIELD_CENTRE_DEG, _tan_deproject
from .noise import ZERO_POINT, BandNoise
from .render import galaxy_stamp, moffat_fwhm_radius, moffat_stamp, stamp_size

log = logging.getLogger("pipeline.simulate")

MAX_STAMP_PX = 97
TILE_OVERLAP_PX = 64
_MARGIN_ARCSEC = 12.0


@dataclass(frozen=True)
class BandGrid:
    """The pixel grid of one band: a canvas of ``size`` x ``size`` pixels and its overlapping tiles.

    ``crval`` (deg) and ``cd`` (deg per pixel, shape (2, 2)) define the TAN WCS with ``crpix`` (1-based, FITS
    convention) at the canvas centre; ``tiles`` holds the 0-based (x0, y0) corner of each ``tile_size`` tile.
    """

    band: str
    size: int
    crval: tuple[float, float]
    crpix: float
    cd: np.ndarray
    tile_size: int
    tiles: tuple[tuple[int, int], ...]

    def world_to_pixel(self, ra, dec):
        """0-based canvas pixel coordinates (x, y) of sky positions in degrees (exact gnomonic projection)."""
        ra0, dec0 = np.deg2rad(self.crval)
        ra, dec = np.deg2rad(ra), np.deg2rad(dec)
        cos_c = np.sin(dec0) * np.sin(dec) + np.cos(dec0) * np.cos(dec) * np.cos(ra - ra0)
        xi = np.rad2deg(np.cos(dec) * np.sin(ra - ra0) / cos_c)
        eta = np.rad2deg((np.cos(dec0) * np.sin(dec) - np.sin(dec0) * np.cos(dec) * np.cos(ra - ra0)) / cos_c)
        pix = np.linalg.solve(self.cd, np.vstack([xi, eta]))
        return pix[0] + self.crpix - 1.0, pix[1] + self.crpix - 1.0

    def header(self, x0: int, y0: int) -> fits.Header:
        """Celestial TAN WCS header (CD matrix) of the tile whose 0-based corner is (x0, y0)."""
        h = fits.Header()
        h["CTYPE1"], h["CTYPE2"] = "RA---TAN", "DEC--TAN"
        h["CUNIT1"], h["CUNIT2"] = "deg", "deg"
        h["RADESYS"] = "ICRS"
        h["CRVAL1"], h["CRVAL2"] = self.crval
        h["CRPIX1"], h["CRPIX2"] = self.crpix - x0, self.crpix - y0
        h["CD1_1"], h["CD1_2"] = float(self.cd[0, 0]), float(self.cd[0, 1])
        h["CD2_1"], h["CD2_2"] = float(self.cd[1, 0]), float(self.cd[1, 1])
        return h


def band_grid(band: str, side_deg: float, scale_arcsec: float, tile_size_px: int, rng) -> BandGrid:
    """Draw the offset and rotation of one band's grid and lay its tiles over the field.

    Tiles are at most ``tile_size_px`` on a side and overlap by :data:`TILE_OVERLAP_PX`; they are shrunk evenly so
    that the smallest number of them covers the field plus a margin for the offsets and rotations.
    """
    rot = np.deg2rad(rng.uniform(-0.5, 0.5))
    offset = rng.uniform(-5.0, 5.0, 2) / 3600.0
    crval = _tan_deproject(offset[0], offset[1], FIELD_CENTRE_DEG)
    s = scale_arcsec / 3600.0
    cd = s * np.array([[-np.cos(rot), np.sin(rot)], [np.sin(rot), np.cos(rot)]])
    size = int(np.ceil((side_deg * 3600.0 + 2 * _MARGIN_ARCSEC) / scale_arcsec))
    n = max(1, int(np.ceil((size - TILE_OVERLAP_PX) / (tile_size_px - TILE_OVERLAP_PX))))
    tile = size if n == 1 else int(np.ceil((size + (n - 1) * TILE_OVERLAP_PX) / n))
    starts = np.round(np.linspace(0, size - tile, n)).astype(int) if n > 1 else np.array([0])
    tiles = tuple((int(x), int(y)) for y in starts for x in starts)
    return BandGrid(band, size, (float(crval[0]), float(crval[1])), (size + 1) / 2.0, cd, tile, tiles)


def _add(canvas: np.ndarray, stamp: np.ndarray, ix: int, iy: int) -> None:
    """Add ``stamp`` centred on canvas pixel (ix, iy), clipped at the canvas edges."""
    h = stamp.shape[0] // 2
    y0, x0 = iy - h, ix - h
    ys, xs = max(0, -y0), max(0, -x0)
    ye = min(stamp.shape[0], canvas.shape[0] - y0)
    xe = min(stamp.shape[1], canvas.shape[1] - x0)
    if ye > ys and xe > xs:
        canvas[y0 + ys : y0 + ye, x0 + xs : x0 + xe] += stamp[ys:ye, xs:xe]


def render_band(grid: BandGrid, df, bulge_flux, disk_flux, noise: BandNoise, beta: float, scale: float, rng):
    """Noisy, sky-subtracted image of one band's canvas, in nanomaggies per pixel (shape (size, size), float64).

    Noise is Gaussian with the variance of Poisson counts on source plus sky, plus read noise (the counts are in the
    hundreds of electrons, where the Gaussian limit holds); a few regions are masked with NaN.
    """
    x, y = grid.world_to_pixel(df["ra"].to_numpy(), df["dec"].to_numpy())
    ix, iy = np.round(x).astype(int), np.round(y).astype(int)
    dx, dy = x - ix, y - iy
    jac = grid.cd * 3600.0
    psf_half = moffat_fwhm_radius(noise.fwhm_px)
    psf = moffat_stamp(noise.fwhm_px, beta)
    canvas = np.zeros((grid.size, grid.size))
    is_star = df["is_star"].to_numpy()
    cols = {c: df[c].to_numpy() for c in ("r_bulge_arcsec", "r_disk_arcsec", "q_bulge", "q_disk", "pa_deg")}
    star_size = 2 * (psf_half + 1) + 1
    for i in range(len(df)):
        if not (-MAX_STAMP_PX < ix[i] < grid.size + MAX_STAMP_PX and -MAX_STAMP_PX < iy[i] < grid.size + MAX_STAMP_PX):
            continue
        if is_star[i]:
            stamp = bulge_flux[i] * moffat_stamp(noise.fwhm_px, beta, dx[i], dy[i], size=star_size)
        else:
            rb, rd = cols["r_bulge_arcsec"][i], cols["r_disk_arcsec"][i]
            r_max = max(rb if bulge_flux[i] > 0 else 0.0, rd if disk_flux[i] > 0 else 0.0) / scale
            size = stamp_size(r_max, psf_half, MAX_STAMP_PX)
            stamp = galaxy_stamp(
                size, dx[i], dy[i], jac, bulge_flux[i], disk_flux[i], rb, rd,
                cols["q_bulge"][i], cols["q_disk"][i], cols["pa_deg"][i], psf,
            )  # fmt: skip
        _add(canvas, stamp, ix[i], iy[i])
    var = (np.clip(canvas, 0.0, None) + noise.sky) / noise.gain + (noise.read_noise_e / noise.gain) ** 2
    canvas += rng.standard_normal(canvas.shape) * np.sqrt(var)
    _mask_regions(canvas, rng)
    return canvas


def _mask_regions(canvas: np.ndarray, rng) -> None:
    """Blank a few regions with NaN: a saturated-star disc and one or two bad-column segments."""
    n = canvas.shape[0]
    yy, xx = np.ogrid[:n, :n]
    cx, cy, r = rng.uniform(0.1 * n, 0.9 * n), rng.uniform(0.1 * n, 0.9 * n), rng.uniform(8.0, 25.0)
    canvas[(xx - cx) ** 2 + (yy - cy) ** 2 < r**2] = np.nan
    for _ in range(rng.integers(1, 3)):
        x0, y0 = rng.integers(0, n - 8), rng.integers(0, n - 60)
        canvas[y0 : y0 + rng.integers(60, 300), x0 : x0 + rng.integers(2, 7)] = np.nan


def write_tiles(canvas: np.ndarray, grid: BandGrid, out_dir: Path, keywords: dict) -> list[str]:
    """Write each tile of ``canvas`` as float32 ``tile-XX.fits`` under ``out_dir``; returns the file names."""
    out_dir.mkdir(parents=True, exist_ok=True)
    names = []
    for k, (x0, y0) in enumerate(grid.tiles):
        header = grid.header(x0, y0)
        header["BUNIT"] = ("nanomaggy", "1 nmgy = 3.631e-6 Jy")
        header["MAGZERO"] = (ZERO_POINT, "AB mag = MAGZERO - 2.5 log10(pixel sum)")
        header["ZP"] = (ZERO_POINT, "same as MAGZERO")
        for key, value in keywords.items():
            header[key] = value
        header["TILE"] = (k, "tile index within the band")
        header["TILEX0"] = (x0, "0-based column of this tile in the band canvas")
        header["TILEY0"] = (y0, "0-based row of this tile in the band canvas")
        data = canvas[y0 : y0 + grid.tile_size, x0 : x0 + grid.tile_size].astype(np.float32)
        name = f"tile-{k:02d}.fits"
        fits.PrimaryHDU(data=data, header=header).writeto(out_dir / name)
        names.append(name)
    return names
