"""Cutouts of every source from survey mosaics, all bands resampled onto one common grid per source.

The grid of a source is a gnomonic (TAN) projection centred on its (ra, dec), north up and east left (row 0 at the
bottom as FITS displays it, ``origin='lower'``), with the configured pixel scale and size; all bands share it and
come in order of wavelength. The work runs tile by tile: each mosaic file is opened once, its WCS read once, and
only the sources whose cutout can touch its footprint are resampled from it, in vectorised batches.

Where tiles of a band overlap, each output pixel takes its value from the tile in which it lies farthest from the
edge (no averaging: the tiles of a survey are usually the same exposures, and one tile gives a clean, single noise
realisation per pixel).
"""

from __future__ import annotations

import argparse
import glob
import logging
import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline import resample
from pipeline.bands import sort_bands
from pipeline.sky import unit_vectors

log = logging.getLogger(__name__)

FLUX_CONVENTION = (
    "flux per output pixel: the input image (flux per input pixel) is interpolated as a surface brightness and "
    "multiplied by the local ratio of output to input pixel area on the sky (the Jacobian of the tile WCS), so "
    "that summing a cutout's pixels preserves total flux; units are those of the input images"
)
FITS_SUFFIXES = (".fits", ".fits.gz", ".fits.bz2", ".fits.fz", ".fit", ".fit.gz", ".fts")
INTERPOLATIONS = ("bilinear", "lanczos3")
BACKGROUNDS = ("local", "none")
# Background pixels: those farther than this fraction of the cutout side from its centre (the corners).
BACKGROUND_RADIUS = 0.4
BATCH = 32


def shard_of(sources: pd.DataFrame, n: int) -> np.ndarray:
    """Assign every source to one of ``n`` sky shards: equal-count declination strips, cut along RA.

    About ``sqrt(n)`` strips of equal source count are made in declination; each strip is ordered by RA (starting
    after the strip's widest RA gap, so that a strip crossing RA = 0 stays contiguous) and cut into equal-count
    shards. Shards are compact patches of sky, so each one opens few mosaic tiles.

    Parameters
    ----------
    sources : DataFrame
        With ``ra`` and ``dec`` in degrees (and ``object_id``, used to break ties deterministically).
    n : int
        Number of shards, >= 1.

    Returns
    -------
    ndarray of int, shape (N,)
        The shard (0 .. n - 1) of each row, in the row order of ``sources``.
    """
    if n < 1:
        raise ValueError(f"number of shards must be >= 1, got {n}")
    _check_columns(sources, ("ra", "dec"))
    ra = np.asarray(sources["ra"], dtype=float) % 360.0
    dec = np.asarray(sources["dec"], dtype=float)
    tie = np.asarray(sources["object_id"]) if "object_id" in sources else np.arange(len(sources))
    shard = np.zeros(len(sources), dtype=np.int64)
    if len(sources) == 0:
        return shard
    n_strips = max(1, min(n, int(round(math.sqrt(n)))))
    per_strip = [len(a) for a in np.array_split(np.arange(n), n_strips)]
    by_dec = np.lexsort((ra, tie, dec))
    bounds = np.round(np.cumsum([0] + per_strip) / n * len(sources)).astype(int)
    first = 0
    for s, k in enumerate(per_strip):
        members = by_dec[bounds[s] : bounds[s + 1]]
        ra_s = np.sort(ra[members])
        if ra_s.size:
            gaps = np.diff(np.concatenate([ra_s, ra_s[:1] + 360.0]))
            start = ra_s[(np.argmax(gaps) + 1) % ra_s.size]
            members = members[np.lexsort((tie[members], (ra[members] - start) % 360.0))]
        for j, part in enumerate(np.array_split(members, k)):
            shard[part] = first + j
        first += k
    return shard


@dataclass
class _Tile:
    """One opened mosaic: its image (a memory map where possible), celestial WCS and sky footprint."""

    path: str
    data: np.ndarray
    wcs: object
    centre: np.ndarray  # unit vector of the image centre
    radius_deg: float  # largest centre-to-corner distance
    unit: str | None


