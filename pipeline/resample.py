"""Numeric kernels of the cutout step: the gnomonic grid, NaN-aware interpolation and the local pixel-area ratio.

Everything here is plain vectorised numpy over a batch of sources; :mod:`pipeline.cutouts` does the files, the
footprints and the bookkeeping.
"""

from __future__ import annotations

import numpy as np

# Kernel half-width in input pixels: the taps used around floor(x) are base - (n - 1) .. base + n.
KERNEL_HALF_WIDTH = {"bilinear": 1, "lanczos3": 3}


def tan_grid(size: int, pixel_scale_arcsec: float) -> tuple[np.ndarray, np.ndarray]:
    """Tangent-plane coordinates of the output pixel centres, the same for every source.

    Parameters
    ----------
    size : int
        Cutout side in pixels.
    pixel_scale_arcsec : float
        Output pixel scale in arcsec.

    Returns
    -------
    xi, eta : ndarray, shape (size, size)
        Gnomonic standard coordinates (radians on the tangent plane), indexed ``[row, col]``: ``xi`` grows to the
        east, which is towards decreasing column (east left), ``eta`` grows to the north with the row (north up
        when row 0 is drawn at the bottom, FITS ``origin='lower'``). The source sits at the array centre,
        pixel ``((size - 1) / 2, (size - 1) / 2)``.
    """
    step = np.deg2rad(pixel_scale_arcsec / 3600.0)
    offset = np.arange(size) - (size - 1) / 2.0
    eta, col = np.meshgrid(offset, offset, indexing="ij")
    return -col * step, eta * step


def tan_to_sky(ra0, dec0, xi, eta) -> tuple[np.ndarray, np.ndarray]:
    """Inverse gnomonic projection about many tangent points at once.

    Parameters
    ----------
    ra0, dec0 : array_like, shape (B,)
        Tangent points in degrees.
    xi, eta : ndarray, shape (S, S)
        Tangent-plane coordinates in radians (see :func:`tan_grid`).

    Returns
    -------
    ra, dec : ndarray, shape (B, S, S)
        Sky coordinates in degrees, ``ra`` in [0, 360).
    """
    ra0 = np.deg2rad(np.asarray(ra0, dtype=float))[:, None, None]
    dec0 = np.deg2rad(np.asarray(dec0, dtype=float))[:, None, None]
    # The point c0 + xi * east + eta * north, in the frame rotated so that ra0 = 0; exact and pole-safe.
    x = np.cos(dec0) - eta * np.sin(dec0)
    z = np.sin(dec0) + eta * np.cos(dec0)
    ra = np.rad2deg(ra0 + np.arctan2(xi, x)) % 360.0
    dec = np.rad2deg(np.arctan2(z, np.hypot(xi, x)))
    return ra, dec


def _lanczos3(t: np.ndarray) -> np.ndarray:
    out = np.sinc(t) * np.sinc(t / 3.0)
    return np.where(np.abs(t) < 3.0, out, 0.0)


def _weights(frac: np.ndarray, method: str) -> np.ndarray:
    """Normalised 1-D weights of the taps ``base - n + 1 .. base + n`` for offsets ``frac`` in [0, 1)."""
    if method == "bilinear":
        return np.stack([1.0 - frac, frac], axis=-1)
    n = KERNEL_HALF_WIDTH[method]
    k = np.arange(-n + 1, n + 1)
    w = _lanczos3(frac[..., None] - k)
    # Normalised like SWarp, so a flat image stays flat whatever the sub-pixel phase.
    return w / w.sum(axis=-1, keepdims=True)


