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
import contextlib
import glob
import logging
import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from pipeline.core import resample
from pipeline.core.bands import sort_bands
from pipeline.core.sky import chord, unit_vectors
from pipeline.store import cubes as store

log = logging.getLogger(__name__)

FITS_SUFFIXES = (".fits", ".fits.gz", ".fits.bz2", ".fits.fz", ".fit", ".fit.gz", ".fts")
INTERPOLATIONS = ("bilinear", "lanczos3")
BACKGROUNDS = ("local", "none")
# Background pixels: those farther than this fraction of the cutout side from its centre (the corners).
BACKGROUND_RADIUS = 0.4
# Sources resampled together from one tile: small, so that the per-pixel temporaries (BATCH * size^2 * 8 bytes
# each) stay in the CPU cache (16 ran twice as fast as 64 for 64 x 64 cutouts).
BATCH = 16
# Sources per block: the unit of work and of memory (their cubes, in all bands, are held at once).
BLOCK = 2048
# Largest accepted miss of the control-point fit of the pixel map, in input pixels (else the exact map is used).
MAX_FIT_ERROR_PX = 1e-3


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
        if members.size:
            members = members[np.lexsort((tie[members], _ra_from_widest_gap(ra[members])))]
        for j, part in enumerate(np.array_split(members, k)):
            shard[part] = first + j
        first += k
    return shard


def _ra_from_widest_gap(ra: np.ndarray) -> np.ndarray:
    """RA (deg, in [0, 360), not empty) measured from the end of the widest gap between the values: a set that
    crosses RA = 0 stays contiguous."""
    ra_s = np.sort(ra)
    gaps = np.diff(np.concatenate([ra_s, ra_s[:1] + 360.0]))
    return (ra - ra_s[(np.argmax(gaps) + 1) % ra_s.size]) % 360.0


@dataclass
class _Tile:
    """One mosaic file: its celestial WCS and sky footprint (from the header); the image once :func:`_load` ran."""

    path: str
    hdu: int  # index of the image HDU in the file
    wcs: object
    shape: tuple[int, int]  # (ny, nx)
    centre: np.ndarray  # unit vector of the image centre
    radius_deg: float  # largest centre-to-corner distance
    unit: str | None
    data: np.ndarray | None = None
    hdul: object = None
    opened: int = 0  # how many times the pixels were opened


def _fits_open(path: str):
    from astropy.io import fits

    try:
        return fits.open(path, memmap=True, lazy_load_hdus=True)
    except Exception as err:
        raise ValueError(f"{path}: not a readable FITS file ({err})") from err


def _read_tile(path: str) -> _Tile:
    """Read the header of the image HDU with a celestial WCS (primary first, then extensions); no pixels."""
    from astropy.io import fits
    from astropy.wcs import WCS, FITSFixedWarning

    with _fits_open(path) as hdul:
        for index, hdu in enumerate(hdul):
            if not isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)):
                continue
            shape = tuple(int(v) for v in (hdu.shape or ()))
            if len(shape) < 2:
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FITSFixedWarning)
                try:
                    wcs = WCS(hdu.header, fobj=hdul)
                except Exception as err:  # astropy raises many kinds for a broken header
                    raise ValueError(f"{path}: cannot read the WCS of HDU {hdu.name!r}: {err}") from err
            if not wcs.has_celestial:
                continue
            # Degenerate extra axes (NAXIS3 = 1 ...) are dropped; the celestial part of the WCS stays.
            if len(shape) > 2 and math.prod(shape[:-2]) != 1:
                raise ValueError(f"{path}: image HDU {hdu.name!r} is not 2-D (shape {shape})")
            wcs = wcs.celestial
            ny, nx = shape[-2:]
            corners = np.array([[0, 0], [nx - 1, 0], [0, ny - 1], [nx - 1, ny - 1], [(nx - 1) / 2, (ny - 1) / 2]])
            sky = wcs.all_pix2world(corners, 0)
            if not np.all(np.isfinite(sky)):
                raise ValueError(f"{path}: the WCS of HDU {hdu.name!r} does not map the image corners to the sky")
            vec = unit_vectors(sky[:, 0], sky[:, 1])
            radius = np.rad2deg(np.arccos(np.clip(vec[:4] @ vec[4], -1.0, 1.0))).max()
            return _Tile(path, index, wcs, (ny, nx), vec[4], float(radius), hdu.header.get("BUNIT"))
    raise ValueError(f"{path}: no image HDU with a celestial WCS (checked the primary and the extensions)")


