"""Per-band noise model: sky level, gain and per-pixel noise set by the band's 5-sigma point-source depth."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .presets import Preset
from .render import moffat_stamp

ZERO_POINT = 22.5


def mag_to_flux(mag):
    """AB magnitude to flux in nanomaggies (zero point 22.5)."""
    return 10.0 ** (-0.4 * (np.asarray(mag, float) - ZERO_POINT))


def flux_to_mag(flux):
    """Flux in nanomaggies to AB magnitude; NaN where the flux is not positive."""
    flux = np.asarray(flux, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(flux > 0, ZERO_POINT - 2.5 * np.log10(np.where(flux > 0, flux, 1.0)), np.nan)


@dataclass(frozen=True)
class BandNoise:
    """Noise of one band. Fluxes in nanomaggies per pixel, ``gain`` in electrons per nanomaggy.

    ``sigma_pix`` is the sky noise (Poisson on the sky plus read noise) such that a point source at the band's
    depth is detected at 5 sigma with PSF-weighted photometry: ``flux_lim = 5 * sigma_pix * sqrt(n_eff)`` with
    ``n_eff = 1 / sum(psf**2)`` the PSF's noise-equivalent number of pixels.
    """

    fwhm_px: float
    sigma_pix: float
    sky: float
    gain: float
    read_noise_e: float
    n_eff_psf: float


def band_noise(preset: Preset, band: str) -> BandNoise:
    """The :class:`BandNoise` of ``band`` in ``preset``."""
    scale = preset.scale(band)
    fwhm_px = preset.psf_fwhm_arcsec[band] / scale
    psf = moffat_stamp(fwhm_px, preset.moffat_beta)
    n_eff = 1.0 / float(np.sum(psf**2))
    sigma = float(mag_to_flux(preset.depth_mag[band])) / (5.0 * np.sqrt(n_eff))
    sky = float(mag_to_flux(preset.sky_mag_arcsec2[band])) * scale**2
    rn = preset.read_noise_e
    # sigma^2 = sky / g + (rn / g)^2, solved for the gain g.
    gain = (sky + np.sqrt(sky**2 + 4.0 * sigma**2 * rn**2)) / (2.0 * sigma**2)
    return BandNoise(fwhm_px, sigma, sky, float(gain), rn, n_eff)