def interpolate(image: np.ndarray, x: np.ndarray, y: np.ndarray, method: str = "lanczos3"):
    """Sample ``image`` at pixel positions, NaN-aware.

    Parameters
    ----------
    image : ndarray, shape (ny, nx)
        Input pixels (any real dtype, may be a memory map: only the touched pixels are read).
    x, y : ndarray, shape (...)
        0-based pixel coordinates (column, row), pixel centres at integers, as ``wcs.all_world2pix(..., 0)``.
    method : {"bilinear", "lanczos3"}
        Bilinear (2 x 2 taps) or separable Lanczos-3 (6 x 6 taps, a = 3).

    Returns
    -------
    values : ndarray, shape (...), float64
        Interpolated values in the image's units (per input pixel); 0 where invalid.
    valid : ndarray of bool, shape (...)
        False where the kernel support leaves the image or holds a NaN/inf pixel, or the position is not finite.
    """
    if method not in KERNEL_HALF_WIDTH:
        raise ValueError(f"interpolation must be one of {sorted(KERNEL_HALF_WIDTH)}, not {method!r}")
    n = KERNEL_HALF_WIDTH[method]
    ny, nx = image.shape
    shape = x.shape
    x = x.reshape(-1)
    y = y.reshape(-1)
    finite = np.isfinite(x) & np.isfinite(y)
    xs = np.where(finite, x, 0.0)
    ys = np.where(finite, y, 0.0)
    bx = np.floor(xs).astype(np.int64)
    by = np.floor(ys).astype(np.int64)
    inside = finite & (bx - n + 1 >= 0) & (bx + n <= nx - 1) & (by - n + 1 >= 0) & (by + n <= ny - 1)
    values = np.zeros(x.shape, dtype=np.float64)
    valid = inside.copy()
    idx = np.flatnonzero(inside)
    if idx.size:
        taps = np.arange(-n + 1, n + 1)
        cols = bx[idx, None] + taps
        rows = by[idx, None] + taps
        patch = np.asarray(image[rows[:, :, None], cols[:, None, :]], dtype=np.float64)
        good = np.isfinite(patch).all(axis=(1, 2))
        wx = _weights(xs[idx] - bx[idx], method)
        wy = _weights(ys[idx] - by[idx], method)
        patch = np.where(np.isfinite(patch), patch, 0.0)
        values[idx] = np.where(good, np.einsum("pi,pij,pj->p", wy, patch, wx), 0.0)
        valid[idx] = good
    return values.reshape(shape), valid.reshape(shape)


def edge_distance(x: np.ndarray, y: np.ndarray, nx: int, ny: int) -> np.ndarray:
    """Distance in input pixels from each position to the nearest image edge (larger is safer)."""
    return np.minimum(np.minimum(x + 0.5, nx - 0.5 - x), np.minimum(y + 0.5, ny - 0.5 - y))


def area_ratio(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Input pixels per output pixel, ``|det d(x, y) / d(col, row)|``, from the mapped output grid.

    Parameters
    ----------
    x, y : ndarray, shape (B, S, S)
        Input pixel coordinates of the output pixel centres (``[batch, row, col]``).

    Returns
    -------
    ndarray, shape (B, S, S)
        The local Jacobian determinant of the output-to-input mapping; multiplying a flux per input pixel by it
        gives a flux per output pixel (it is the ratio of output to input pixel area on the sky, distortion
        included).
    """
    dx_dr, dx_dc = np.gradient(x, axis=(1, 2))
    dy_dr, dy_dc = np.gradient(y, axis=(1, 2))
    return np.abs(dx_dc * dy_dr - dx_dr * dy_dc)


def clipped_median(values: np.ndarray, valid: np.ndarray, nsigma: float = 3.0, iters: int = 5) -> np.ndarray:
    """Sigma-clipped median along the last axis, over the valid entries only (MAD-based sigma).

    Parameters
    ----------
    values : ndarray, shape (B, P)
    valid : ndarray of bool, shape (B, P)

    Returns
    -------
    ndarray, shape (B,)
        The clipped median; 0 for rows without any valid entry.
    """
    data = np.where(valid, values, np.nan)
    empty = ~valid.any(axis=-1)
    data[empty] = 0.0
    for _ in range(iters):
        med = np.nanmedian(data, axis=-1, keepdims=True)
        sigma = 1.4826 * np.nanmedian(np.abs(data - med), axis=-1, keepdims=True)
        keep = np.abs(data - med) <= nsigma * sigma
        # Rows whose sigma is 0 (flat sky) would clip everything off the median: leave them alone.
        keep |= sigma == 0
        clipped = np.where(keep, data, np.nan)
        if np.array_equal(np.isnan(clipped), np.isnan(data)):
            break
        data = clipped
    med = np.nanmedian(data, axis=-1)
    return np.where(empty, 0.0, med)
