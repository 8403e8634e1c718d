"""Multi-epoch simulated surveys: single exposures of varying quality, with artefacts, as in SDSS Stripe 82.

Each band is observed in ``n`` epochs. An epoch has its own pixel grid (a dither of up to :data:`DITHER_ARCSEC`
and a rotation of up to :data:`ROTATION_DEG` about the field centre), its own seeing (the preset's FWHM times a
log-normal factor), sky brightness and hence depth, and its own photometric zero point: its pixels are in ADU with
``MAGZERO`` in the header, not in nanomaggies. Some epochs carry a satellite trail (a bright line with the PSF's
profile across the whole canvas) and some cosmic rays (sharp hits of one to a few pixels, not convolved with the
PSF). Artefacts are drawn on the epoch's canvas, so overlapping tiles of an epoch agree pixel for pixel, as they do
for the sources and the noise.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .noise import ZERO_POINT, band_noise
from .presets import Preset

DITHER_ARCSEC = 15.0
ROTATION_DEG = 1.0
# Seeing of an epoch: the preset's FWHM times exp(N(0, SEEING_SCATTER)), kept within these factors.
SEEING_SCATTER = 0.15
SEEING_RANGE = (0.75, 1.5)
# Sky of an epoch: the preset's surface brightness plus a uniform offset (mag per arcsec^2; negative is brighter).
SKY_OFFSET_MAG = (-0.5, 0.3)
# Zero points of the epochs' ADU images (AB mag of one ADU).
ZERO_POINT_RANGE = (24.0, 25.0)
TRAIL_PROBABILITY = 0.25
COSMIC_PROBABILITY = 0.5
COSMIC_PER_MPIX = 400.0
TRAIL_PEAK_SIGMA = (20.0, 60.0)  # peak surface brightness of a trail, in sky sigmas per pixel
COSMIC_PEAK_SIGMA = (30.0, 300.0)


@dataclasses.dataclass(frozen=True)
class Epoch:
    """The observing conditions of one epoch of one band.

    ``fwhm_arcsec`` the seeing, ``sky_mag`` the sky (AB mag per arcsec^2), ``depth_mag`` the 5-sigma point-source
    depth, ``zero_point`` the AB magnitude of one ADU, ``trail`` and ``cosmic`` whether the epoch has a satellite
    trail and cosmic rays.
    """

    index: int
    fwhm_arcsec: float
    sky_mag: float
    depth_mag: float
    zero_point: float
    trail: bool
    cosmic: bool

    @property
    def adu_per_nmgy(self) -> float:
        """ADU of one nanomaggy: the factor from the simulation's nanomaggies to this epoch's pixels."""
        return float(10.0 ** (0.4 * (self.zero_point - ZERO_POINT)))

    def preset(self, preset: Preset, band: str) -> Preset:
        """``preset`` with this epoch's seeing, sky and depth in ``band`` (for :func:`band_noise`)."""
        return dataclasses.replace(
            preset,
            psf_fwhm_arcsec={**preset.psf_fwhm_arcsec, band: self.fwhm_arcsec},
            sky_mag_arcsec2={**preset.sky_mag_arcsec2, band: self.sky_mag},
            depth_mag={**preset.depth_mag, band: self.depth_mag},
        )


def draw_epochs(preset: Preset, band: str, n: int, rng) -> list[Epoch]:
    """The conditions of ``n`` epochs of ``band``.

    The depth follows the sky-limited scaling of a point source's flux limit, proportional to the sky noise and the
    seeing: ``depth + 1.25 (sky_mag - sky_mag_preset) - 2.5 log10(fwhm / fwhm_preset)``.
    """
    seeing = np.clip(np.exp(rng.normal(0.0, SEEING_SCATTER, n)), *SEEING_RANGE)
    sky_offset = rng.uniform(*SKY_OFFSET_MAG, n)
    zero_point = rng.uniform(*ZERO_POINT_RANGE, n)
    trail = rng.uniform(size=n) < TRAIL_PROBABILITY
    cosmic = rng.uniform(size=n) < COSMIC_PROBABILITY
    out = []
    for e in range(n):
        fwhm = preset.psf_fwhm_arcsec[band] * seeing[e]
        depth = preset.depth_mag[band] + 1.25 * sky_offset[e] - 2.5 * np.log10(seeing[e])
        out.append(
            Epoch(
                e,
                float(fwhm),
                float(preset.sky_mag_arcsec2[band] + sky_offset[e]),
                float(depth),
                float(zero_point[e]),
                bool(trail[e]),
                bool(cosmic[e]),
            )  # fmt: skip
        )
    return out


