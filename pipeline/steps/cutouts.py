"""Cutouts of every source from survey mosaics, all bands resampled onto one common grid per source.

The grid of a source is a gnomonic (TAN) projection centred on its (ra, dec), north up and east left (row 0 at the
bottom as FITS displays it, ``origin='lower'``), with the configured pixel scale and size; all bands share it and
come in order of wavelength. The work runs tile by tile: each mosaic file is opened once, its WCS read once, and
only the sources whose cutout can touch its footprint are resampled from it, in vectorised batches
(:mod:`pipeline.core.mosaics`).

Where several exposures of a band cover a source, they are stacked by default (``combine="stack"``: inverse-
variance weights, per-pixel clipping, zero points scaled to the survey's), as the paper's SDSS cubes were made from
"all the available images ... resampled, stacked and clipped"; tiles that are pieces of one exposure (a coadd's
overlapping tiles, or frames of one drift scan named by ``exposure_keys``) give each pixel once. ``combine="best"``
takes every pixel from the one tile where it lies farthest from an edge.
"""

from __future__ import annotations

import argparse
import logging
import math

import numpy as np
import pandas as pd

from pipeline.core import mosaics
from pipeline.core.bands import sort_bands
from pipeline.core.mosaics import BACKGROUNDS, BLOCK, FITS_SUFFIXES, INTERPOLATIONS, StackOptions
from pipeline.store import cubes as store

log = logging.getLogger(__name__)

__all__ = ["FITS_SUFFIXES", "StackOptions", "extract_cutouts", "extract_to_hdf5", "shard_of"]


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
            members = members[np.lexsort((tie[members], mosaics.ra_from_widest_gap(ra[members])))]
        for j, part in enumerate(np.array_split(members, k)):
            shard[part] = first + j
        first += k
    return shard


def check_columns(sources: pd.DataFrame, columns) -> None:
    for col in columns:
        if col not in sources.columns:
            raise ValueError(f"sources lack the required column {col!r} (have: {', '.join(map(str, sources.columns))})")


_check_columns = check_columns


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
    check_columns(sources, ("object_id", "ra", "dec"))
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


def _blocks(sources, tiles, size, pixel_scale_arcsec, interpolation, background, options, block_size, info):
    return mosaics.iter_blocks(
        np.asarray(sources["ra"], dtype=float), np.asarray(sources["dec"], dtype=float),
        np.asarray(sources["object_id"]), tiles, size, pixel_scale_arcsec, interpolation, background, options,
        block_size, info,
    )  # fmt: skip