def _open_tile(path: str, hdul) -> _Tile:
    """Find the image HDU with a celestial WCS in an opened file (primary first, then extensions)."""
    from astropy.io import fits
    from astropy.wcs import WCS, FITSFixedWarning

    for hdu in hdul:
        if not isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)):
            continue
        if hdu.header.get("NAXIS", 0) < 2 and not isinstance(hdu, fits.CompImageHDU):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            try:
                wcs = WCS(hdu.header, fobj=hdul)
            except Exception as err:  # astropy raises many kinds for a broken header
                raise ValueError(f"{path}: cannot read the WCS of HDU {hdu.name!r}: {err}") from err
        if not wcs.has_celestial:
            continue
        data = hdu.data
        if data is None:
            continue
        # Degenerate extra axes (NAXIS3 = 1 ...) are dropped; the celestial part of the WCS stays.
        data = data.reshape(data.shape[-2:]) if data.ndim > 2 and data.size == np.prod(data.shape[-2:]) else data
        if data.ndim != 2:
            raise ValueError(f"{path}: image HDU {hdu.name!r} is not 2-D (shape {data.shape})")
        wcs = wcs.celestial
        ny, nx = data.shape
        corners = np.array([[0, 0], [nx - 1, 0], [0, ny - 1], [nx - 1, ny - 1], [(nx - 1) / 2, (ny - 1) / 2]])
        sky = wcs.all_pix2world(corners, 0)
        if not np.all(np.isfinite(sky)):
            raise ValueError(f"{path}: the WCS of HDU {hdu.name!r} does not map the image corners to the sky")
        vec = unit_vectors(sky[:, 0], sky[:, 1])
        radius = np.rad2deg(np.arccos(np.clip(vec[:4] @ vec[4], -1.0, 1.0))).max()
        return _Tile(path, data, wcs, vec[4], float(radius), hdu.header.get("BUNIT"))
    raise ValueError(f"{path}: no image HDU with a celestial WCS (checked the primary and the extensions)")


def _candidates(tile: _Tile, ra: np.ndarray, dec: np.ndarray, reach_deg: float) -> np.ndarray:
    """Indices of the sources whose cutout (of angular half-diagonal ``reach_deg``) can touch the tile."""
    vec = unit_vectors(ra, dec)
    near = np.flatnonzero(vec @ tile.centre >= math.cos(math.radians(min(tile.radius_deg + reach_deg, 179.0))))
    if near.size == 0:
        return near
    # The cone test is loose for long thin tiles: refine with the source position in tile pixels.
    x, y = tile.wcs.all_world2pix(ra[near], dec[near], 0, quiet=True)
    ny, nx = tile.data.shape
    scale = np.min(_pixel_scales_deg(tile.wcs))
    margin = reach_deg / scale + resample.KERNEL_HALF_WIDTH["lanczos3"] + 1
    keep = (x > -margin) & (x < nx - 1 + margin) & (y > -margin) & (y < ny - 1 + margin)
    return near[keep]


def _pixel_scales_deg(wcs) -> np.ndarray:
    from astropy.wcs.utils import proj_plane_pixel_scales

    return proj_plane_pixel_scales(wcs)


def _check_columns(sources: pd.DataFrame, columns) -> None:
    for col in columns:
        if col not in sources.columns:
            raise ValueError(f"sources lack the required column {col!r} (have: {', '.join(map(str, sources.columns))})")


