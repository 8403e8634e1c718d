"""Mosaic tiles: per-band pixel grids (TAN, optionally with SIP distortion), tile-by-tile rendering, noise, masks.

Each band has its own celestial grid, offset by a few arcsec and rotated by a fraction of a degree relative to the
others (as SDSS frames of different filters are), and its own pixel scale where the preset says so (near-infrared
stacks), so that a multi-band cutout needs reprojection. Where the preset asks for it, the grid carries a SIP
polynomial distortion: the header holds the ``A_p_q`` / ``B_p_q`` coefficients and sources are placed through the
distorted WCS, so that a reader applying SIP (``astropy.wcs.WCS.all_world2pix``) finds them where they are.

A band is a virtual canvas cut into overlapping tiles, and every tile is rendered on its own: sources touching the
tile are added in catalog order, and the noise of each canvas pixel comes from a generator seeded by the band and
the pixel's ``NOISE_BLOCK`` block. Overlapping tiles therefore agree pixel for pixel, any subset of tiles can be
rendered in any process in any order (parallel rendering, shards on a cluster), and memory stays at one tile.
Images are sky subtracted (the subtracted level is in ``SKYLEVEL``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits

from .catalog import FIELD_CENTRE_DEG, tan_deproject, tan_project
from .noise import ZERO_POINT, BandNoise
from .render import TRUNC_RE, galaxy_stamp, moffat_fwhm_radius, moffat_stamp, stamp_size

log = logging.getLogger("pipeline.sim")

MAX_STAMP_PX = 97
TILE_OVERLAP_PX = 64
NOISE_BLOCK = 128
_MARGIN_ARCSEC = 12.0
_SIP_ORDER = 3
# Catalog columns of a galaxy's shape, as :func:`add_sources` reads them.
SHAPE_COLUMNS = ("r_bulge_arcsec", "r_disk_arcsec", "q_bulge", "q_disk", "pa_deg")


def _poly(coeffs: dict, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    out = np.zeros_like(u, dtype=float)
    for (p, q), c in coeffs.items():
        out = out + c * u**p * v**q
    return out


def _dpoly(coeffs: dict, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    du = np.zeros_like(u, dtype=float)
    dv = np.zeros_like(u, dtype=float)
    for (p, q), c in coeffs.items():
        if p:
            du = du + c * p * u ** (p - 1) * v**q
        if q:
            dv = dv + c * q * u**p * v ** (q - 1)
    return du, dv


@dataclass(frozen=True)
class BandGrid:
    """The pixel grid of one band: a canvas of ``size`` x ``size`` pixels and its overlapping tiles.

    ``crval`` (deg) and ``cd`` (deg per pixel, shape (2, 2)) define the TAN WCS with ``crpix`` (1-based, FITS
    convention) at the canvas centre; ``sip_a`` and ``sip_b`` map ``(p, q)`` to the SIP coefficients (empty for plain
    TAN); ``offset_deg`` is the (xi, eta) of ``crval`` around the field centre; ``tiles`` holds the 0-based (x0, y0)
    corner of each ``tile_size`` tile.
    """

    band: str
    size: int
    crval: tuple[float, float]
    crpix: float
    cd: np.ndarray
    tile_size: int
    tiles: tuple[tuple[int, int], ...]
    offset_deg: tuple[float, float] = (0.0, 0.0)
    sip_a: dict = field(default_factory=dict)
    sip_b: dict = field(default_factory=dict)

    def world_to_pixel(self, ra, dec):
        """0-based canvas pixel coordinates (x, y) of sky positions in degrees (exact TAN, SIP inverted)."""
        xi, eta = tan_project(ra, dec, self.crval)
        target = np.linalg.solve(self.cd, np.vstack([xi, eta]))
        u, v = target[0].copy(), target[1].copy()
        if self.sip_a:
            # u + f(u, v) = U: the distortion's derivatives are ~1e-3, so fixed-point iteration converges fast.
            for _ in range(30):
                u = target[0] - _poly(self.sip_a, u, v)
                v = target[1] - _poly(self.sip_b, u, v)
        return u + self.crpix - 1.0, v + self.crpix - 1.0

    def jacobian_arcsec(self, x, y) -> np.ndarray:
        """Local pixel-to-sky Jacobian (arcsec per pixel, shape (n, 2, 2)) at canvas pixels (x, y), SIP included."""
        x = np.atleast_1d(np.asarray(x, float))
        u, v = x - (self.crpix - 1.0), np.atleast_1d(np.asarray(y, float)) - (self.crpix - 1.0)
        m = np.zeros((len(x), 2, 2))
        m[:, 0, 0] = m[:, 1, 1] = 1.0
        if self.sip_a:
            a_u, a_v = _dpoly(self.sip_a, u, v)
            b_u, b_v = _dpoly(self.sip_b, u, v)
            m[:, 0, 0] += a_u
            m[:, 0, 1] += a_v
            m[:, 1, 0] += b_u
            m[:, 1, 1] += b_v
        return np.einsum("ij,njk->nik", self.cd * 3600.0, m)

    def header(self, x0: int, y0: int) -> fits.Header:
        """Celestial WCS header (TAN or TAN-SIP, CD matrix) of the tile whose 0-based corner is (x0, y0)."""
        h = fits.Header()
        sip = "-SIP" if self.sip_a else ""
        h["CTYPE1"], h["CTYPE2"] = "RA---TAN" + sip, "DEC--TAN" + sip
        h["CUNIT1"], h["CUNIT2"] = "deg", "deg"
        h["RADESYS"] = "ICRS"
        h["CRVAL1"], h["CRVAL2"] = self.crval
        h["CRPIX1"], h["CRPIX2"] = self.crpix - x0, self.crpix - y0
        h["CD1_1"], h["CD1_2"] = float(self.cd[0, 0]), float(self.cd[0, 1])
        h["CD2_1"], h["CD2_2"] = float(self.cd[1, 0]), float(self.cd[1, 1])
        if self.sip_a:
            for name, coeffs in (("A", self.sip_a), ("B", self.sip_b)):
                h[f"{name}_ORDER"] = _SIP_ORDER
                for (p, q), c in sorted(coeffs.items()):
                    h[f"{name}_{p}_{q}"] = float(c)
        return h

    def xi_field(self, x, y):
        """Tangent-plane east offset (deg) from the field centre of canvas pixels (x, y), to first order."""
        c = self.crpix - 1.0
        return self.offset_deg[0] + self.cd[0, 0] * (x - c) + self.cd[0, 1] * (y - c)


def _sip_coefficients(rng, half_px: float, max_px: float) -> tuple[dict, dict]:
    """Random quadratic plus radial cubic SIP terms reaching about ``max_px`` pixels at the canvas corners."""
    a2 = rng.uniform(-0.25, 0.25, 3) * max_px / half_px**2
    b2 = rng.uniform(-0.25, 0.25, 3) * max_px / half_px**2
    k = rng.uniform(0.25, 0.4) * max_px / half_px**3
    sip_a = {(2, 0): a2[0], (1, 1): a2[1], (0, 2): a2[2], (3, 0): k, (1, 2): k}
    sip_b = {(2, 0): b2[0], (1, 1): b2[1], (0, 2): b2[2], (2, 1): k, (0, 3): k}
    return sip_a, sip_b


def band_grid(
    band: str,
    side_deg: float,
    scale_arcsec: float,
    tile_size_px: int,
    rng,
    sip_max_px: float = 0.0,
    dither_arcsec: float = 5.0,
    rotation_deg: float = 0.5,
) -> BandGrid:
    """Draw the offset (up to ``dither_arcsec``), rotation (up to ``rotation_deg``) and SIP distortion of one band's
    grid and lay its tiles over the field.

    Tiles are at most ``tile_size_px`` on a side and overlap by :data:`TILE_OVERLAP_PX`; they are shrunk evenly so
    that the smallest number of them covers the field plus a margin for the offsets and rotations.
    """
    rot = np.deg2rad(rng.uniform(-rotation_deg, rotation_deg))
    offset = rng.uniform(-dither_arcsec, dither_arcsec, 2) / 3600.0
    crval = tan_deproject(offset[0], offset[1], FIELD_CENTRE_DEG)
    s = scale_arcsec / 3600.0
    cd = s * np.array([[-np.cos(rot), np.sin(rot)], [np.sin(rot), np.cos(rot)]])
    # The default margin covers the default dither and rotation; larger ones widen it.
    margin = _MARGIN_ARCSEC + max(0.0, dither_arcsec - 5.0) + max(0.0, rotation_deg - 0.5) / 57.3 * side_deg * 1800
    size = int(np.ceil((side_deg * 3600.0 + 2 * margin) / scale_arcsec))
    n = max(1, int(np.ceil((size - TILE_OVERLAP_PX) / (tile_size_px - TILE_OVERLAP_PX))))
    tile = size if n == 1 else int(np.ceil((size + (n - 1) * TILE_OVERLAP_PX) / n))
    starts = np.round(np.linspace(0, size - tile, n)).astype(int) if n > 1 else np.array([0])
    tiles = tuple((int(x), int(y)) for y in starts for x in starts)
    sip_a, sip_b = _sip_coefficients(rng, size / 2.0, sip_max_px) if sip_max_px > 0 else ({}, {})
    return BandGrid(
        band, size, (float(crval[0]), float(crval[1])), (size + 1) / 2.0, cd, tile, tiles,
        (float(offset[0]), float(offset[1])), sip_a, sip_b,
    )  # fmt: skip


@dataclass
class BandJob:
    """Everything a worker needs to render any tile of one band (arrays have one entry per source)."""

    grid: BandGrid
    x: np.ndarray
    y: np.ndarray
    jac: np.ndarray
    bulge: np.ndarray
    disk: np.ndarray
    shapes: dict
    is_star: np.ndarray
    noise: BandNoise
    beta: float
    scale: float
    noise_entropy: int
    masks: dict
    xi_max: float | None
    keywords: dict
    out_dir: Path
    prefix: str = ""  # of the tile file names
    image_scale: float = 1.0  # image units per nanomaggy
    artefacts: dict | None = None  # of a multi-epoch simulation (pipeline.sim.epochs.draw_artefacts)


def draw_masks(size: int, rng) -> dict:
    """Regions of a band's canvas to blank with NaN: a saturated-star disc and one or two bad-column segments."""
    n = size
    disc = (rng.uniform(0.1 * n, 0.9 * n), rng.uniform(0.1 * n, 0.9 * n), rng.uniform(8.0, 25.0))
    cols = []
    for _ in range(rng.integers(1, 3)):
        x0, y0 = int(rng.integers(0, n - 8)), int(rng.integers(0, n - 60))
        cols.append((x0, y0, int(rng.integers(2, 7)), int(rng.integers(60, 300))))
    return {"disc": disc, "columns": cols}


