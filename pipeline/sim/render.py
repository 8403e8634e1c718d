"""Analytic rendering of postage stamps: Sersic bulges and exponential disks, Moffat PSFs, sub-pixel integration.

PSFs are evaluated on an ``OVERSAMPLE`` x ``OVERSAMPLE`` sub-pixel grid and summed into pixels. Galaxy profiles are
sampled at pixel centres except in the central ``CORE_PX`` x ``CORE_PX`` pixels, where the cusp of the profile
changes across a pixel and ``CORE_OVERSAMPLE``-fold sub-pixel integration is used (a tenth of the cost of
oversampling the whole stamp, which made rendering bright galaxies slow). Every stamp is normalised so that it holds
exactly its catalog flux: the profiles are truncated (galaxies at ``TRUNC_RE`` half-light
radii, PSFs at ``PSF_TRUNC_FWHM`` FWHM) and renormalised, which is what makes aperture sums in the mosaics agree
with the catalog's true fluxes.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy.signal import fftconvolve

OVERSAMPLE = 3
CORE_OVERSAMPLE = 5
CORE_PX = 7
TRUNC_RE = 4.0
PSF_TRUNC_FWHM = 2.5
# b_n of the Sersic profile so that r_e encloses half the light (Ciotti & Bertin 1999 to better than 1e-4).
_B_N = {1.0: 1.678347, 4.0: 7.669249}


@functools.lru_cache(maxsize=256)
def _subpixel_offsets(size: int, oversample: int = OVERSAMPLE) -> tuple[np.ndarray, np.ndarray]:
    """Sub-pixel centre coordinates (pixels, shape (size*OS, size*OS)) relative to the stamp's central pixel."""
    s = np.arange(size * oversample) / oversample + 0.5 / oversample - 0.5 - size // 2
    return np.meshgrid(s, s)


def _bin(fine: np.ndarray, size: int, oversample: int = OVERSAMPLE) -> np.ndarray:
    return fine.reshape(size, oversample, size, oversample).sum(axis=(1, 3))


def _normalise(img: np.ndarray) -> np.ndarray:
    total = img.sum()
    if total <= 0:
        # Profiles far smaller than a sub-pixel vanish on the grid: put the light into the central pixel.
        img = np.zeros_like(img)
        img[img.shape[0] // 2, img.shape[1] // 2] = 1.0
        return img
    return img / total


def moffat_fwhm_radius(fwhm_px: float) -> int:
    """Half-size in pixels of the truncated PSF kernel of a PSF with FWHM ``fwhm_px`` pixels."""
    return int(np.ceil(PSF_TRUNC_FWHM * fwhm_px))


def moffat_stamp(fwhm_px: float, beta: float, dx: float = 0.0, dy: float = 0.0, size: int | None = None) -> np.ndarray:
    """Pixel-integrated, truncated and normalised circular Moffat PSF.

    Parameters
    ----------
    fwhm_px : float
        Full width at half maximum in pixels.
    beta : float
        Moffat index.
    dx, dy : float
        Offset of the centre from the central pixel's centre, in pixels (x along columns).
    size : int, optional
        Odd stamp side in pixels; by default just large enough for the truncation radius.

    Returns
    -------
    ndarray, shape (size, size)
        Sums to one.
    """
    if size is None:
        size = 2 * moffat_fwhm_radius(fwhm_px) + 1
    x, y = _subpixel_offsets(size)
    alpha = fwhm_px / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
    r2 = (x - dx) ** 2 + (y - dy) ** 2
    fine = (1.0 + r2 / alpha**2) ** (-beta)
    fine[r2 > (PSF_TRUNC_FWHM * fwhm_px) ** 2] = 0.0
    return _normalise(_bin(fine, size))


def sersic_stamp(size: int, dx: float, dy: float, jac: np.ndarray, r_e: float, q: float, pa_deg: float, n: float):
    """Pixel-integrated, truncated and normalised elliptical Sersic profile (n = 1 or 4).

    Parameters
    ----------
    size : int
        Odd stamp side in pixels.
    dx, dy : float
        Centre offset from the central pixel's centre, in pixels.
    jac : ndarray, shape (2, 2)
        Local pixel-to-sky Jacobian in arcsec per pixel (the CD matrix times 3600): ``(east, north) = jac @ (x, y)``.
    r_e : float
        Half-light radius along the major axis, arcsec.
    q : float
        Minor-to-major axis ratio.
    pa_deg : float
        Position angle of the major axis, degrees east of north.
    n : float
        Sersic index, 1 (exponential disk) or 4 (de Vaucouleurs bulge).

    Returns
    -------
    ndarray, shape (size, size)
        Sums to one.
    """
    img = _sersic_sampled(size, 1, dx, dy, jac, r_e, q, pa_deg, n)
    core = min(size, CORE_PX)
    c0 = (size - core) // 2
    fine = _sersic_sampled(core, CORE_OVERSAMPLE, dx, dy, jac, r_e, q, pa_deg, n)
    img[c0 : c0 + core, c0 : c0 + core] = _bin(fine, core, CORE_OVERSAMPLE) / CORE_OVERSAMPLE**2
    return _normalise(img)


def _sersic_sampled(size, oversample, dx, dy, jac, r_e, q, pa_deg, n):
    """The truncated Sersic profile sampled on the (size * oversample)^2 sub-pixel centres (peak-free units)."""
    x, y = _subpixel_offsets(size, oversample)
    x = x - dx
    y = y - dy
    east = jac[0, 0] * x + jac[0, 1] * y
    north = jac[1, 0] * x + jac[1, 1] * y
    pa = np.deg2rad(pa_deg)
    along = east * np.sin(pa) + north * np.cos(pa)
    across = east * np.cos(pa) - north * np.sin(pa)
    r2 = (along**2 + (across / q) ** 2) / r_e**2
    # r^(1/n) from r^2 without a general power: n = 1 is sqrt, n = 4 two more square roots.
    rn = np.sqrt(r2) if n == 1.0 else np.sqrt(np.sqrt(np.sqrt(r2)))
    fine = np.exp(-_B_N[n] * (rn - 1.0))
    fine[r2 > TRUNC_RE**2] = 0.0
    return fine


def galaxy_stamp(size, dx, dy, jac, flux_bulge, flux_disk, re_bulge, re_disk, q_bulge, q_disk, pa_deg, psf):
    """A bulge + disk galaxy convolved with ``psf`` (a centred odd kernel), in the flux units of the inputs.

    The stamp must leave a margin of the PSF kernel's half-size around the truncated profile, so that the
    convolution keeps all the flux (the caller sizes stamps with :func:`stamp_size`).
    """
    img = np.zeros((size, size))
    if flux_bulge > 0:
        img += flux_bulge * sersic_stamp(size, dx, dy, jac, re_bulge, q_bulge, pa_deg, 4.0)
    if flux_disk > 0:
        img += flux_disk * sersic_stamp(size, dx, dy, jac, re_disk, q_disk, pa_deg, 1.0)
    return fftconvolve(img, psf, mode="same")


def stamp_size(r_max_px: float, psf_half_px: int, max_size: int) -> int:
    """Odd stamp side (pixels) that holds a profile truncated at ``TRUNC_RE * r_max_px`` plus the PSF kernel and
    the sub-pixel centring offset, capped at ``max_size``."""
    half = int(np.ceil(TRUNC_RE * r_max_px)) + psf_half_px + 1
    return int(min(2 * half + 1, max_size))
