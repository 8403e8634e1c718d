"""Spectral energy distributions through real filters: galaxy templates, stars and Galactic extinction.

Galaxies use the Coleman, Wu & Weedman (1980) templates shipped with GalSim (extended by Bolzonella et al. 2000),
mixed linearly between neighbours along a continuous type index ``t`` (0 = E, 1 = Sbc, 2 = Scd, 3 = Im). Magnitudes
are AB, computed by integrating photon counts through the filter curves (speclite names such as ``sdss2010-r``, or
astro-sedpy names such as ``vista_vircam_J`` for the near-infrared); the templates' absolute
normalisation is arbitrary, so grid magnitudes are only meaningful as colours and as K-corrections
``K(t, z) = m(t, z) - m(t, 0)``.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

TEMPLATES = ("E", "Sbc", "Scd", "Im")
# Extra internal reddening E(B-V) of the disk component at t = 0..3 (bulges are dust free); the CWW templates
# already carry typical dust, so this is small and only makes disks redder than their bulges less often.
_DISK_EBV_INT = (0.0, 0.06, 0.08, 0.04)
R_V = 3.1
# Inclination reddening of disks: E(B-V) added to a disk of axis ratio q is INCLINATION_EBV * log10(1 / q), about
# 0.17 for a nearly edge-on q = 0.2, as edge-on spirals are redder and fainter than face-on ones of the same type
# (Tully et al. 1998; Masters et al. 2010: ~0.2 mag in g - r edge-on); face-on disks keep the templates' dust.
INCLINATION_EBV = 0.25
_C_AA_S = 2.99792458e18
_T_GRID = np.linspace(0.0, 3.0, 31)
_Z_GRID = np.linspace(0.0, 2.0, 401)


def ccm_odonnell(wave_aa: np.ndarray, r_v: float = R_V) -> np.ndarray:
    """Extinction curve A(lambda) / A(V) of Cardelli, Clayton & Mathis (1989) with O'Donnell (1994) optical terms.

    Parameters
    ----------
    wave_aa : array
        Wavelengths in Angstrom; clipped to the curve's validity range 1250 A - 3.3 micron.
    r_v : float
        Total-to-selective extinction ratio.
    """
    x = np.clip(1e4 / np.asarray(wave_aa, dtype=float), 0.3, 8.0)
    a = np.zeros_like(x)
    b = np.zeros_like(x)
    ir = x < 1.1
    a[ir], b[ir] = 0.574 * x[ir] ** 1.61, -0.527 * x[ir] ** 1.61
    opt = (x >= 1.1) & (x < 3.3)
    y = x[opt] - 1.82
    a[opt] = np.polyval([-0.505, 1.647, -0.827, -1.718, 1.137, 0.701, -0.609, 0.104, 1.0], y)
    b[opt] = np.polyval([3.347, -10.805, 5.491, 11.102, -7.985, -3.989, 2.908, 1.952, 0.0], y)
    uv = x >= 3.3
    xu = x[uv]
    fa = np.where(xu > 5.9, -0.04473 * (xu - 5.9) ** 2 - 0.009779 * (xu - 5.9) ** 3, 0.0)
    fb = np.where(xu > 5.9, 0.2130 * (xu - 5.9) ** 2 + 0.1207 * (xu - 5.9) ** 3, 0.0)
    a[uv] = 1.752 - 0.316 * xu - 0.104 / ((xu - 4.67) ** 2 + 0.341) + fa
    b[uv] = -3.090 + 1.825 * xu + 1.206 / ((xu - 4.62) ** 2 + 0.263) + fb
    return a + b / r_v


class _Curve:
    """A filter transmission curve: ``wavelength`` (Angstrom) and ``response``, the two things the grids use."""

    def __init__(self, name: str, wavelength, response):
        self.name = name
        self.wavelength = np.asarray(wavelength, float)
        self.response = np.asarray(response, float)

    @property
    def effective_wavelength_aa(self) -> float:
        """Photon-weighted mean wavelength, Angstrom (speclite's definition)."""
        lam, resp = self.wavelength, self.response
        return float(np.trapezoid(resp * lam**2, lam) / np.trapezoid(resp * lam, lam))


@functools.cache
def _filter(name: str) -> _Curve:
    """The filter curve called ``name``: a speclite ``group-band`` name, else an astro-sedpy name.

    Raises a ``ValueError`` naming the filter and where to look for valid names.
    """
    import speclite.filters

    try:
        f = speclite.filters.load_filter(name)
        return _Curve(name, f.wavelength, f.response)
    except (ValueError, OSError):
        pass
    try:
        from sedpy import observate

        if name in observate.list_available_filters():
            f = observate.load_filters([name])[0]
            return _Curve(name, f.wavelength, f.transmission)
    except ImportError:  # pragma: no cover - sedpy is a dependency
        pass
    raise ValueError(
        f"unknown filter curve {name!r}: give a speclite name (e.g. 'sdss2010-r', 'hsc2017-y', "
        "'cfht_megacam-ustar') or an astro-sedpy one (e.g. 'vista_vircam_J'; see "
        "sedpy.observate.list_available_filters())"
    )


def check_filters(filters: dict[str, str]) -> None:
    """Raise a ``ValueError`` naming the band if any of ``filters`` (band -> curve name) cannot be loaded."""
    for band, name in filters.items():
        try:
            _filter(name)
        except ValueError as err:
            raise ValueError(f"band {band!r}: {err}") from None


def extinction_coefficients(filters: dict[str, str]) -> dict[str, float]:
    """``R_band = A_band / E(B-V)`` for each band, from the CCM/O'Donnell curve (R_V = 3.1) at the filter's
    effective wavelength (SDSS: u 4.8, g 3.7, r 2.7, i 2.0, z 1.5, close to Schlafly & Finkbeiner 2011)."""
    out = {}
    for band, name in filters.items():
        lam = _filter(name).effective_wavelength_aa
        out[band] = float(R_V * ccm_odonnell(np.array([lam]))[0])
    return out


@functools.cache
def _templates() -> tuple[np.ndarray, np.ndarray]:
    """Rest-frame wavelengths (Angstrom, shape (n_wave,)) and f_lambda of the four templates normalised at 5500 A
    (shape (4, n_wave))."""
    import galsim

    share = Path(galsim.meta_data.share_dir) / "SEDs"
    waves = [np.loadtxt(share / f"CWW_{t}_ext.sed", unpack=True) for t in TEMPLATES]
    wave = np.unique(np.concatenate([w[0] for w in waves]))
    flux = np.array([np.interp(wave, w, f) for w, f in waves])
    # The templates stop at 2.2 micron: continue them as the Rayleigh-Jeans tail of old stars (f_lambda ~ lambda^-4)
    # so that a K band at low redshift sees light rather than zeros.
    tail = np.geomspace(wave[-1], 60000.0, 40)[1:]
    flux = np.concatenate([flux, flux[:, -1:] * (tail / wave[-1])[None, :] ** -4.0], axis=1)
    wave = np.concatenate([wave, tail])
    flux /= np.array([np.interp(5500.0, wave, f) for f in flux])[:, None]
    return wave, flux


def galaxy_sed(t: float, ebv_int: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Rest-frame SED of continuous type ``t`` in [0, 3]: wavelengths (Angstrom) and f_lambda (arbitrary units)."""
    wave, flux = _templates()
    t = float(np.clip(t, 0.0, 3.0))
    i = min(int(t), 2)
    w = t - i
    sed = (1.0 - w) * flux[i] + w * flux[i + 1]
    if ebv_int > 0:
        sed = sed * 10.0 ** (-0.4 * R_V * ebv_int * ccm_odonnell(wave))
    return wave, sed


def _ab_mags(wave_obs: np.ndarray, flam: np.ndarray, filter_name: str) -> np.ndarray:
    """AB magnitudes (arbitrary zero point shared by all calls) of spectra ``flam`` (shape (..., n_wave)) sampled at
    observed wavelengths ``wave_obs`` (Angstrom, shape (..., n_wave)) through one filter (photon counting)."""
    filt = _filter(filter_name)
    lam = filt.wavelength
    resp = filt.response
    # Interpolate each spectrum onto the filter grid: photon-weighted integral of f_lambda over the AB reference.
    flat_w = wave_obs.reshape(-1, wave_obs.shape[-1])
    flat_f = flam.reshape(-1, flam.shape[-1])
    on_filter = np.array([np.interp(lam, w, f, left=0.0, right=0.0) for w, f in zip(flat_w, flat_f, strict=True)])
    num = np.trapezoid(on_filter * resp * lam, lam, axis=-1)
    den = np.trapezoid(3.631e-20 * _C_AA_S / lam**2 * resp * lam, lam)
    with np.errstate(divide="ignore"):
        return (-2.5 * np.log10(num / den)).reshape(flam.shape[:-1])


class ColourGrid:
    """Magnitudes of bulge and disk SEDs on a (type x redshift) grid, computed once and interpolated bilinearly.

    ``bulge`` is the dust-free E template; ``disk`` is the template of type ``max(t, 1)`` with the internal
    reddening of :data:`_DISK_EBV_INT`. Grids have shape (n_bands, n_t, n_z), in AB magnitudes up to a constant.
    """

    def __init__(self, filters: dict[str, str]):
        self.bands = list(filters)
        self.lam_eff = np.array([_filter(name).effective_wavelength_aa for name in filters.values()])
        self.t_grid = _T_GRID
        self.z_grid = _Z_GRID
        one_plus_z = 1.0 + self.z_grid[:, None]
        disk = []
        for t in self.t_grid:
            ebv_int = float(np.interp(t, np.arange(4.0), _DISK_EBV_INT))
            disk.append(galaxy_sed(max(t, 1.0), ebv_int)[1])
        wave, bulge = galaxy_sed(0.0)
        # Observed f_lambda of a rest-frame SED at redshift z is f(lambda / (1 + z)) / (1 + z) at fixed distance.
        obs_wave = np.broadcast_to(wave[None, :] * one_plus_z, (len(self.z_grid), len(wave)))
        self.bulge = np.empty((len(self.bands), len(self.t_grid), len(self.z_grid)))
        self.disk = np.empty_like(self.bulge)
        for k, band in enumerate(self.bands):
            mb = _ab_mags(obs_wave, bulge[None, :] / one_plus_z, filters[band])
            self.bulge[k] = mb[None, :]
            for j, sed in enumerate(disk):
                self.disk[k, j] = _ab_mags(obs_wave, sed[None, :] / one_plus_z, filters[band])

    def _interp(self, grid: np.ndarray, t: np.ndarray, z: np.ndarray) -> np.ndarray:
        t = np.clip(np.asarray(t, float), self.t_grid[0], self.t_grid[-1])
        z = np.clip(np.asarray(z, float), self.z_grid[0], self.z_grid[-1])
        ft = (t - self.t_grid[0]) / (self.t_grid[1] - self.t_grid[0])
        fz = (z - self.z_grid[0]) / (self.z_grid[1] - self.z_grid[0])
        it = np.minimum(ft.astype(int), len(self.t_grid) - 2)
        iz = np.minimum(fz.astype(int), len(self.z_grid) - 2)
        wt, wz = ft - it, fz - iz
        g = grid
        out = (
            g[:, it, iz] * (1 - wt) * (1 - wz)
            + g[:, it + 1, iz] * wt * (1 - wz)
            + g[:, it, iz + 1] * (1 - wt) * wz
            + g[:, it + 1, iz + 1] * wt * wz
        )
        return out.T

    def component_mags(self, t: np.ndarray, z: np.ndarray, disk_ebv=None) -> tuple[np.ndarray, np.ndarray]:
        """Bulge and disk magnitudes, each of shape (n, n_bands), for types ``t`` and redshifts ``z`` (shape (n,));
        ``disk_ebv`` (shape (n,)) reddens each disk further in its rest frame (:func:`inclination_ebv`)."""
        mb, md = self._interp(self.bulge, t, z), self._interp(self.disk, t, z)
        if disk_ebv is not None:
            # at each band's effective wavelength, shifted to the rest frame: broad-band accuracy is enough here
            rest = self.lam_eff[None, :] / (1.0 + np.asarray(z, float)[:, None])
            md = md + R_V * np.asarray(disk_ebv, float)[:, None] * ccm_odonnell(rest)
        return mb, md

    def galaxy_mags(self, t, z, bt_ref, ref_band: str, disk_ebv=None) -> np.ndarray:
        """Magnitudes (shape (n, n_bands)) of galaxies with bulge-to-total flux ratio ``bt_ref`` in ``ref_band``,
        normalised so that the reference band reads 0: add the reference-band magnitude to get apparent ones."""
        mb, md = self.component_mags(t, z, disk_ebv)
        k = self.bands.index(ref_band)
        bt_ref = np.asarray(bt_ref, float)[:, None]
        fb = bt_ref * 10 ** (-0.4 * (mb - mb[:, k : k + 1]))
        fd = (1 - bt_ref) * 10 ** (-0.4 * (md - md[:, k : k + 1]))
        return -2.5 * np.log10(fb + fd)


# Scatter of the bulge-to-total ratio at fixed type: real galaxies of one Hubble type span ~0.1-0.2 in B/T
# (Simien & de Vaucouleurs 1986; Graham & Worley 2008), so that morphology hints at the type without naming it.
BT_SCATTER = 0.12


def bulge_to_total(t: np.ndarray, rng=None) -> np.ndarray:
    """Bulge-to-total flux ratio in the reference band as a function of type: 0.85 for E, none for Im on average;
    with ``rng``, each galaxy scattered by :data:`BT_SCATTER` around that relation, within [0, 0.95]."""
    bt = 0.85 * np.clip(1.0 - np.asarray(t, float) / 3.0, 0.0, 1.0) ** 2
    if rng is None:
        return bt
    return np.clip(bt + rng.normal(0.0, BT_SCATTER, bt.shape), 0.0, 0.95)


def inclination_ebv(q_disk: np.ndarray) -> np.ndarray:
    """E(B-V) that inclination adds to disks of axis ratio ``q_disk`` (see :data:`INCLINATION_EBV`)."""
    return INCLINATION_EBV * np.log10(1.0 / np.clip(np.asarray(q_disk, float), 0.05, 1.0))


def star_colours(temperature_k: np.ndarray, filters: dict[str, str], ref_band: str) -> np.ndarray:
    """Colours of blackbody stars: magnitudes (shape (n, n_bands)) minus the reference-band magnitude."""
    t_grid = np.geomspace(2500.0, 30000.0, 120)
    wave = np.linspace(1000.0, 40000.0, 8000)
    # Planck's law in f_lambda; the constant in front cancels in colours.
    flam = 1.0 / wave**5 / np.expm1(1.4387769e8 / (wave[None, :] * t_grid[:, None]))
    grid = np.array([_ab_mags(np.broadcast_to(wave, flam.shape), flam, name) for name in filters.values()])
    grid -= grid[list(filters).index(ref_band)]
    return np.array([np.interp(np.asarray(temperature_k, float), t_grid, g) for g in grid]).T