def _load(tile: _Tile) -> None:
    """Open the tile's pixels: a memory map for plain images, decompressed once for tile-compressed ones."""
    hdul = _fits_open(tile.path)
    try:
        data = hdul[tile.hdu].data
    except Exception as err:
        hdul.close()
        raise ValueError(f"{tile.path}: cannot read the image of HDU {tile.hdu} ({err})") from err
    if data is None or data.size != tile.shape[0] * tile.shape[1]:
        hdul.close()
        raise ValueError(f"{tile.path}: HDU {tile.hdu} has no image of the header's shape {tile.shape}")
    tile.data = data.reshape(tile.shape)
    tile.hdul = hdul
    tile.opened += 1


def _release(tile: _Tile) -> None:
    """Drop the decompressed or mapped pixels and close the file."""
    tile.data = None
    if tile.hdul is not None:
        tile.hdul.close()
        tile.hdul = None


def _candidates(tile: _Tile, tree: cKDTree, ra: np.ndarray, dec: np.ndarray, reach_deg: float) -> np.ndarray:
    """Indices of the sources whose cutout (of angular half-diagonal ``reach_deg``) can touch the tile.

    ``tree`` holds the unit vectors of the sources at ``ra, dec``.
    """
    cone = chord(min(tile.radius_deg + reach_deg, 179.0) * 3600.0)
    near = np.array(tree.query_ball_point(tile.centre, cone), dtype=np.int64)
    if near.size == 0:
        return near
    # The cone test is loose for long thin tiles: refine with the source position in tile pixels.
    x, y = tile.wcs.all_world2pix(ra[near], dec[near], 0, quiet=True)
    ny, nx = tile.shape
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


def sky_order(ra: np.ndarray, dec: np.ndarray, strip_deg: float) -> np.ndarray:
    """A processing order that sweeps the sky in declination strips of ``strip_deg``, back and forth in RA.

    Consecutive sources are close on the sky, so a block of them touches few tiles and every tile is needed by a
    short run of consecutive blocks. RA is measured from the widest gap of the sources, so RA = 0 is no seam.
    """
    ra = np.asarray(ra, dtype=float) % 360.0
    if ra.size == 0:
        return np.zeros(0, dtype=np.int64)
    ra = _ra_from_widest_gap(ra)
    strip = np.floor((np.asarray(dec, dtype=float) + 90.0) / strip_deg).astype(np.int64)
    along = np.where(strip % 2 == 0, ra, -ra)
    return np.lexsort((along, strip))


def _check_arguments(sources, band_files, size, pixel_scale_arcsec, interpolation, background, shard):
    """Validate the arguments; return the bands (by wavelength) and the sources of the shard."""
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
    return bands, sources