def _add(canvas: np.ndarray, stamp: np.ndarray, ix: int, iy: int) -> None:
    """Add ``stamp`` centred on canvas pixel (ix, iy), clipped at the canvas edges."""
    h = stamp.shape[0] // 2
    y0, x0 = iy - h, ix - h
    ys, xs = max(0, -y0), max(0, -x0)
    ye = min(stamp.shape[0], canvas.shape[0] - y0)
    xe = min(stamp.shape[1], canvas.shape[1] - x0)
    if ye > ys and xe > xs:
        canvas[y0 + ys : y0 + ye, x0 + xs : x0 + xe] += stamp[ys:ye, xs:xe]


def max_radius_arcsec(fwhm_px: float, scale_arcsec: float) -> float:
    """Largest half-light radius (arcsec) whose truncated profile, with the PSF kernel, fits a ``MAX_STAMP_PX``
    stamp on pixels of ``scale_arcsec`` with a PSF of FWHM ``fwhm_px`` pixels."""
    return (MAX_STAMP_PX // 2 - moffat_fwhm_radius(fwhm_px) - 1) / TRUNC_RE * scale_arcsec


def add_sources(
    canvas, which, x, y, jac, bulge, disk, shapes, is_star, fwhm_px, beta, scale, origin=(0, 0), factor=1.0
) -> None:
    """Add the stamps of the sources ``which``, in that order, to ``canvas``: Moffat stars and PSF-convolved
    bulge + disk galaxies, centred on their pixel positions (x, y) less ``origin`` and multiplied by ``factor``.

    ``x``, ``y``, ``bulge``, ``disk`` (fluxes), ``is_star`` and the arrays of ``shapes`` (:data:`SHAPE_COLUMNS`)
    have one entry per source; ``jac`` (pixel-to-sky Jacobians, arcsec per pixel) one per source of ``which``.
    ``fwhm_px``, ``beta`` and ``scale`` (arcsec per pixel) describe the PSF and the pixels of ``canvas``.
    """
    psf_half = moffat_fwhm_radius(fwhm_px)
    psf = moffat_stamp(fwhm_px, beta)
    star_size = 2 * (psf_half + 1) + 1
    for n, i in enumerate(which):
        ix, iy = int(np.round(x[i])), int(np.round(y[i]))
        dx, dy = x[i] - ix, y[i] - iy
        if is_star[i]:
            stamp = bulge[i] * moffat_stamp(fwhm_px, beta, dx, dy, size=star_size)
        else:
            rb, rd = shapes["r_bulge_arcsec"][i], shapes["r_disk_arcsec"][i]
            r_max = max(rb if bulge[i] > 0 else 0.0, rd if disk[i] > 0 else 0.0) / scale
            stamp = galaxy_stamp(
                stamp_size(r_max, psf_half, MAX_STAMP_PX), dx, dy, jac[n], bulge[i], disk[i], rb, rd,
                shapes["q_bulge"][i], shapes["q_disk"][i], shapes["pa_deg"][i], psf,
            )  # fmt: skip
        if factor != 1.0:
            stamp = stamp * factor
        _add(canvas, stamp, ix - origin[0], iy - origin[1])


def _noise_field(entropy: int, x0: int, y0: int, nx: int, ny: int) -> np.ndarray:
    """Unit Gaussian noise of the canvas window [y0:y0+ny, x0:x0+nx], the same whichever window asks for it."""
    b = NOISE_BLOCK
    bx0, by0 = x0 // b, y0 // b
    bx1, by1 = (x0 + nx - 1) // b, (y0 + ny - 1) // b
    big = np.empty(((by1 - by0 + 1) * b, (bx1 - bx0 + 1) * b))
    for by in range(by0, by1 + 1):
        for bx in range(bx0, bx1 + 1):
            gen = np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy, spawn_key=(by, bx))))
            big[(by - by0) * b : (by - by0 + 1) * b, (bx - bx0) * b : (bx - bx0 + 1) * b] = gen.standard_normal((b, b))
    ox, oy = x0 - bx0 * b, y0 - by0 * b
    return big[oy : oy + ny, ox : ox + nx]