def extract_cutouts(
    sources: pd.DataFrame,
    band_files: dict[str, list[str]],
    size: int = 64,
    pixel_scale_arcsec: float = 0.396,
    interpolation: str = "lanczos3",
    background: str = "local",
    shard: tuple[int, int] | None = None,
) -> dict:
    """Resample every source's neighbourhood from the band mosaics onto its own TAN grid.

    Parameters
    ----------
    sources : DataFrame
        Columns ``object_id`` (int), ``ra``, ``dec`` (deg, ICRS).
    band_files : dict of str to list of str
        Mosaic FITS files of each band (many overlapping tiles allowed); the image is the primary HDU or the first
        image extension with a celestial WCS, in flux per input pixel.
    size : int
        Cutout side in output pixels.
    pixel_scale_arcsec : float
        Output pixel scale in arcsec.
    interpolation : {"lanczos3", "bilinear"}
        Separable Lanczos-3 (SWarp's default) or bilinear; an output pixel whose kernel support holds a NaN or
        leaves every tile is invalid.
    background : {"local", "none"}
        ``local`` subtracts, per source and band, the sigma-clipped median of the valid pixels farther than
        ``0.4 * size`` from the centre.
    shard : (k, n), optional
        Keep only the sources of sky shard ``k`` of ``n`` (see :func:`shard_of`).

    Returns
    -------
    dict
        ``cubes`` float32 (N, n_bands, size, size) in flux per output pixel (see ``FLUX_CONVENTION``), invalid
        pixels 0, indexed ``[object, band, row (north up), col (east left)]``; ``object_id`` int64 (N,);
        ``coverage`` float32 (N, n_bands), the fraction of valid pixels; ``bands`` (sorted by wavelength);
        ``n_outside``, the number of sources no tile of any band covers; ``units``, the input images' ``BUNIT``
        per band (None where absent).
    """
    from astropy.io import fits

    from pipeline.log import progress

    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, not {interpolation!r}")
    if background not in BACKGROUNDS:
        raise ValueError(f"background must be one of {BACKGROUNDS}, not {background!r}")
    if size < 2:
        raise ValueError(f"size must be >= 2, got {size}")
    if not pixel_scale_arcsec > 0:
        raise ValueError(f"pixel_scale_arcsec must be > 0, got {pixel_scale_arcsec}")
    _check_columns(sources, ("object_id", "ra", "dec"))
    if not band_files:
        raise ValueError("no bands given")
    for band, files in band_files.items():
        if not files:
            raise ValueError(f"band {band!r}: no mosaic files")
    bands = sort_bands(band_files)
    if shard is not None:
        k, n = shard
        if not 0 <= k < n:
            raise ValueError(f"shard {k}/{n}: k must be in 0..{n - 1}")
        sources = sources[shard_of(sources, n) == k]
    ra = np.asarray(sources["ra"], dtype=float)
    dec = np.asarray(sources["dec"], dtype=float)
    if not (np.all(np.isfinite(ra)) and np.all(np.isfinite(dec))):
        raise ValueError("sources have non-finite ra or dec")
    n_src = len(sources)

    xi, eta = resample.tan_grid(size, pixel_scale_arcsec)
    reach = math.sqrt(2.0) * size / 2.0 * pixel_scale_arcsec / 3600.0
    cubes = np.zeros((n_src, len(bands), size, size), dtype=np.float32)
    valid_all = np.zeros((n_src, len(bands), size, size), dtype=bool)
    units: dict[str, str | None] = {}
    work = [(b, band, path) for b, band in enumerate(bands) for path in band_files[band]]
    best = None
    for b, band, path in progress(work, total=len(work), desc="cutouts: tiles", log=log):
        if best is None or best[0] != b:
            # Per band: the edge distance of the tile each output pixel currently comes from.
            best = (b, np.full((n_src, size, size), -np.inf, dtype=np.float32))
        try:
            hdul = fits.open(path, memmap=True, lazy_load_hdus=True)
        except Exception as err:
            raise ValueError(f"{path}: not a readable FITS file ({err})") from err
        with hdul:
            tile = _open_tile(path, hdul)
            units.setdefault(band, tile.unit)
            idx = _candidates(tile, ra, dec, reach)
            for start in range(0, idx.size, BATCH):
                sel = idx[start : start + BATCH]
                _resample_batch(tile, sel, ra, dec, xi, eta, interpolation, cubes[:, b], valid_all[:, b], best[1])
            # Drop the decompressed or mapped pixels before the next file.
            del tile
    coverage = valid_all.mean(axis=(2, 3), dtype=np.float64).astype(np.float32)
    if background == "local" and n_src:
        _subtract_background(cubes, valid_all, size)
    cubes[~valid_all] = 0.0
    outside = ~valid_all.any(axis=(1, 2, 3))
    n_outside = int(outside.sum())
    if n_outside:
        ids = np.asarray(sources["object_id"])[outside]
        shown = ", ".join(map(str, ids[:5])) + (", ..." if n_outside > 5 else "")
        log.warning("%d of %d sources lie outside every mosaic (coverage 0, zero cube): %s", n_outside, n_src, shown)
    return {
        "cubes": cubes,
        "object_id": np.asarray(sources["object_id"], dtype=np.int64),
        "coverage": coverage,
        "bands": bands,
        "n_outside": n_outside,
        "units": units,
    }


def _resample_batch(tile, sel, ra, dec, xi, eta, method, cube, valid, best) -> None:
    """Resample the sources ``sel`` from one tile into ``cube[sel]`` where this tile is the best one so far."""
    sra, sdec = resample.tan_to_sky(ra[sel], dec[sel], xi, eta)
    x, y = tile.wcs.all_world2pix(sra.ravel(), sdec.ravel(), 0, quiet=True)
    x = x.reshape(sra.shape)
    y = y.reshape(sra.shape)
    values, ok = resample.interpolate(tile.data, x, y, method)
    ny, nx = tile.data.shape
    dist = resample.edge_distance(x, y, nx, ny)
    take = ok & (dist > best[sel])
    flux = values * resample.area_ratio(x, y)
    cube[sel] = np.where(take, flux, cube[sel])
    valid[sel] |= take
    best[sel] = np.where(take, dist, best[sel])