def extract_cutouts(
    sources: pd.DataFrame,
    band_files: dict[str, list[str]],
    size: int = 64,
    pixel_scale_arcsec: float = 0.396,
    interpolation: str = "lanczos3",
    background: str = "local",
    shard: tuple[int, int] | None = None,
    block_size: int = BLOCK,
    options: StackOptions | None = None,
) -> dict:
    """Resample every source's neighbourhood from the band mosaics onto its own TAN grid, in memory.

    For catalogs too large to hold in memory, :func:`extract_to_hdf5` streams the same cutouts into a file.

    Parameters
    ----------
    sources : DataFrame
        Columns ``object_id`` (int), ``ra``, ``dec`` (deg, ICRS).
    band_files : dict of str to list of str
        Mosaic FITS files of each band (overlapping tiles and repeated exposures allowed; plain, gzip/bzip2-
        compressed or tile-compressed ``.fits.fz``); the image is the primary HDU or the first image extension with
        a celestial WCS (distortions such as SIP or TPV included), in flux per input pixel; a weight, variance or
        RMS HDU of the same shape is used as :class:`pipeline.core.mosaics.StackOptions` says.
    size : int
        Cutout side in output pixels.
    pixel_scale_arcsec : float
        Output pixel scale in arcsec.
    interpolation : {"lanczos3", "bilinear"}
        Separable Lanczos-3 (SWarp's default) or bilinear; an output pixel whose kernel support holds a NaN (or a
        pixel of zero weight) or leaves every tile is invalid.
    background : {"local", "none"}
        ``local`` subtracts, per source and band, the sigma-clipped median of the valid pixels farther than
        ``0.4 * size`` from the centre.
    shard : (k, n), optional
        Keep only the sources of sky shard ``k`` of ``n`` (see :func:`shard_of`).
    block_size : int
        Sources resampled together (sky-adjacent); bounds the working memory.
    options : StackOptions, optional
        Calibration and combination of the tiles (default: the config schema's defaults).

    Returns
    -------
    dict
        ``cubes`` float32 (N, n_bands, size, size) in flux per output pixel (see
        :data:`pipeline.store.cubes.FLUX_CONVENTION`) at the reference zero point, invalid pixels 0, indexed
        ``[object, band, row (north up), col (east left)]``; ``object_id`` int64 (N,); ``coverage`` float32
        (N, n_bands), the fraction of valid pixels; ``exposures`` and ``pixel_noise`` float32 (N, n_bands), the
        mean number of exposures per valid pixel and the RMS noise of a valid pixel; ``bands`` (sorted by
        wavelength); ``n_outside``, the number of sources no tile of any band covers; ``units``, the input images'
        ``BUNIT`` per band (None where absent). Rows are in the order of ``sources``.
    """
    options = options or StackOptions()
    bands, sources = _check_arguments(sources, band_files, size, pixel_scale_arcsec, interpolation, background, shard)
    tiles = mosaics.read_tiles(band_files, bands, options)
    n_src = len(sources)
    out = {
        "cubes": np.zeros((n_src, len(bands), size, size), dtype=np.float32),
        **{name: np.zeros((n_src, len(bands)), dtype=np.float32) for name in ("coverage", *store.BAND_COLUMNS)},
    }
    info: dict = {}
    blocks = _blocks(sources, tiles, size, pixel_scale_arcsec, interpolation, background, options, block_size, info)
    for rows, block, cov, exposures, noise in blocks:
        out["cubes"][rows] = block
        out["coverage"][rows] = cov
        out["exposures"][rows] = exposures
        out["pixel_noise"][rows] = noise
    return {
        **out,
        "object_id": np.asarray(sources["object_id"], dtype=np.int64),
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
    options: StackOptions | None = None,
) -> dict:
    """Extract the cutouts as :func:`extract_cutouts` and stream them into HDF5, block by block, atomically.

    Memory is bounded by one block of cutouts (``block_size`` sources, fewer when many exposures are stacked) and
    the tiles it touches, whatever the size of the catalog. The file has the layout of :mod:`pipeline.store.cubes`
    (with ``exposures`` and ``pixel_noise``); its rows are in processing order (sky-adjacent sources together), so
    match them by ``object_id``.

    Returns
    -------
    dict
        ``n`` (cutouts written), ``bands``, ``n_outside``, ``units``, ``opened`` (pixel opens per file: 1 or 0).
    """
    options = options or StackOptions()
    bands, sources = _check_arguments(sources, band_files, size, pixel_scale_arcsec, interpolation, background, shard)
    tiles = mosaics.read_tiles(band_files, bands, options)
    units = {band: ts[0].unit for band, ts in tiles.items()}
    meta = {
        "pixel_scale_arcsec": pixel_scale_arcsec,
        "interpolation": interpolation,
        "background": background,
        "units": mosaics.units_attr(units, options),
        **{f"stack_{k}": ("" if v is None else v) for k, v in options.attrs().items()},
        **(attrs or {}),
    }
    ids = np.asarray(sources["object_id"], dtype=np.int64)
    info: dict = {}
    blocks = _blocks(sources, tiles, size, pixel_scale_arcsec, interpolation, background, options, block_size, info)
    with store.cube_writer(path, bands, size, n=len(sources)) as writer:
        for rows, block, cov, exposures, noise in blocks:
            writer.append(ids[rows], block, cov, exposures=exposures, pixel_noise=noise)
        if not len(sources):
            empty = np.zeros((0, len(bands)), dtype=np.float32)
            writer.append(ids, np.zeros((0, len(bands), size, size), np.float32), empty, exposures=empty,
                          pixel_noise=empty)  # fmt: skip
        writer.finish(meta)
    return {
        "n": len(sources),
        "bands": bands,
        "n_outside": info["n_outside"],
        "units": units,
        "opened": {t.path: t.opened for ts in tiles.values() for t in ts},
    }


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
    mosaics.add_stack_arguments(parser)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    plog.setup(args.verbose)

    band_files = dict(mosaics.parse_band(b) for b in args.band)
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
        options=mosaics.options_from_args(args),
    )
    log.info("wrote %d cutouts (%s) to %s", summary["n"], ",".join(summary["bands"]), args.out)


if __name__ == "__main__":
    main()