def render_tile(job: BandJob, k: int) -> np.ndarray | None:
    """Noisy, sky-subtracted image of tile ``k`` in nanomaggies per pixel (float64), or None where the band has no
    coverage anywhere on the tile.

    Noise is Gaussian with the variance of Poisson counts on source plus sky, plus read noise (the counts are in the
    hundreds of electrons, where the Gaussian limit holds); masked regions and pixels outside the band's coverage
    are NaN.
    """
    grid = job.grid
    x0, y0 = grid.tiles[k]
    t = grid.tile_size
    yy, xx = np.mgrid[y0 : y0 + t, x0 : x0 + t]
    covered = None
    if job.xi_max is not None:
        covered = grid.xi_field(xx, yy) <= job.xi_max
        if not covered.any():
            return None
    ix, iy = np.round(job.x).astype(int), np.round(job.y).astype(int)
    reach = MAX_STAMP_PX // 2 + 1
    near = np.flatnonzero((ix > x0 - reach) & (ix < x0 + t + reach) & (iy > y0 - reach) & (iy < y0 + t + reach))
    img = np.zeros((t, t))
    add_sources(
        img, near, job.x, job.y, job.jac[near], job.bulge, job.disk, job.shapes, job.is_star,
        job.noise.fwhm_px, job.beta, job.scale, origin=(x0, y0),
    )  # fmt: skip
    n = job.noise
    var = (np.clip(img, 0.0, None) + n.sky) / n.gain + (n.read_noise_e / n.gain) ** 2
    img += _noise_field(job.noise_entropy, x0, y0, t, t) * np.sqrt(var)
    if job.artefacts:
        from .epochs import add_artefacts

        add_artefacts(img, job.artefacts, x0, y0)
    cx, cy, r = job.masks["disc"]
    img[(xx - cx) ** 2 + (yy - cy) ** 2 < r**2] = np.nan
    for cx0, cy0, w, h in job.masks["columns"]:
        img[(xx >= cx0) & (xx < cx0 + w) & (yy >= cy0) & (yy < cy0 + h)] = np.nan
    if covered is not None:
        img[~covered] = np.nan
    return img


