"""Numeric kernels of the cutout step: the gnomonic grid, NaN-aware interpolation and the local pixel-area ratio.

Everything here is plain vectorised numpy over a batch of sources; :mod:`pipeline.steps.cutouts` does the files, the
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


def tan_wcs(ra: float, dec: float, size: int, pixel_scale_arcsec: float):
    """The astropy WCS of the grid of :func:`tan_grid` centred at (ra, dec) (deg): TAN, north up, east left, the
    centre at pixel ((size - 1) / 2, (size - 1) / 2) (0-based)."""
    from astropy.wcs import WCS

    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [(size + 1) / 2, (size + 1) / 2]
    w.wcs.cdelt = [-pixel_scale_arcsec / 3600, pixel_scale_arcsec / 3600]
    return w


def _lanczos3(t: np.ndarray) -> np.ndarray:
    out = np.sinc(t) * np.sinc(t / 3.0)
    return np.where(np.abs(t) < 3.0, out, 0.0)


def _weights(frac: np.ndarray, method: str) -> np.ndarray:
    """Normalised 1-D weights of the taps ``base - n + 1 .. base + n`` for offsets ``frac`` in [0, 1).

    The plain definition (``np.sinc``), kept as the reference that :func:`_weights_fast` is tested against.
    """
    if method == "bilinear":
        return np.stack([1.0 - frac, frac], axis=-1)
    n = KERNEL_HALF_WIDTH[method]
    k = np.arange(-n + 1, n + 1)
    w = _lanczos3(frac[..., None] - k)
    # Normalised like SWarp, so a flat image stays flat whatever the sub-pixel phase.
    return w / w.sum(axis=-1, keepdims=True)


_TAPS3 = np.arange(-2, 4)


def _even_poly(fn, degree: int) -> tuple[float, ...]:
    """Least-squares Chebyshev fit of ``fn(a)`` as a polynomial in ``a^2`` over ``a`` in [0, pi / 3]: the
    coefficients of ``a^0, a^2, ...``."""
    a = np.linspace(0.0, np.pi / 3.0, 2001)
    fit = np.polynomial.chebyshev.Chebyshev.fit(a * a, fn(a), degree)
    return tuple(float(c) for c in fit.convert(kind=np.polynomial.Polynomial).coef)


# sin(a) / a and (sqrt(3) / 2) cos(a) over a in [0, pi / 3], to 5e-13 and 5e-12: numpy's own sin and cos cost as
# much as the rest of the weights together.
_SINC_POLY = _even_poly(lambda a: np.sinc(a / np.pi), 5)
_COS_POLY = _even_poly(lambda a: np.sqrt(3.0) / 2.0 * np.cos(a), 5)
# The precision of the Lanczos-3 taps, weights and sums. float32, as SWarp samples and as the cubes are stored: a
# third faster than float64 and within 5e-7 of the peak of the exact float64 kernel, far below any image's noise;
# float64 keeps the 1e-7 of the plain kernel (bench/bench_cutouts.py prints both gaps).
SAMPLE_DTYPE = np.float32
# Output positions resampled per pass of the Lanczos kernel (its taps: 36 x CHUNK).
CHUNK = 16384


def _horner(a2: np.ndarray, coeffs) -> np.ndarray:
    out = a2 * coeffs[-1]
    out += coeffs[-2]
    for c in coeffs[-3::-1]:
        out *= a2
        out += c
    return out


def _weights_fast(frac: np.ndarray, normalise: bool = True) -> np.ndarray:
    """Lanczos-3 weights of the taps -2 .. 3 for offsets ``frac`` (shape (P,), in [0, 1)): (6, P) of SAMPLE_DTYPE.

    Equal to :func:`_weights` (transposed) to 1e-9 in float64 (1e-6 in float32). ``sinc(f - k) sinc((f - k) / 3)``
    is proportional to ``(-1)^k sin(pi (f - k) / 3) / (f - k)^2`` (the common factor ``sin(pi f)`` cancels in the
    normalisation), and the six numerators take only three values, ``sin(a)`` and ``sin(a +- pi / 3)`` with ``a = pi
    f / 3``, which follow from ``sin(a)`` and ``cos(a)`` (short polynomials here). ``f`` is kept 1e-9 (float32:
    1e-6) away from the taps, which moves a weight by about that times its slope at most. Tap-major output: every
    operation runs along the long axis. Unless ``normalise``, the weights are left unnormalised (the caller divides
    by their sum).
    """
    f32 = SAMPLE_DTYPE
    eps = 1e-9 if f32 == np.float64 else 1e-6  # away from the taps, where 0 / 0 would be (1 - 1e-9 is 1 in float32)
    f = np.clip(np.asarray(frac).reshape(-1), eps, 1.0 - eps).astype(f32, copy=False)
    a = f * f32(np.pi / 3.0)
    a2 = a * a
    s0 = _horner(a2, _SINC_POLY)
    s0 *= a
    c = _horner(a2, _COS_POLY)
    nhalf = s0 * f32(-0.5)
    neg_plus = nhalf - c  # -sin(a + pi / 3)
    neg_minus = c + nhalf  # -sin(a - pi / 3)
    numerators = (neg_minus, neg_plus, s0, neg_minus, neg_plus, s0)  # with the signs (-1)^k
    w = np.empty((6, f.size), dtype=f32)
    d = np.empty_like(f)
    for k, tap in enumerate(_TAPS3):
        np.subtract(f, f32(tap), out=d)
        d *= d
        np.divide(numerators[k], d, out=w[k])
    if normalise:
        w *= 1.0 / w.sum(axis=0)
    return w


def interpolate(image: np.ndarray, x: np.ndarray, y: np.ndarray, method: str = "lanczos3", weight=None):
    """Sample ``image`` at pixel positions, NaN-aware.

    Parameters
    ----------
    image : ndarray, shape (ny, nx)
        Input pixels (any real dtype and byte order, may be a memory map: only the touched pixels are read).
    x, y : ndarray, shape (...)
        0-based pixel coordinates (column, row), pixel centres at integers, as ``wcs.all_world2pix(..., 0)``.
        With two or more dimensions, the first one indexes groups of nearby positions (the cutouts of a batch):
        Lanczos-3 copies each group's bounding box of input pixels once and gathers its taps there.
    method : {"bilinear", "lanczos3"}
        Bilinear (2 x 2 taps) or separable Lanczos-3 (6 x 6 taps, a = 3, weights normalised to sum 1).
    weight : ndarray, shape (ny, nx), optional
        A weight map of the image: its pixels that are not > 0 (or not finite) count as NaN pixels.

    Returns
    -------
    values : ndarray, shape (...), float64
        Interpolated values in the image's units (per input pixel); 0 where invalid.
    valid : ndarray of bool, shape (...)
        False where the kernel support leaves the image or holds a NaN/inf pixel (or a pixel of no weight), or the
        position is not finite.
    """
    if method not in KERNEL_HALF_WIDTH:
        raise ValueError(f"interpolation must be one of {sorted(KERNEL_HALF_WIDTH)}, not {method!r}")
    n = KERNEL_HALF_WIDTH[method]
    ny, nx = image.shape
    shape = x.shape
    x = x.reshape(-1)
    y = y.reshape(-1)
    with np.errstate(invalid="ignore"):
        inside = (x >= n - 1) & (x < nx - n) & (y >= n - 1) & (y < ny - n)
    if not inside.all():
        x = np.where(inside, x, n - 1.0)
        y = np.where(inside, y, n - 1.0)
    bx = x.astype(np.int64)  # floor: x >= 0 here
    by = y.astype(np.int64)
    fx = x - bx
    fy = y - by
    if method == "bilinear":
        flat = image.reshape(-1)
        base = by * nx + bx
        v00 = np.take(flat, base).astype(np.float64)
        v01 = np.take(flat, base + 1).astype(np.float64)
        v10 = np.take(flat, base + nx).astype(np.float64)
        v11 = np.take(flat, base + (nx + 1)).astype(np.float64)
        top = v00 + (v01 - v00) * fx
        bottom = v10 + (v11 - v10) * fx
        values = top + (bottom - top) * fy
        if weight is not None:
            wflat = weight.reshape(-1)
            for offset in (0, 1, nx, nx + 1):
                values[~(np.take(wflat, base + offset) > 0)] = np.nan
    else:
        groups = shape[0] if len(shape) >= 2 and shape[0] > 0 else 1
        values = _lanczos3_sample(
            image, bx.reshape(groups, -1), by.reshape(groups, -1), fx, fy, inside.reshape(groups, -1), weight
        )
    with np.errstate(invalid="ignore"):
        valid = inside & np.isfinite(values)
    values = np.where(valid, values, 0.0)
    return values.reshape(shape), valid.reshape(shape)


def _lanczos3_sample(image, bx, by, fx, fy, inside, weight=None) -> np.ndarray:
    """Lanczos-3 values (flat, float64) at the positions ``(bx + fx, by + fy)`` of groups (G, M) of positions.

    Each group's taps are copied once as a box of pixels (a memory-mapped, big-endian image is read and converted
    once, and the gathers below hit a small array in the cache). Then, in chunks of :data:`CHUNK`
    positions, each of the 36 taps is gathered from the box shifted by the tap's offset (one index array for all
    taps) into a tap-major (36, P) array, and combined with the separable weights, normalised once at the end.
    Every numpy operation runs along the long axis of positions: several times faster than 6 x 6 patches per
    position.
    """
    groups, m = bx.shape
    if not inside.any():
        return np.zeros(groups * m)
    x0 = np.zeros(groups, dtype=np.int64)
    y0 = np.zeros(groups, dtype=np.int64)
    ext = np.zeros((groups, 2), dtype=np.int64)
    everywhere = inside.all(axis=1)
    for g in range(groups):
        if everywhere[g]:
            xs, ys = bx[g], by[g]
        elif inside[g].any():
            xs, ys = bx[g][inside[g]], by[g][inside[g]]
        else:
            continue
        x0[g], y0[g] = xs.min() - 2, ys.min() - 2
        ext[g] = ys.max() + 4 - y0[g], xs.max() + 4 - x0[g]
    h, w = (max(1, int(v)) for v in ext.max(axis=0))
    box = np.zeros((groups, h, w), dtype=SAMPLE_DTYPE)
    for g in range(groups):
        if ext[g, 0]:
            region = (slice(y0[g], y0[g] + ext[g, 0]), slice(x0[g], x0[g] + ext[g, 1]))
            box[g, : ext[g, 0], : ext[g, 1]] = image[region]
            if weight is not None:
                box[g, : ext[g, 0], : ext[g, 1]][~(weight[region] > 0)] = np.nan
    flat = box.reshape(-1)
    # Flat index of each position's first tap (row -2, column -2); outside positions read a valid dummy tap.
    start = by * w
    start += bx
    start += (np.arange(groups) * (h * w) - (y0 + 2) * w - (x0 + 2))[:, None]
    start = (start if everywhere.all() else np.where(inside, start, 0)).reshape(-1)
    offsets = [j * w + i for j in range(6) for i in range(6)]
    values = np.empty(groups * m)
    taps = np.empty((36, min(CHUNK, values.size)), dtype=SAMPLE_DTYPE)
    for a in range(0, values.size, CHUNK):
        part = slice(a, a + CHUNK)
        first = start[part]
        t = taps[:, : first.size]
        for k, offset in enumerate(offsets):
            np.take(flat[offset:], first, out=t[k], mode="clip")  # in range: "clip" only skips the bounds check
        n = first.size
        both = _weights_fast(np.concatenate([fx[part], fy[part]]), normalise=False)  # one pass for x and y
        wx, wy = both[:, :n], both[:, n:]
        rows = np.einsum("jip,ip->jp", t.reshape(6, 6, -1), wx)
        total = np.einsum("jp,jp->p", rows, wy)
        total /= wx.sum(axis=0) * wy.sum(axis=0)
        values[part] = total
    return values


def _interpolate_reference(image: np.ndarray, x: np.ndarray, y: np.ndarray, method: str = "lanczos3"):
    """The plain 2-D gather of :func:`interpolate` (same results): the reference it is tested against."""
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


class ControlGrid:
    """Exact WCS evaluation at a few control points of the cutout, a cubic polynomial for every pixel.

    Over a cutout (tens of arcsec) the map from output pixel (col, row) to input pixel (x, y) -- inverse gnomonic
    projection, then the tile WCS with its distortion (SIP, TPV, ...) -- is smooth, so a least-squares bivariate
    cubic through ``n x n`` control points (corners included) reproduces it far below 1e-3 input pixel; the exact
    map is evaluated there and at ``check`` points between them, where the fit is verified per source.

    Parameters
    ----------
    size : int
        Cutout side in output pixels.
    pixel_scale_arcsec : float
        Output pixel scale.
    n : int
        Control points per side (>= 4).
    """

    DEGREE = 3

    def __init__(self, size: int, pixel_scale_arcsec: float, n: int = 7):
        self.size = size
        self.pixel_scale_arcsec = pixel_scale_arcsec
        step = np.deg2rad(pixel_scale_arcsec / 3600.0)
        c = (size - 1) / 2.0
        half = max(c, 0.5)
        t = np.linspace(0.0, size - 1.0, n)
        rows, cols = np.meshgrid(t, t, indexing="ij")
        # Check points: centres of the four corner cells and of the middle cell, where a fit errs most.
        mid = [(t[0] + t[1]) / 2, (t[n // 2 - 1] + t[n // 2]) / 2, (t[-2] + t[-1]) / 2]
        chk = np.array([(mid[0], mid[0]), (mid[0], mid[2]), (mid[2], mid[0]), (mid[2], mid[2]), (mid[1], mid[1])])
        rows = np.concatenate([rows.ravel(), chk[:, 0]])
        cols = np.concatenate([cols.ravel(), chk[:, 1]])
        self.n_ctrl = n * n
        # Tangent-plane coordinates of the control and check points (as tan_grid).
        self.xi = -(cols - c) * step
        self.eta = (rows - c) * step
        powers = [(i, j) for i in range(self.DEGREE + 1) for j in range(self.DEGREE + 1 - i)]

        def basis(u, v):
            return np.stack([u**i * v**j for i, j in powers], axis=-1)

        def dbasis(u, v, axis):
            out = []
            for i, j in powers:
                if axis == 0:  # d/du
                    out.append(i * u ** max(i - 1, 0) * v**j)
                else:
                    out.append(j * u**i * v ** max(j - 1, 0))
            return np.stack(out, axis=-1) / half

        u_c, v_c = (cols - c) / half, (rows - c) / half
        fit = np.linalg.pinv(basis(u_c[: self.n_ctrl], v_c[: self.n_ctrl]))  # (terms, n_ctrl)
        self.check = basis(u_c[self.n_ctrl :], v_c[self.n_ctrl :]) @ fit  # (n_check, n_ctrl)
        g = (np.arange(size) - c) / half
        v, u = np.meshgrid(g, g, indexing="ij")
        u, v = u.ravel(), v.ravel()
        self.fit = fit.T.copy()  # control values -> polynomial coefficients: (n_ctrl, terms)
        # Coefficients -> every pixel's value, and its derivatives along col and row: (terms, size * size) each.
        self.value = basis(u, v).T.copy()
        self.d_col = dbasis(u, v, 0).T.copy()
        self.d_row = dbasis(u, v, 1).T.copy()

    def sky(self, ra0, dec0) -> tuple[np.ndarray, np.ndarray]:
        """Sky positions (deg) of the control and check points of cutouts centred at ``ra0, dec0``: (B, P)."""
        ra, dec = tan_to_sky(ra0, dec0, self.xi[None, :], self.eta[None, :])
        return ra[:, 0], dec[:, 0]

    def expand(self, px: np.ndarray, py: np.ndarray):
        """Every pixel's input position and area ratio from the exact positions at the points of :meth:`sky`.

        Parameters
        ----------
        px, py : ndarray, shape (B, P)
            Input pixel coordinates of the control then check points.

        Returns
        -------
        x, y, area : ndarray, shape (B, size, size)
            Input position of each output pixel centre and ``|det d(x, y) / d(col, row)|``.
        error : ndarray, shape (B,)
            Largest distance (input pixels) between fit and exact map at the check points (NaN if not finite).
        """
        # Contiguous copies: a strided operand would take numpy's slow non-BLAS matmul.
        cx = np.ascontiguousarray(px[:, : self.n_ctrl])
        cy = np.ascontiguousarray(py[:, : self.n_ctrl])
        ex = cx @ self.check.T - px[:, self.n_ctrl :]
        ey = cy @ self.check.T - py[:, self.n_ctrl :]
        error = np.sqrt(ex * ex + ey * ey).max(axis=1)
        shape = (len(px), self.size, self.size)
        ax, ay = cx @ self.fit, cy @ self.fit
        x = (ax @ self.value).reshape(shape)
        y = (ay @ self.value).reshape(shape)
        area = (ax @ self.d_col) * (ay @ self.d_row)
        area -= (ax @ self.d_row) * (ay @ self.d_col)
        area = np.abs(area, out=area).reshape(shape)
        return x, y, area, error

    def map(self, wcs, ra0, dec0):
        """:meth:`expand` of the exact ``wcs`` positions of the points of :meth:`sky`: ``x, y, area, error``."""
        return self.expand(*_world2pix(wcs, *self.sky(ra0, dec0)))

    def exact_map(self, wcs, ra0, dec0):
        """Input position and area ratio of every output pixel by the exact ``wcs`` (no fit): (B, size, size) each."""
        xi, eta = tan_grid(self.size, self.pixel_scale_arcsec)
        x, y = _world2pix(wcs, *tan_to_sky(ra0, dec0, xi, eta))
        return x, y, area_ratio(x, y)


def _world2pix(wcs, ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """0-based input pixel coordinates of sky positions by ``wcs.all_world2pix``, in the shape of ``ra``."""
    x, y = wcs.all_world2pix(ra.ravel(), dec.ravel(), 0, quiet=True)
    return x.reshape(ra.shape), y.reshape(ra.shape)


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
