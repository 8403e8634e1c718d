"""Mock spectroscopic surveys drawn from the true catalog, with their quality flags and their failures.

Two flag conventions exist. ``zwarning`` (SDSS): 0 is secure, any set bit is not. ``nq`` (GAMA-like): 3 and 4 are
secure, 1 and 2 are not. Insecure redshifts are often wrong, either confused emission lines or noise peaks; a few
objects observed by an earlier survey get a catastrophically different redshift even with a secure flag, as real
overlapping surveys do, so that matching has to arbitrate.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .presets import SpecSurvey

SCHEMES = {
    "zwarning": {"columns": {"ra": "ra", "dec": "dec", "z": "z", "flag": "zwarning"}, "secure": [0]},
    "nq": {"columns": {"ra": "RA", "dec": "DEC", "z": "Z", "flag": "NQ"}, "secure": [3, 4]},
}
# SDSS ZWARNING bits seen on galaxies: LITTLE_COVERAGE, SMALL_DELTA_CHI2 (most common), MANY_OUTLIERS.
_ZWARNING_BITS = np.array([2, 4, 4, 4, 16])
_CATASTROPHIC_SHARED = 0.03


def _wrong_z(rng, z: np.ndarray) -> np.ndarray:
    """Wrong redshifts: half from confusing H-alpha with [OIII] 5007 (either way), half from a noise peak."""
    ratio = np.where(rng.uniform(size=len(z)) < 0.5, 6563.0 / 5007.0, 5007.0 / 6563.0)
    lines = (1 + z) * ratio - 1
    # Confusion towards negative redshift is impossible for a pipeline fitting z >= 0: take the other direction.
    lines = np.where(lines < 0.01, (1 + z) * 6563.0 / 5007.0 - 1, lines)
    wrong = np.where(rng.uniform(size=len(z)) < 0.5, lines, rng.uniform(0.0, 0.8, len(z)))
    # A "wrong" value that happens to land near the truth would not be a failure.
    too_close = np.abs(wrong - z) < 0.05 * (1 + z)
    wrong[too_close] = z[too_close] + 0.2
    return np.clip(wrong, 0.0, None)


def _flags(rng, scheme: str, insecure: np.ndarray) -> np.ndarray:
    n = len(insecure)
    if scheme == "zwarning":
        return np.where(insecure, rng.choice(_ZWARNING_BITS, n), 0).astype(np.int64)
    secure = np.where(rng.uniform(size=n) < 0.85, 4, 3)
    return np.where(insecure, np.where(rng.uniform(size=n) < 0.6, 2, 1), secure).astype(np.int64)


def mock_survey(
    survey: SpecSurvey, df: pd.DataFrame, rng, observed_before: np.ndarray
) -> tuple[pd.DataFrame, np.ndarray]:
    """Draw one spec-z survey from the catalog ``df``.

    Parameters
    ----------
    survey : SpecSurvey
    df : pandas.DataFrame
        The true catalog (``ra, dec, mag_<band>, z_true, is_star``).
    rng : numpy.random.Generator
    observed_before : ndarray of bool, shape (n,)
        Sources already in an earlier survey; a few of them get a catastrophic redshift here.

    Returns
    -------
    table : pandas.DataFrame
        The survey's own columns (see :data:`SCHEMES`), sorted by right ascension.
    observed : ndarray of bool, shape (n,)
        Which catalog rows this survey observed.
    """
    ra, dec = df["ra"].to_numpy(), df["dec"].to_numpy()
    mag = df[f"mag_{survey.band}"].to_numpy()
    is_star = df["is_star"].to_numpy()
    z_true = df["z_true"].to_numpy()
    lo, hi = ra.min(), ra.max()
    in_region = ra >= hi - survey.region * (hi - lo)
    bright = np.nan_to_num(mag, nan=99.0) <= survey.mag_limit
    if survey.z_max is not None:
        bright &= z_true <= survey.z_max
    draw = rng.uniform(size=len(df))
    observed = in_region & bright & np.where(is_star, draw < survey.stars, draw < survey.completeness)
    idx = np.flatnonzero(observed)
    n = len(idx)
    z = z_true[idx] + rng.normal(0.0, survey.z_scatter, n) * (1 + z_true[idx])
    star = is_star[idx]
    # Stellar radial velocities of a few hundred km/s.
    z[star] = rng.normal(0.0, 5e-4, star.sum())
    insecure = (rng.uniform(size=n) < survey.insecure_fraction) & ~star
    flag = _flags(rng, survey.scheme, insecure)
    p_wrong = 0.5 if survey.scheme == "zwarning" else np.where(flag == 1, 0.8, 0.4)
    wrong = insecure & (rng.uniform(size=n) < p_wrong)
    z[wrong] = _wrong_z(rng, z_true[idx][wrong])
    catastrophic = observed_before[idx] & ~insecure & ~star & (rng.uniform(size=n) < _CATASTROPHIC_SHARED)
    z[catastrophic] = _wrong_z(rng, z_true[idx][catastrophic])
    sigma = survey.pos_scatter_arcsec / 3600.0
    ra_obs = ra[idx] + rng.normal(0.0, sigma, n) / np.cos(np.deg2rad(dec[idx]))
    dec_obs = dec[idx] + rng.normal(0.0, sigma, n)
    names = SCHEMES[survey.scheme]["columns"]
    table = pd.DataFrame(
        {names["ra"]: ra_obs, names["dec"]: dec_obs, names["z"]: np.clip(z, -0.01, None), names["flag"]: flag}
    )
    return table.sort_values(names["ra"], kind="stable").reset_index(drop=True), observed


def describe(survey: SpecSurvey) -> dict:
    """The survey's entry in ``survey.json``: file, column names and accepted (secure) flag values."""
    scheme = SCHEMES[survey.scheme]
    return {
        "file": f"specz/{survey.name}.parquet",
        "columns": scheme["columns"],
        "flag_column": scheme["columns"]["flag"],
        "secure_values": scheme["secure"],
        "selection": f"{survey.band} <= {survey.mag_limit} (observed)",
        "completeness": survey.completeness,
        "region_fraction_of_ra_range": survey.region,
        "position_scatter_arcsec": survey.pos_scatter_arcsec,
    }
