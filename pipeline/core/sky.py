"""Sky-position helpers: unit vectors, chord radii and nearest-neighbour matching with a k-d tree."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree


def unit_vectors(ra_deg, dec_deg) -> np.ndarray:
    """Cartesian unit vectors (..., 3) of positions in degrees."""
    ra = np.radians(np.asarray(ra_deg, dtype=float))
    dec = np.radians(np.asarray(dec_deg, dtype=float))
    cos_dec = np.cos(dec)
    return np.stack([cos_dec * np.cos(ra), cos_dec * np.sin(ra), np.sin(dec)], axis=-1)


def tan_project(ra, dec, centre) -> tuple[np.ndarray, np.ndarray]:
    """Gnomonic projection of (ra, dec) (deg) around ``centre`` (ra, dec deg): tangent-plane offsets (xi east, eta
    north), deg."""
    ra0, dec0 = np.deg2rad(centre)
    ra, dec = np.deg2rad(np.asarray(ra, float)), np.deg2rad(np.asarray(dec, float))
    cos_c = np.sin(dec0) * np.sin(dec) + np.cos(dec0) * np.cos(dec) * np.cos(ra - ra0)
    xi = np.cos(dec) * np.sin(ra - ra0) / cos_c
    eta = (np.cos(dec0) * np.sin(dec) - np.sin(dec0) * np.cos(dec) * np.cos(ra - ra0)) / cos_c
    return np.rad2deg(xi), np.rad2deg(eta)


def chord(radius_arcsec: float) -> float:
    """Chord length on the unit sphere of an angular separation, so that k-d tree radii are exact angles."""
    return 2.0 * np.sin(np.radians(radius_arcsec / 3600.0) / 2.0)


def separation_arcsec(chord_length) -> np.ndarray:
    return np.degrees(2.0 * np.arcsin(np.clip(np.asarray(chord_length) / 2.0, 0, 1))) * 3600.0


def nearest(ra1, dec1, ra2, dec2, radius_arcsec: float) -> tuple[np.ndarray, np.ndarray]:
    """For each position of set 1, the index of the nearest position of set 2 within the radius (-1 if none).

    Returns ``(index, separation_arcsec)``; separations are ``inf`` where there is no match.
    """
    tree = cKDTree(unit_vectors(ra2, dec2))
    dist, idx = tree.query(unit_vectors(ra1, dec1), k=1, distance_upper_bound=chord(radius_arcsec))
    found = np.isfinite(dist)
    idx = np.where(found, idx, -1)
    sep = np.where(found, separation_arcsec(np.where(found, dist, 0.0)), np.inf)
    return idx, sep


def groups_within(ra, dec, radius_arcsec: float) -> np.ndarray:
    """Friends-of-friends group label of each position: positions closer than the radius share a label."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(ra)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    pairs = cKDTree(unit_vectors(ra, dec)).query_pairs(chord(radius_arcsec), output_type="ndarray")
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    return connected_components(graph, directed=False)[1].astype(np.int64)