def ensure_artefacts(epochs: dict[str, list[Epoch]]) -> dict[str, list[Epoch]]:
    """Make sure the survey has at least one trail and one epoch with cosmic rays (in the first band with more than
    one epoch), so that every multi-epoch survey exercises the clipping."""
    if not any(e.trail for es in epochs.values() for e in es):
        band = next(iter(epochs))
        epochs[band][-1] = dataclasses.replace(epochs[band][-1], trail=True)
    if not any(e.cosmic for es in epochs.values() for e in es):
        band = next(iter(epochs))
        epochs[band][0] = dataclasses.replace(epochs[band][0], cosmic=True)
    return epochs


def draw_artefacts(epoch: Epoch, canvas: int, sigma_pix: float, fwhm_px: float, rng) -> dict:
    """The artefacts of an epoch on its ``canvas`` x ``canvas`` grid, in nanomaggies per pixel.

    Returns ``trail`` (None, or a dict of a point ``x, y`` on it, its direction ``angle`` in radians, its Gaussian
    ``sigma`` and ``peak`` per pixel) and ``cosmic`` (rows of x, y, length in pixels, angle, peak).
    """
    out: dict = {"trail": None, "cosmic": np.zeros((0, 5))}
    if epoch.trail:
        out["trail"] = {
            "x": float(rng.uniform(0.3, 0.7) * canvas),
            "y": float(rng.uniform(0.3, 0.7) * canvas),
            "angle": float(rng.uniform(0.0, np.pi)),
            "sigma": float(fwhm_px / 2.3548),
            "peak": float(rng.uniform(*TRAIL_PEAK_SIGMA) * sigma_pix),
        }
    if epoch.cosmic:
        n = rng.poisson(COSMIC_PER_MPIX * canvas * canvas / 1e6)
        out["cosmic"] = np.column_stack(
            [
                rng.uniform(0, canvas, n), rng.uniform(0, canvas, n), rng.integers(1, 4, n),
                rng.uniform(0.0, np.pi, n), rng.uniform(*COSMIC_PEAK_SIGMA, n) * sigma_pix,
            ]
        )  # fmt: skip
    return out


def add_artefacts(img: np.ndarray, artefacts: dict, x0: int, y0: int) -> None:
    """Add the artefacts of an epoch's canvas to its tile ``img`` whose 0-based corner is (x0, y0)."""
    ny, nx = img.shape
    trail = artefacts.get("trail")
    if trail:
        yy, xx = np.mgrid[y0 : y0 + ny, x0 : x0 + nx]
        # distance of each pixel centre to the line through (x, y) along angle
        d = (xx - trail["x"]) * np.sin(trail["angle"]) - (yy - trail["y"]) * np.cos(trail["angle"])
        img += trail["peak"] * np.exp(-0.5 * (d / trail["sigma"]) ** 2)
    for x, y, length, angle, peak in artefacts.get("cosmic", ()):
        for step in range(int(length)):
            ix = int(np.floor(x + step * np.cos(angle))) - x0
            iy = int(np.floor(y + step * np.sin(angle))) - y0
            if 0 <= ix < nx and 0 <= iy < ny:
                img[iy, ix] += peak


def describe(epoch: Epoch, band: str, preset: Preset, artefacts: dict) -> dict:
    """What ``survey.json`` records of an epoch."""
    noise = band_noise(epoch.preset(preset, band), band)
    trail = artefacts.get("trail")
    return {
        "epoch": epoch.index,
        "psf_fwhm_arcsec": epoch.fwhm_arcsec,
        "sky_mag_arcsec2": epoch.sky_mag,
        "depth_5sigma_mag": epoch.depth_mag,
        "zero_point": epoch.zero_point,
        "sky_noise_nmgy_per_pixel": noise.sigma_pix,
        "trail": None if trail is None else {k: float(v) for k, v in trail.items()},
        "n_cosmic_rays": len(artefacts.get("cosmic", ())),
    }