def _single_threaded_blas():
    """One BLAS thread while resampling, where threadpoolctl is installed (a no-op context otherwise).

    The step's matrix products are small (tens of terms by a few thousand pixels per batch): BLAS threads only
    spin there, and on a busy machine they made the step several times slower. Parallelism comes from shards.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _read_tiles(band_files: dict[str, list[str]], bands: list[str]) -> dict[str, list[_Tile]]:
    """The header of every tile (no pixels), per band in the order of ``bands``."""
    return {band: [_read_tile(path) for path in band_files[band]] for band in bands}


def _iter_blocks(sources, tiles, size, pixel_scale_arcsec, interpolation, background, block_size, info):
    """Yield ``(rows, cubes, coverage)`` per block of sky-adjacent sources; ``rows`` index ``sources``.

    ``tiles`` come from :func:`_read_tiles`; a tile's pixels are opened (memory-mapped, or decompressed) when the
    first block that needs them comes and released after the last one, so each file is opened once (counted in
    ``_Tile.opened``) and memory is bounded by a block's cubes plus the tiles that the current stretch of sky
    touches. ``info`` receives ``n_outside``.
    """
    from pipeline.core.log import progress

    bands = list(tiles)
    ra = np.asarray(sources["ra"], dtype=float)
    dec = np.asarray(sources["dec"], dtype=float)
    ids = np.asarray(sources["object_id"])
    n_src = len(sources)
    info["n_outside"] = 0
    grid = resample.ControlGrid(size, pixel_scale_arcsec)
    reach = math.sqrt(2.0) * size / 2.0 * pixel_scale_arcsec / 3600.0
    strip = 2.0 * float(np.median([t.radius_deg for ts in tiles.values() for t in ts])) + 2.0 * reach
    order = sky_order(ra, dec, max(strip, 1e-3))
    n_blocks = -(-n_src // block_size)
    # Each tile's candidate sources once, as positions in the processing order (sorted): block k holds the
    # positions k * block_size .. (k + 1) * block_size - 1.
    position = np.empty(n_src, dtype=np.int64)
    position[order] = np.arange(n_src)
    tree = cKDTree(unit_vectors(ra, dec))
    cands = {
        (band, t): np.sort(position[_candidates(tile, tree, ra, dec, reach)])
        for band in bands
        for t, tile in enumerate(tiles[band])
    }
    with contextlib.ExitStack() as stack:
        stack.enter_context(_single_threaded_blas())
        stack.callback(lambda: [_release(tile) for ts in tiles.values() for tile in ts])
        for k in progress(range(n_blocks), total=n_blocks, desc="cutouts: blocks", log=log):
            rows = order[k * block_size : (k + 1) * block_size]
            n = len(rows)
            cubes = np.zeros((n, len(bands), size, size), dtype=np.float32)
            valid = np.zeros((n, len(bands), size, size), dtype=bool)
            for b, band in enumerate(bands):
                cube_b, valid_b = cubes[:, b], valid[:, b]
                best = np.full((n, size, size), -np.inf, dtype=np.float32)
                for t, tile in enumerate(tiles[band]):
                    pos = cands[band, t]
                    lo, hi = np.searchsorted(pos, [k * block_size, (k + 1) * block_size])
                    if lo == hi:
                        continue
                    if tile.data is None:
                        _load(tile)
                    idx = pos[lo:hi] - k * block_size
                    for start in range(0, idx.size, BATCH):
                        sel = idx[start : start + BATCH]
                        src = rows[sel]
                        _resample_batch(tile, grid, ra[src], dec[src], interpolation, sel, cube_b, valid_b, best)
                    if hi == len(pos):  # the tile's last block
                        _release(tile)
            coverage = valid.mean(axis=(2, 3), dtype=np.float64).astype(np.float32)
            if background == "local" and n:
                _subtract_background(cubes, valid, size)
            cubes[~valid] = 0.0
            outside = ~valid.any(axis=(1, 2, 3))
            if outside.any():
                info["n_outside"] += int(outside.sum())
                shown = info.setdefault("outside_ids", [])
                shown.extend(ids[rows[outside]][: max(0, 5 - len(shown))])
            yield rows, cubes, coverage
    if info["n_outside"]:
        shown = ", ".join(map(str, info["outside_ids"])) + (", ..." if info["n_outside"] > 5 else "")
        log.warning(
            "%d of %d sources lie outside every mosaic (coverage 0, zero cube): %s", info["n_outside"], n_src, shown
        )


def extract_cutouts(
    sources: pd.DataFrame,
    band_files: dict[str, list[str]],
    size: int = 64,
    pixel_scale_arcsec: float = 0.396,
    interpolation: str = "lanczos3",
    background: str = "local",
    shard: tuple[int, int] | None = None,
    block_size: int = BLOCK,
) -> dict:
    """Resample every source's neighbourhood from the band mosaics onto its own TAN grid, in memory.

    For catalogs too large to hold in memory, :func:`extract_to_hdf5` streams the same cutouts into a file.

    Parameters
    ----------
    sources : DataFrame
        Columns ``object_id`` (int), ``ra``, ``dec`` (deg, ICRS).
    band_files : dict of str to list of str
        Mosaic FITS files of each band (many overlapping tiles allowed; plain, gzip/bzip2-compressed or
        tile-compressed ``.fits.fz``); the image is the primary HDU or the first image extension with a celestial
        WCS (distortions such as SIP or TPV included), in flux per input pixel.
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
    block_size : int
        Sources resampled together (sky-adjacent); bounds the working memory.

    Returns
    -------
    dict
        ``cubes`` float32 (N, n_bands, size, size) in flux per output pixel (see
        :data:`pipeline.store.cubes.FLUX_CONVENTION`), invalid pixels 0, indexed
        ``[object, band, row (north up), col (east left)]``; ``object_id`` int64 (N,);
        ``coverage`` float32 (N, n_bands), the fraction of valid pixels; ``bands`` (sorted by wavelength);
        ``n_outside``, the number of sources no tile of any band covers; ``units``, the input images' ``BUNIT``
        per band (None where absent). Rows are in the order of ``sources``.
    """
    bands, sources = _check_arguments(sources, band_files, size, pixel_scale_arcsec, interpolation, background, shard)
    tiles = _read_tiles(band_files, bands)
    n_src = len(sources)
    cubes = np.zeros((n_src, len(bands), size, size), dtype=np.float32)
    coverage = np.zeros((n_src, len(bands)), dtype=np.float32)
    info: dict = {}
    blocks = _iter_blocks(sources, tiles, size, pixel_scale_arcsec, interpolation, background, block_size, info)
    for rows, block, cov in blocks:
        cubes[rows] = block
        coverage[rows] = cov
    return {
        "cubes": cubes,
        "object_id": np.asarray(sources["object_id"], dtype=np.int64),
        "coverage": coverage,
        "bands": bands,
        "n_outside": info["n_outside"],
        "units": {band: ts[0].unit for band, ts in tiles.items()},
    }


def extract_to_hdf5(
    sources: pd.DataFrame,
    band_files: dict[str, list[str]],
    path,
    size: int = 64,
    pixel_scale_arcsec: float = 0.396,
    interpolation: str = "lanczos3",
    background: str = "local",
    shard: tuple[int, int] | None = None,
    attrs: dict | None = None,
    block_size: int = BLOCK,
) -> dict:
    """Extract the cutouts as :func:`extract_cutouts` and stream them into HDF5, block by block, atomically.

    Memory is bounded by one block of cutouts (``block_size`` sources) and the tiles it touches, whatever the size
    of the catalog. The file has the layout of :mod:`pipeline.store.cubes`; its rows are in processing order (sky-
    adjacent sources together), so match them by ``object_id``.

    Returns
    -------
    dict
        ``n`` (cutouts written), ``bands``, ``n_outside``, ``units``, ``opened`` (pixel opens per file: 1 or 0).
    """
    bands, sources = _check_arguments(sources, band_files, size, pixel_scale_arcsec, interpolation, background, shard)
    tiles = _read_tiles(band_files, bands)
    units = {band: ts[0].unit for band, ts in tiles.items()}
    meta = {
        "pixel_scale_arcsec": pixel_scale_arcsec,
        "interpolation": interpolation,
        "background": background,
        "units": _units_attr(units),
        **(attrs or {}),
    }
    ids = np.asarray(sources["object_id"], dtype=np.int64)
    info: dict = {}
    blocks = _iter_blocks(sources, tiles, size, pixel_scale_arcsec, interpolation, background, block_size, info)
    with store.cube_writer(path, bands, size, n=len(sources)) as writer:
        for rows, block, cov in blocks:
            writer.append(ids[rows], block, cov)
        writer.finish(meta)
    return {
        "n": len(sources),
        "bands": bands,
        "n_outside": info["n_outside"],
        "units": units,
        "opened": {t.path: t.opened for ts in tiles.values() for t in ts},
    }


def _resample_batch(tile, grid, ra, dec, method, sel, cube, valid, best) -> None:
    """Resample the sources at ``ra, dec`` from one tile into ``cube[sel]`` where this tile is the best so far.

    Input positions come from the exact WCS at the control points of ``grid`` and its cubic fit elsewhere; a
    source whose fit misses the exact map at the check points by more than ``MAX_FIT_ERROR_PX`` (a WCS that is not
    smooth over the cutout) is mapped exactly, pixel by pixel.
    """
    x, y, area, error = grid.map(tile.wcs, ra, dec)
    exact = ~(error <= MAX_FIT_ERROR_PX)
    if exact.any():
        x[exact], y[exact], area[exact] = grid.exact_map(tile.wcs, ra[exact], dec[exact])
    values, ok = resample.interpolate(tile.data, x, y, method)
    ny, nx = tile.shape
    dist = resample.edge_distance(x, y, nx, ny).astype(np.float32)
    prev = best[sel]
    take = ok & (dist > prev)
    flux = values * area
    if take.all() and not np.isfinite(prev).any():
        cube[sel] = flux
        valid[sel] = True
        best[sel] = dist
        return
    cube[sel] = np.where(take, flux, cube[sel])
    valid[sel] |= take
    best[sel] = np.where(take, dist, prev)


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
    from pipeline.core import log as plog
    from pipeline.core.config import schema_default
    from pipeline.core.io import read_table

    def default(key):
        return schema_default(f"cutouts.{key}")

    parser = argparse.ArgumentParser(prog="photoz cutouts", description=__doc__.splitlines()[0])
    parser.add_argument("--sources", required=True, help="source catalog with object_id, ra, dec (deg)")
    parser.add_argument("--band", action="append", required=True, metavar="NAME=GLOB", help="mosaics of one band")
    parser.add_argument("--size", type=int, default=default("size"), help="cutout side in pixels")
    parser.add_argument("--pixel-scale", type=float, default=default("pixel_scale_arcsec"), help="arcsec per pixel")
    parser.add_argument("--interpolation", choices=INTERPOLATIONS, default=default("interpolation"))
    parser.add_argument("--background", choices=BACKGROUNDS, default=default("background"))
    parser.add_argument("--shard", type=_parse_shard, default=None, metavar="K/N")
    parser.add_argument("--out", required=True, help="output HDF5 file")
    parser.add_argument("--block-size", type=int, default=BLOCK, help="sources held in memory at once")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    plog.setup(args.verbose)

    band_files = dict(_parse_band(b) for b in args.band)
    sources = read_table(args.sources)
    attrs = {}
    if args.shard is not None:
        attrs["shard"] = f"{args.shard[0]}/{args.shard[1]}"
    summary = extract_to_hdf5(
        sources,
        band_files,
        args.out,
        size=args.size,
        pixel_scale_arcsec=args.pixel_scale,
        interpolation=args.interpolation,
        background=args.background,
        shard=args.shard,
        attrs=attrs,
        block_size=args.block_size,
    )
    log.info("wrote %d cutouts (%s) to %s", summary["n"], ",".join(summary["bands"]), args.out)


if __name__ == "__main__":
    main()