def _subtract_background(cubes: np.ndarray, valid: np.ndarray, size: int) -> None:
    """Subtract in place the clipped median of the valid outer pixels of every (source, band) cutout."""
    c = (size - 1) / 2.0
    rows, cols = np.mgrid[0:size, 0:size]
    outer = np.hypot(rows - c, cols - c) > BACKGROUND_RADIUS * size
    n, nb = cubes.shape[:2]
    for start in range(0, n, 256):
        part = slice(start, start + 256)
        vals = cubes[part][:, :, outer].reshape(-1, outer.sum())
        ok = valid[part][:, :, outer].reshape(-1, outer.sum())
        sky = resample.clipped_median(vals.astype(np.float64), ok).reshape(-1, nb)
        cubes[part] -= sky[:, :, None, None].astype(np.float32)


def write_cutouts(result: dict, path, attrs: dict) -> None:
    """Write the result of :func:`extract_cutouts` to HDF5, atomically.

    Datasets ``cubes`` (chunked by up to 64 objects), ``object_id``, ``coverage``; attributes ``bands``, plus
    everything in ``attrs`` (``pixel_scale_arcsec``, ``size``, ``interpolation``, ``background``, ``units``
    expected). ``flux_convention`` defaults to :data:`FLUX_CONVENTION` and ``size`` to the cube's side.
    """
    import h5py

    from pipeline.io import atomic_path

    cubes = np.asarray(result["cubes"], dtype=np.float32)
    n, nb, s = cubes.shape[:3]
    meta = {"size": s, "flux_convention": FLUX_CONVENTION}
    meta.update(attrs)
    meta["bands"] = list(result["bands"])
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as h5:
            chunks = (max(1, min(n, 64)), nb, s, s) if n else None
            h5.create_dataset("cubes", data=cubes, chunks=chunks)
            h5.create_dataset("object_id", data=np.asarray(result["object_id"], dtype=np.int64))
            h5.create_dataset("coverage", data=np.asarray(result["coverage"], dtype=np.float32))
            for key, value in meta.items():
                h5.attrs[key] = value if value is not None else ""


def _units_attr(units: dict) -> str:
    known = {u for u in units.values() if u}
    base = known.pop() if len(known) == 1 else "input image units"
    return f"{base} per output pixel"


def _parse_band(text: str) -> tuple[str, list[str]]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--band expects NAME=GLOB, got {text!r}")
    name, pattern = text.split("=", 1)
    files = sorted(glob.glob(pattern))
    if not files:
        raise ValueError(f"band {name!r}: the glob {pattern!r} matches no file")
    bad = [f for f in files if not f.lower().endswith(FITS_SUFFIXES)]
    if bad:
        raise ValueError(f"band {name!r}: not a FITS file name ({', '.join(FITS_SUFFIXES)}): {bad[0]}")
    return name, files


def _parse_shard(text: str) -> tuple[int, int]:
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard expects K/N, got {text!r}") from None
    if not 0 <= k < n:
        raise argparse.ArgumentTypeError(f"--shard {text}: K must be in 0..N-1")
    return k, n


def main(argv=None) -> None:
    """``photoz cutouts``: parse arguments, set up logging, extract and write the cutouts."""
    from pipeline import log as plog
    from pipeline.io import read_table

    parser = argparse.ArgumentParser(prog="photoz cutouts", description=__doc__.splitlines()[0])
    parser.add_argument("--sources", required=True, help="source catalog with object_id, ra, dec (deg)")
    parser.add_argument("--band", action="append", required=True, metavar="NAME=GLOB", help="mosaics of one band")
    parser.add_argument("--size", type=int, default=64, help="cutout side in pixels")
    parser.add_argument("--pixel-scale", type=float, default=0.396, help="output pixel scale in arcsec")
    parser.add_argument("--interpolation", choices=INTERPOLATIONS, default="lanczos3")
    parser.add_argument("--background", choices=BACKGROUNDS, default="local")
    parser.add_argument("--shard", type=_parse_shard, default=None, metavar="K/N")
    parser.add_argument("--out", required=True, help="output HDF5 file")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    plog.setup(args.verbose)

    band_files = dict(_parse_band(b) for b in args.band)
    sources = read_table(args.sources)
    result = extract_cutouts(
        sources,
        band_files,
        size=args.size,
        pixel_scale_arcsec=args.pixel_scale,
        interpolation=args.interpolation,
        background=args.background,
        shard=args.shard,
    )
    attrs = {
        "pixel_scale_arcsec": args.pixel_scale,
        "size": args.size,
        "interpolation": args.interpolation,
        "background": args.background,
        "units": _units_attr(result["units"]),
    }
    if args.shard is not None:
        attrs["shard"] = f"{args.shard[0]}/{args.shard[1]}"
    write_cutouts(result, args.out, attrs)
    log.info("wrote %d cutouts (%s) to %s", len(result["object_id"]), ",".join(result["bands"]), args.out)


if __name__ == "__main__":
    main()