def write_tile(job: BandJob, k: int) -> str | None:
    """Render tile ``k`` of a band and write it as float32 ``<prefix>tile-XX.fits`` (times ``job.image_scale``);
    returns the file name (None: no coverage, nothing written)."""
    img = render_tile(job, k)
    if img is None:
        return None
    x0, y0 = job.grid.tiles[k]
    header = job.grid.header(x0, y0)
    header["BUNIT"] = ("nanomaggy", "1 nmgy = 3.631e-6 Jy")
    header["MAGZERO"] = (ZERO_POINT, "AB mag = MAGZERO - 2.5 log10(pixel sum)")
    header["ZP"] = (ZERO_POINT, "same as MAGZERO")
    for key, value in job.keywords.items():
        header[key] = value
    header["TILE"] = (k, "tile index within the band")
    header["TILEX0"] = (x0, "0-based column of this tile in the band canvas")
    header["TILEY0"] = (y0, "0-based row of this tile in the band canvas")
    job.out_dir.mkdir(parents=True, exist_ok=True)
    name = f"{job.prefix}tile-{k:02d}.fits"
    if job.image_scale != 1.0:
        img = img * job.image_scale
    fits.PrimaryHDU(data=img.astype(np.float32), header=header).writeto(job.out_dir / name, overwrite=True)
    return name
