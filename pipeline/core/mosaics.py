"""Survey mosaics as tiles: headers, calibration, and their resampling and combination onto per-source grids.

A band's mosaic is any set of FITS files (tiles of a coadd, single exposures, or both), each with a celestial WCS.
Every file is opened once per run and read through a memory map; only the sources whose grid can touch its
footprint are resampled from it, in vectorised batches (:mod:`pipeline.core.resample`). What this module adds to
the resampling:

- **Calibration.** A tile's pixels are scaled to the survey's reference AB zero point (``survey.zero_point``)
  from its header's zero-point keyword; a weight, variance or RMS HDU, when the file has one, masks the pixels of
  zero weight and gives each pixel its noise; otherwise the tile's sky noise is measured once (a MAD over a
  subsample of its pixels). Tiles that are not sky-subtracted can have a photutils ``Background2D`` model removed,
  which is, to the precision of the interpolation, the same as subtracting it before resampling.
- **Combination.** Tiles that share the values of the exposure keywords are pieces of one exposure (their overlaps
  are the same pixels): each output pixel takes the piece in which it lies farthest from an edge. Different
  exposures are stacked: an inverse-variance weighted mean, with SWarp's per-pixel clipping (``COMBINE_TYPE
  CLIPPED``, Gruen et al. 2014): with three or more values, a value farther from their median than
  ``clip_sigma`` times its noise plus ``CLIP_AMPFRAC`` of the median is dropped; two values that disagree so are
  both dropped. ``combine="best"`` instead treats all the tiles of a band as one exposure: each pixel comes from
  one tile (the choice of the first versions of this pipeline).

Memory is bounded by a block of sources: their cubes, in all bands, plus, when stacking, one plane per exposure
that covers a source of the block; the block shrinks so that the exposure planes stay under
:data:`STACK_MEMORY_BYTES`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from dataclasses import dataclass, field, fields

import numpy as np
from scipy.spatial import cKDTree

from pipeline.core import resample
from pipeline.core.sky import chord, unit_vectors

log = logging.getLogger(__name__)

COMBINES = ("best", "stack")
INTERPOLATIONS = ("bilinear", "lanczos3")
BACKGROUNDS = ("local", "none")
MOSAIC_BACKGROUNDS = ("none", "photutils")
WEIGHT_KINDS = ("inverse_variance", "variance", "rms")
# EXTNAMEs that ``weight_hdu: auto`` recognises, with what they hold.
AUTO_WEIGHT_NAMES = {
    **dict.fromkeys(("WEIGHT", "WHT", "WGT", "IVAR", "INVVAR", "INV_VAR"), "inverse_variance"),
    **dict.fromkeys(("VARIANCE", "VAR"), "variance"),
    **dict.fromkeys(("RMS", "SIGMA", "ERR", "ERROR", "NOISE", "STDDEV"), "rms"),
}
# SWarp's CLIP_AMPFRAC: the fraction of the median a value may differ by on top of clip_sigma times its noise.
CLIP_AMPFRAC = 0.3
# Gaussian sigma (output pixels) of the second clipping test: a value is clipped only if its residual from the median
# also stands out once smoothed by it (see _combine), which spares the cores of sources in epochs of better seeing.
CLIP_SMOOTH_PX = 3.0
# Background pixels of the local background: those farther than this fraction of the cutout side from its centre.
BACKGROUND_RADIUS = 0.4
# Output pixels resampled together from one tile (BATCH_PIXELS / size^2 sources): the per-pixel temporaries stay
# in the CPU cache (16 sources of 64 x 64 ran twice as fast as 64 of them).
BATCH_PIXELS = 16 * 64 * 64
# Sources per block: the unit of work and of memory (their cubes, in all bands, are held at once).
BLOCK = 2048
# Largest memory of the per-exposure planes of a block when stacking (value, weight, edge distance and the
# temporaries of the clipping: about STACK_BYTES_PER_PIXEL per pixel and exposure); the block shrinks to stay below.
STACK_MEMORY_BYTES = 512 * 2**20
STACK_BYTES_PER_PIXEL = 40
# Largest accepted miss of the control-point fit of the pixel map, in input pixels (else the exact map is used).
MAX_FIT_ERROR_PX = 1e-3
# Pixels of a tile used to measure its sky noise (a regular subsample).
SKY_SAMPLE = 2**16


@dataclass(frozen=True)
class StackOptions:
    """How the tiles of a band are calibrated and combined; the defaults are the config schema's.

    Attributes
    ----------
    combine : {"stack", "best"}
        Stack the exposures that cover a pixel, or take each pixel from one tile.
    clip_sigma : float or None
        Per-pixel clipping threshold across exposures, in units of a value's noise (None: no clipping).
    weight_hdu : str
        ``auto`` (an HDU named as in :data:`AUTO_WEIGHT_NAMES`, if any), ``none`` (the measured sky noise), or the
        EXTNAME of the weight HDU, which holds ``weight_kind``.
    weight_kind : {"inverse_variance", "variance", "rms"}
        What a named weight HDU holds.
    zero_point : float
        Reference AB zero point: the magnitude of one output unit (22.5 for nanomaggies).
    zero_point_keys : tuple of str
        Header keywords holding a tile's AB zero point, the first one present wins; empty: every tile is on
        ``zero_point`` already.
    exposure_keys : tuple of str
        Header keywords whose values name a tile's exposure; empty: every file is its own exposure.
    mosaic_background : {"none", "photutils"}
        Remove a photutils ``Background2D`` model of each tile (for tiles that are not sky-subtracted).
    background_box_px : int
        Box size of that model, in input pixels.
    """

    combine: str = "stack"
    clip_sigma: float | None = 4.0
    weight_hdu: str = "auto"
    weight_kind: str = "inverse_variance"
    zero_point: float = 22.5
    zero_point_keys: tuple[str, ...] = ()
    exposure_keys: tuple[str, ...] = ()
    mosaic_background: str = "none"
    background_box_px: int = 128

    def __post_init__(self):
        object.__setattr__(self, "zero_point_keys", tuple(self.zero_point_keys))
        object.__setattr__(self, "exposure_keys", tuple(self.exposure_keys))
        if self.combine not in COMBINES:
            raise ValueError(f"combine must be one of {COMBINES}, not {self.combine!r}")
        if self.clip_sigma is not None and not self.clip_sigma > 0:
            raise ValueError(f"clip_sigma must be > 0 (or None for no clipping), got {self.clip_sigma}")
        if self.weight_kind not in WEIGHT_KINDS:
            raise ValueError(f"weight_kind must be one of {WEIGHT_KINDS}, not {self.weight_kind!r}")
        if self.mosaic_background not in MOSAIC_BACKGROUNDS:
            raise ValueError(f"mosaic_background must be one of {MOSAIC_BACKGROUNDS}, not {self.mosaic_background!r}")
        if self.background_box_px < 8:
            raise ValueError(f"background_box_px must be >= 8, got {self.background_box_px}")
        if not math.isfinite(self.zero_point):
            raise ValueError(f"zero_point must be finite, got {self.zero_point}")

    @classmethod
    def from_config(cls, cfg: dict) -> StackOptions:
        """The options of a validated config (its ``survey`` and ``cutouts`` sections)."""
        c, s = cfg["cutouts"], cfg["survey"]
        return cls(
            combine=c["combine"], clip_sigma=c["clip_sigma"], weight_hdu=c["weight_hdu"],
            weight_kind=c["weight_kind"], zero_point=s["zero_point"], zero_point_keys=s["zero_point_keys"],
            exposure_keys=c["exposure_keys"], mosaic_background=c["mosaic_background"],
            background_box_px=c["mosaic_background_box_px"],
        )  # fmt: skip

    def attrs(self) -> dict:
        """The options as plain values, for the attributes of an output file."""
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}


@dataclass
class Tile:
    """One mosaic file: header facts (WCS, footprint, calibration); pixels and noise once :func:`load` ran."""

    path: str
    hdu: int  # index of the image HDU in the file
    wcs: object
    shape: tuple[int, int]  # (ny, nx)
    centre: np.ndarray  # unit vector of the image centre
    radius_deg: float  # largest centre-to-corner distance
    unit: str | None
    scale: float = 1.0  # flux scale to the reference zero point
    exposure: tuple = ()  # the exposure the tile is a piece of
    weight_hdu: int | None = None
    weight_kind: str | None = None
    data: np.ndarray | None = None
    weight: np.ndarray | None = None
    background: object = None  # the removed background model, input units (only with photutils)
    sky_sigma: float = float("nan")  # sky noise per input pixel, input units
    hdul: object = None
    opened: int = 0  # how many times the pixels were opened
    extra: dict = field(default_factory=dict)


def fits_open(path: str):
    """Open a FITS file lazily through a memory map; a ``ValueError`` naming the file if it is no FITS file."""
    from astropy.io import fits

    try:
        return fits.open(path, memmap=True, lazy_load_hdus=True)
    except Exception as err:
        raise ValueError(f"{path}: not a readable FITS file ({err})") from err


def _header_value(path, headers, keys, what: str, config_key: str):
    """The first of ``keys`` found in ``headers`` (the image HDU's, then the primary's); a ``ValueError`` naming
    the file and the config key when none is there."""
    for key in keys:
        for header in headers:
            if key in header:
                return key, header[key]
    raise ValueError(
        f"{path}: none of the {what} keywords {list(keys)} ({config_key}) is in the header of the image HDU or the "
        "primary HDU"
    )


def read_tile(path: str, options: StackOptions) -> Tile:
    """Read the header of the image HDU with a celestial WCS (primary first, then extensions), no pixels; its zero
    point, exposure and weight HDU as ``options`` say. Every problem is a ``ValueError`` naming the file."""
    from astropy.io import fits
    from astropy.wcs import WCS, FITSFixedWarning

    with fits_open(path) as hdul:
        found = None
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
            found = index, hdu, wcs.celestial, shape[-2:]
            break
        if found is None:
            raise ValueError(f"{path}: no image HDU with a celestial WCS (checked the primary and the extensions)")
        index, hdu, wcs, (ny, nx) = found
        corners = np.array([[0, 0], [nx - 1, 0], [0, ny - 1], [nx - 1, ny - 1], [(nx - 1) / 2, (ny - 1) / 2]])
        sky = wcs.all_pix2world(corners, 0)
        if not np.all(np.isfinite(sky)):
            raise ValueError(f"{path}: the WCS of HDU {hdu.name!r} does not map the image corners to the sky")
        vec = unit_vectors(sky[:, 0], sky[:, 1])
        radius = np.rad2deg(np.arccos(np.clip(vec[:4] @ vec[4], -1.0, 1.0))).max()
        headers = [hdu.header] if index == 0 else [hdu.header, hdul[0].header]
        tile = Tile(path, index, wcs, (ny, nx), vec[4], float(radius), hdu.header.get("BUNIT"))
        if options.zero_point_keys:
            key, value = _header_value(path, headers, options.zero_point_keys, "zero-point", "survey.zero_point_keys")
            try:
                zp = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"{path}: zero-point keyword {key} = {value!r} is not a number") from None
            if not math.isfinite(zp):
                raise ValueError(f"{path}: zero-point keyword {key} = {value!r} is not finite")
            tile.scale = 10.0 ** (-0.4 * (zp - options.zero_point))
        if options.exposure_keys:
            tile.exposure = tuple(
                _header_value(path, headers, (key,), "exposure", "cutouts.exposure_keys")[1]
                for key in options.exposure_keys
            )
        else:
            tile.exposure = (path,)
        tile.weight_hdu, tile.weight_kind = _find_weight_hdu(path, hdul, index, (ny, nx), options)
    return tile


def _find_weight_hdu(path, hdul, image_index, shape, options) -> tuple[int | None, str | None]:
    """The index and kind of the tile's weight HDU (None, None without one); its shape must be the image's."""
    if options.weight_hdu.lower() == "none":
        return None, None
    for index, hdu in enumerate(hdul):
        if index == image_index:
            continue
        name = (hdu.name or "").upper()
        if options.weight_hdu.lower() == "auto":
            kind = AUTO_WEIGHT_NAMES.get(name)
        else:
            kind = options.weight_kind if name == options.weight_hdu.upper() else None
        if kind is None:
            continue
        wshape = tuple(int(v) for v in (hdu.shape or ()))
        if wshape[-2:] != tuple(shape) or math.prod(wshape[:-2]) != 1:
            raise ValueError(
                f"{path}: the weight map in HDU {hdu.name!r} has shape {wshape}, the image {tuple(shape)}: a weight "
                "map must have the image's shape (cutouts.weight_hdu)"
            )
        return index, kind
    if options.weight_hdu.lower() != "auto":
        names = [h.name for h in hdul]
        raise ValueError(f"{path}: no HDU named {options.weight_hdu!r} (cutouts.weight_hdu); the file has {names}")
    return None, None


def read_tiles(band_files: dict[str, list[str]], bands: list[str], options: StackOptions) -> dict[str, list[Tile]]:
    """The header of every tile (no pixels), per band in the order of ``bands``."""
    return {band: [read_tile(path, options) for path in band_files[band]] for band in bands}


def load(tile: Tile, options: StackOptions) -> None:
    """Open the tile's pixels (a memory map for plain images, decompressed once for tile-compressed ones), its
    weight map, and measure its sky noise; model its background when ``options`` asks for it."""
    hdul = fits_open(tile.path)
    try:
        data = hdul[tile.hdu].data
        weight = hdul[tile.weight_hdu].data if tile.weight_hdu is not None else None
    except Exception as err:
        hdul.close()
        raise ValueError(f"{tile.path}: cannot read the image of HDU {tile.hdu} ({err})") from err
    size = tile.shape[0] * tile.shape[1]
    if data is None or data.size != size:
        hdul.close()
        raise ValueError(f"{tile.path}: HDU {tile.hdu} has no image of the header's shape {tile.shape}")
    if weight is not None and weight.size != size:
        hdul.close()
        raise ValueError(f"{tile.path}: the weight map (HDU {tile.weight_hdu}) has {weight.size} pixels, not {size}")
    tile.data = data.reshape(tile.shape)
    tile.weight = None if weight is None else weight.reshape(tile.shape)
    tile.hdul = hdul
    tile.opened += 1
    if options.mosaic_background == "photutils":
        tile.background = _background_model(tile, options.background_box_px)
    tile.sky_sigma = _sky_sigma(tile.data, tile.background)
    if not tile.sky_sigma > 0 and tile.weight is None:
        log.warning("%s: sky noise not measurable (%.3g); its pixels get a small weight", tile.path, tile.sky_sigma)


def release(tile: Tile) -> None:
    """Drop the decompressed or mapped pixels and close the file."""
    tile.data = tile.weight = tile.background = None
    if tile.hdul is not None:
        tile.hdul.close()
        tile.hdul = None


def _sky_sigma(data: np.ndarray, model=None) -> float:
    """Sky noise per pixel: 1.4826 MAD of a regular subsample of the finite pixels (less the background ``model``
    of :func:`_background_model`, if given), clipped at 3 sigma twice."""
    step = max(1, int(math.sqrt(data.size / SKY_SAMPLE)))
    sample = np.asarray(data[::step, ::step], dtype=np.float64)
    if model is not None:
        yy, xx = np.mgrid[0 : data.shape[0] : step, 0 : data.shape[1] : step]
        sample = sample - background_at(model, xx, yy)
    sample = sample[np.isfinite(sample)]
    if sample.size < 10:
        return float("nan")
    for _ in range(3):
        med = np.median(sample)
        sigma = 1.4826 * np.median(np.abs(sample - med))
        if not sigma > 0:
            return float(sigma)
        sample = sample[np.abs(sample - med) < 3.0 * sigma]
    return float(sigma)


def _background_model(tile: Tile, box_px: int):
    """A photutils ``Background2D`` model of the tile (input units), for :func:`background_at`.

    photutils measures each box (sigma-clipped, SExtractor's mode estimator); the boxes are resized to split the
    tile evenly (about ``box_px``), so that no thin box is left at an edge, and the mesh is interpolated linearly
    between the box centres and extrapolated beyond them. photutils' own full-size image is not used: its mesh
    centres ignore partial boxes and it clips to the range of the mesh, which bends a sky gradient at the tile
    edges by a large fraction of the gradient; nor is the mesh median-filtered, which biases gradients too.
    """
    from photutils.background import Background2D
    from scipy.interpolate import RegularGridInterpolator

    data = np.asarray(tile.data, dtype=np.float32)
    bad = ~np.isfinite(data)
    if tile.weight is not None:
        bad |= ~(np.asarray(tile.weight) > 0)
    ny, nx = tile.shape
    nby, nbx = max(1, round(ny / box_px)), max(1, round(nx / box_px))
    box = (-(-ny // nby), -(-nx // nbx))
    try:
        bkg = Background2D(data, box, mask=bad, filter_size=(1, 1), exclude_percentile=50.0)
    except ValueError as err:
        raise ValueError(f"{tile.path}: photutils could not model the background ({err})") from err
    mesh = np.asarray(bkg.background_mesh, dtype=np.float64)
    centres = [
        np.array([k * b + (min(b, n - k * b) - 1) / 2.0 for k in range(m)])
        for b, n, m in zip(box, tile.shape, mesh.shape, strict=True)
    ]
    if mesh.shape[0] == 1 or mesh.shape[1] == 1:  # one row or column of boxes: a constant along that axis
        mesh = np.repeat(np.repeat(mesh, 2 if mesh.shape[0] == 1 else 1, 0), 2 if mesh.shape[1] == 1 else 1, 1)
        centres = [c if len(c) > 1 else np.array([c[0] - 1.0, c[0] + 1.0]) for c in centres]
    return RegularGridInterpolator(centres, mesh, method="linear", bounds_error=False, fill_value=None)


def background_at(model, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The background ``model`` of :func:`_background_model` at pixel positions (x, y), any shape."""
    return model(np.stack([np.ravel(y), np.ravel(x)], axis=-1)).reshape(np.shape(x))


def candidates(tile: Tile, tree: cKDTree, ra: np.ndarray, dec: np.ndarray, reach_deg: float) -> np.ndarray:
    """Indices of the sources whose grid (of angular half-diagonal ``reach_deg``) can touch the tile.

    ``tree`` holds the unit vectors of the sources at ``ra, dec``.
    """
    cone = chord(min(tile.radius_deg + reach_deg, 179.0) * 3600.0)
    near = np.array(tree.query_ball_point(tile.centre, cone), dtype=np.int64)
    if near.size == 0:
        return near
    # The cone test is loose for long thin tiles: refine with the source position in tile pixels.
    x, y = tile.wcs.all_world2pix(ra[near], dec[near], 0, quiet=True)
    ny, nx = tile.shape
    scale = np.min(pixel_scales_deg(tile.wcs))
    margin = reach_deg / scale + resample.KERNEL_HALF_WIDTH["lanczos3"] + 1
    keep = (x > -margin) & (x < nx - 1 + margin) & (y > -margin) & (y < ny - 1 + margin)
    return near[keep]


def pixel_scales_deg(wcs) -> np.ndarray:
    from astropy.wcs.utils import proj_plane_pixel_scales

    return proj_plane_pixel_scales(wcs)


def ra_from_widest_gap(ra: np.ndarray) -> np.ndarray:
    """RA (deg, in [0, 360), not empty) measured from the end of the widest gap between the values: a set that
    crosses RA = 0 stays contiguous."""
    ra_s = np.sort(ra)
    gaps = np.diff(np.concatenate([ra_s, ra_s[:1] + 360.0]))
    return (ra - ra_s[(np.argmax(gaps) + 1) % ra_s.size]) % 360.0


def sky_order(ra: np.ndarray, dec: np.ndarray, strip_deg: float) -> np.ndarray:
    """A processing order that sweeps the sky in declination strips of ``strip_deg``, back and forth in RA.

    Consecutive sources are close on the sky, so a block of them touches few tiles and every tile is needed by a
    short run of consecutive blocks. RA is measured from the widest gap of the sources, so RA = 0 is no seam.
    """
    ra = np.asarray(ra, dtype=float) % 360.0
    if ra.size == 0:
        return np.zeros(0, dtype=np.int64)
    ra = ra_from_widest_gap(ra)
    strip = np.floor((np.asarray(dec, dtype=float) + 90.0) / strip_deg).astype(np.int64)
    along = np.where(strip % 2 == 0, ra, -ra)
    return np.lexsort((along, strip))


def single_threaded_blas():
    """One BLAS thread while resampling, where threadpoolctl is installed (a no-op context otherwise).

    The matrix products here are small (tens of terms by a few thousand pixels per batch): BLAS threads only spin,
    and on a busy machine they made resampling several times slower. Parallelism comes from shards.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _exposure_groups(tiles: list[Tile], combine: str) -> list[list[int]]:
    """Indices of the tiles of each exposure, in the order of first appearance (one group for ``best``)."""
    if combine == "best":
        return [list(range(len(tiles)))] if tiles else []
    groups: dict = {}
    for t, tile in enumerate(tiles):
        groups.setdefault(tile.exposure, []).append(t)
    return list(groups.values())


def iter_blocks(ra, dec, ids, tiles, size, pixel_scale_arcsec, interpolation, background, options, block_size, info):
    """Yield ``(rows, cubes, coverage, exposures, pixel_noise)`` per block of sky-adjacent grid centres.

    Parameters
    ----------
    ra, dec : ndarray, shape (N,)
        Centres of the grids (deg).
    ids : ndarray, shape (N,)
        Their identifiers (for the log of those outside every tile).
    tiles : dict of str to list of Tile
        From :func:`read_tiles`; a tile's pixels are opened when the first block that needs them comes and released
        after the last one, so each file is opened once (counted in ``Tile.opened``) and memory is bounded by a
        block's cubes plus the tiles that the current stretch of sky touches.
    size, pixel_scale_arcsec, interpolation, background
        The grid (pixels, arcsec per pixel), the kernel and the cutout-level background (``local`` or ``none``).
    options : StackOptions
    block_size : int
        Grids per block (fewer when stacking many exposures, see :data:`STACK_MEMORY_BYTES`).
    info : dict
        Receives ``n_outside`` (and ``outside_ids``, the first five).

    Yields
    ------
    rows : ndarray of int
        Indices into ``ra`` of the block's grids.
    cubes : ndarray, float32 (n, n_bands, size, size)
        Flux per output pixel at the reference zero point; invalid pixels 0.
    coverage, exposures, pixel_noise : ndarray, float32 (n, n_bands)
        Fraction of valid pixels; mean exposures per valid pixel; RMS noise of a valid pixel (0 without any), as
        the tiles' noise gives it before interpolation smoothed it (the noise of an aperture sum, per pixel, for
        output pixels of the input pixels' size).
    """
    from pipeline.core.log import progress

    bands = list(tiles)
    n_src = len(ra)
    info["n_outside"] = 0
    grid = resample.ControlGrid(size, pixel_scale_arcsec)
    batch = max(1, BATCH_PIXELS // (size * size))
    reach = math.sqrt(2.0) * size / 2.0 * pixel_scale_arcsec / 3600.0
    radii = [t.radius_deg for ts in tiles.values() for t in ts]
    strip = 2.0 * float(np.median(radii)) + 2.0 * reach if radii else 1.0
    order = sky_order(ra, dec, max(strip, 1e-3))
    position = np.empty(n_src, dtype=np.int64)
    position[order] = np.arange(n_src)
    tree = cKDTree(unit_vectors(ra, dec)) if n_src else None
    # Each tile's candidate grids once, as positions in the processing order (sorted).
    cands = {
        (band, t): (np.sort(position[candidates(tile, tree, ra, dec, reach)]) if n_src else np.zeros(0, np.int64))
        for band in bands
        for t, tile in enumerate(tiles[band])
    }
    groups = {band: _exposure_groups(tiles[band], options.combine) for band in bands}
    most = 1
    for band in bands:
        count = np.zeros(n_src, dtype=np.int64)
        for members in groups[band]:
            count[np.unique(np.concatenate([cands[band, t] for t in members]))] += 1
        most = max(most, int(count.max(initial=1)))
    if most > 1:
        block_size = max(1, min(block_size, STACK_MEMORY_BYTES // (STACK_BYTES_PER_PIXEL * most * size * size)))
    n_blocks = -(-n_src // block_size)
    with contextlib.ExitStack() as stack:
        stack.enter_context(single_threaded_blas())
        stack.callback(lambda: [release(tile) for ts in tiles.values() for tile in ts])
        for k in progress(range(n_blocks), total=n_blocks, desc="resampling: blocks", log=log):
            rows = order[k * block_size : (k + 1) * block_size]
            n = len(rows)
            lo_pos = k * block_size
            cubes = np.zeros((n, len(bands), size, size), dtype=np.float32)
            valid = np.zeros((n, len(bands), size, size), dtype=bool)
            exposures = np.zeros((n, len(bands)), dtype=np.float32)
            noise = np.zeros((n, len(bands)), dtype=np.float32)
            for b, band in enumerate(bands):
                ts = tiles[band]
                # The block's rows each exposure covers, and each row's slot among the exposures covering it.
                count = np.zeros(n, dtype=np.int64)
                parts = []
                for members in groups[band]:
                    idx = {}
                    for t in members:
                        pos = cands[band, t]
                        lo, hi = np.searchsorted(pos, [lo_pos, lo_pos + block_size])
                        if lo < hi:
                            idx[t] = (pos[lo:hi] - lo_pos, hi == len(pos))
                    if not idx:
                        continue
                    covered = np.unique(np.concatenate([i for i, _ in idx.values()]))
                    slot = np.full(n, -1, dtype=np.int64)
                    slot[covered] = count[covered]
                    count[covered] += 1
                    parts.append((idx, slot))
                n_exp = max(1, int(count.max(initial=1)))
                val = np.zeros((n, n_exp, size, size), dtype=np.float32)
                wgt = np.zeros((n, n_exp, size, size), dtype=np.float32)
                dist = np.full((n, n_exp, size, size), -np.inf, dtype=np.float32)
                for idx, slot in parts:
                    for t, (sel_all, last) in idx.items():
                        tile = ts[t]
                        if tile.data is None:
                            load(tile, options)
                        for start in range(0, sel_all.size, batch):
                            sel = sel_all[start : start + batch]
                            src = rows[sel]
                            _resample_batch(
                                tile, grid, ra[src], dec[src], interpolation, sel, slot[sel], val, wgt, dist
                            )
                        if last:  # the tile's last block
                            release(tile)
                del dist
                cube_b, valid_b, exp_b, inv_var = _combine(val, wgt, options.clip_sigma)
                cubes[:, b], valid[:, b] = cube_b, valid_b
                n_valid = np.maximum(valid_b.sum(axis=(1, 2)), 1)
                exposures[:, b] = exp_b.sum(axis=(1, 2)) / n_valid
                # the RMS noise of a valid pixel: the mean of the variances (1 / weight) over the valid pixels
                with np.errstate(divide="ignore"):
                    var = np.where(valid_b, 1.0 / inv_var, 0.0).sum(axis=(1, 2), dtype=np.float64)
                noise[:, b] = np.sqrt(var / n_valid)
            coverage = valid.mean(axis=(2, 3), dtype=np.float64).astype(np.float32)
            if background == "local" and n:
                subtract_local_background(cubes, valid, size)
            cubes[~valid] = 0.0
            outside = ~valid.any(axis=(1, 2, 3))
            if outside.any():
                info["n_outside"] += int(outside.sum())
                shown = info.setdefault("outside_ids", [])
                shown.extend(np.asarray(ids)[rows[outside]][: max(0, 5 - len(shown))])
            yield rows, cubes, coverage, exposures, noise
    if info["n_outside"]:
        shown = ", ".join(map(str, info["outside_ids"])) + (", ..." if info["n_outside"] > 5 else "")
        log.warning(
            "%d of %d grids lie outside every mosaic (coverage 0, zero cube): %s", info["n_outside"], n_src, shown
        )


def _resample_batch(tile, grid, ra, dec, method, sel, slot, val, wgt, dist) -> None:
    """Resample the grids at ``ra, dec`` from one tile into ``val[sel, slot]`` (and its weight ``wgt``) where this
    tile's pixel lies farther from its edge than the value there so far (``dist``).

    Input positions come from the exact WCS at the control points of ``grid`` and its cubic fit elsewhere; a grid
    whose fit misses the exact map at the check points by more than ``MAX_FIT_ERROR_PX`` (a WCS that is not smooth
    over the grid) is mapped exactly, pixel by pixel. Values are scaled by the tile's zero-point factor; weights are
    the inverse variance of an output pixel (the weight map's, or the tile's sky noise), scaled alike.
    """
    x, y, area, error = grid.map(tile.wcs, ra, dec)
    exact = ~(error <= MAX_FIT_ERROR_PX)
    if exact.any():
        x[exact], y[exact], area[exact] = grid.exact_map(tile.wcs, ra[exact], dec[exact])
    values, ok = resample.interpolate(tile.data, x, y, method, weight=tile.weight)
    if tile.background is not None:
        values -= background_at(tile.background, x, y)
    ny, nx = tile.shape
    d = resample.edge_distance(x, y, nx, ny).astype(np.float32)
    factor = area if tile.scale == 1.0 else area * tile.scale
    flux = values * factor
    if tile.weight is not None:
        w, w_ok = resample.interpolate(tile.weight, x, y, "bilinear")
        ok &= w_ok & (w > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            var_in = {"inverse_variance": 1.0 / w, "variance": w, "rms": w * w}[tile.weight_kind]
    else:
        var_in = tile.sky_sigma**2 if tile.sky_sigma > 0 else np.inf
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        inv_var = 1.0 / (var_in * factor * factor)
    # A tile without a measurable noise still counts, with a tiny weight (never 0: 0 means "no data").
    inv_var = np.where(np.isfinite(inv_var) & (inv_var > 0), inv_var, np.finfo(np.float32).tiny).astype(np.float32)
    at = (sel, slot)
    prev = dist[at]
    if np.isneginf(prev).all():  # the first tile of these grids and exposures: nothing to compare with
        val[at] = np.where(ok, flux, 0.0)
        wgt[at] = np.where(ok, inv_var, 0.0)
        dist[at] = np.where(ok, d, -np.inf)
        return
    take = ok & (d > prev)
    val[at] = np.where(take, flux, val[at])
    wgt[at] = np.where(take, inv_var, wgt[at])
    dist[at] = np.where(take, d, prev)


def _combine(val: np.ndarray, wgt: np.ndarray, clip_sigma: float | None):
    """Combine the exposure planes (n, E, S, S) of a band: the cube (n, S, S) float32, its valid pixels, the number
    of exposures kept per pixel, and the inverse variance of each output pixel (0 where invalid).

    One plane (the single-tile choice, or one exposure) is returned as it is. With several: SWarp's clipped,
    inverse-variance weighted mean (see the module's notes); ``clip_sigma`` None averages every value.
    """
    have = wgt > 0
    if val.shape[1] == 1:
        keep = have[:, 0]
        return val[:, 0], keep, keep.astype(np.float32), wgt[:, 0]
    count = have.sum(axis=1)
    keep = have
    if clip_sigma is not None and (count >= 2).any():
        from scipy.ndimage import gaussian_filter

        smooth = CLIP_SMOOTH_PX
        # the noise of a residual smoothed by the kernel, per unit of its pixels' noise: sqrt(sum of kernel^2)
        norm = 1.0 / (2.0 * math.sqrt(math.pi) * smooth)
        with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices: pixels no exposure covers
            median = _median(val, have, count)
            sigma = np.where(have, 1.0 / np.sqrt(wgt), np.inf)
            resid = np.where(have, val - median[:, None], 0.0)
            # SWarp's test, pixel by pixel ...
            raw = np.abs(resid) > clip_sigma * sigma + CLIP_AMPFRAC * np.abs(median)[:, None]
            # ... and the same deviation over the kernel: a change of seeing moves light from the core of a source
            # to its wings (their sum is zero), an artefact adds light
            smoothed = np.abs(gaussian_filter(resid, smooth, axes=(2, 3), mode="constant"))
            level = np.abs(gaussian_filter(median, smooth, axes=(1, 2), mode="nearest"))[:, None]
            wide = smoothed > clip_sigma * sigma * norm + CLIP_AMPFRAC * level
            out = raw & wide
            keep = have & ~(out & (count[:, None] >= 3))
            # Two values: both go if they differ so (their difference is twice either one's residual).
            two = count == 2
            if two.any():
                joint = np.sqrt(np.where(have, sigma * sigma, 0.0).sum(axis=1))
                diff = 2.0 * np.where(have, np.abs(resid), 0.0).max(axis=1)
                wide2 = 2.0 * np.where(have, smoothed, 0.0).max(axis=1)
                bad = diff > clip_sigma * joint + CLIP_AMPFRAC * np.abs(median)
                bad &= wide2 > clip_sigma * joint * norm + CLIP_AMPFRAC * level[:, 0]
                keep = keep & ~(two & bad)[:, None]
    w = np.where(keep, wgt, 0.0).astype(np.float64)
    total = w.sum(axis=1)
    valid = total > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        cube = np.where(valid, (w * val).sum(axis=1) / total, 0.0).astype(np.float32)
    return cube, valid, keep.sum(axis=1).astype(np.float32), total


def _median(val: np.ndarray, have: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Median along axis 1 of the values that ``have`` (n, E, S, S), ``count`` of them per pixel: 0 where none.
    (``np.nanmedian`` goes through masked arrays for a short axis, several times slower.)"""
    ranked = np.sort(np.where(have, val, np.inf), axis=1)
    lo = np.take_along_axis(ranked, np.maximum(count - 1, 0)[:, None] // 2, axis=1)[:, 0]
    hi = np.take_along_axis(ranked, (count // 2)[:, None], axis=1)[:, 0] if ranked.shape[1] > 1 else lo
    hi = np.where(count % 2 == 1, lo, hi)
    return np.where(count > 0, 0.5 * (lo + hi), 0.0).astype(np.float32)


def subtract_local_background(cubes: np.ndarray, valid: np.ndarray, size: int) -> None:
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


def units_attr(units: dict, options: StackOptions) -> str:
    """The unit attribute of a cube: the input images' ``BUNIT`` when all share one and no zero-point scaling was
    asked for, else a description by the reference zero point."""
    known = {u for u in units.values() if u}
    if options.zero_point_keys:
        return f"flux of AB zero point {options.zero_point:g} per output pixel"
    base = known.pop() if len(known) == 1 else "input image units"
    return f"{base} per output pixel"


FITS_SUFFIXES = (".fits", ".fits.gz", ".fits.bz2", ".fits.fz", ".fit", ".fit.gz", ".fts")


def parse_band(text: str) -> tuple[str, list[str]]:
    """``NAME=GLOB`` (a command-line ``--band``) to the band name and its sorted FITS files."""
    import argparse
    import glob

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


def _clip_sigma(text: str) -> float | None:
    return None if text.lower() in ("none", "null", "off") else float(text)


def add_stack_arguments(parser) -> None:
    """The command-line options of :class:`StackOptions`, their defaults the config schema's."""
    from pipeline.core.config import schema_default

    c = lambda key: schema_default(f"cutouts.{key}")  # noqa: E731
    group = parser.add_argument_group("calibration and combination of the tiles (StackOptions)")
    group.add_argument("--combine", choices=COMBINES, default=c("combine"))
    group.add_argument("--clip-sigma", type=_clip_sigma, default=c("clip_sigma"), help="'none' averages all")
    group.add_argument("--weight-hdu", default=c("weight_hdu"), help="auto, none, or the EXTNAME of the weight map")
    group.add_argument("--weight-kind", choices=WEIGHT_KINDS, default=c("weight_kind"))
    group.add_argument("--zero-point", type=float, default=schema_default("survey.zero_point"), help="reference AB")
    group.add_argument(
        "--zero-point-key", action="append", default=None, metavar="KEY", help="header keyword of a tile's zero point"
    )
    group.add_argument("--exposure-key", action="append", default=None, metavar="KEY", help="names a tile's exposure")
    group.add_argument("--mosaic-background", choices=MOSAIC_BACKGROUNDS, default=c("mosaic_background"))
    group.add_argument("--mosaic-background-box", type=int, default=c("mosaic_background_box_px"), metavar="PX")


def options_from_args(args) -> StackOptions:
    """The :class:`StackOptions` of arguments parsed with :func:`add_stack_arguments`."""
    return StackOptions(
        combine=args.combine, clip_sigma=args.clip_sigma, weight_hdu=args.weight_hdu, weight_kind=args.weight_kind,
        zero_point=args.zero_point, zero_point_keys=tuple(args.zero_point_key or ()),
        exposure_keys=tuple(args.exposure_key or ()), mosaic_background=args.mosaic_background,
        background_box_px=args.mosaic_background_box,
    )  # fmt: skip


def stack_argv(cfg: dict) -> list:
    """The command-line options of :func:`add_stack_arguments` for a validated config (used by the workflow)."""
    c, s = cfg["cutouts"], cfg["survey"]
    argv = ["--combine", c["combine"], "--clip-sigma", "none" if c["clip_sigma"] is None else c["clip_sigma"]]
    argv += ["--weight-hdu", c["weight_hdu"], "--weight-kind", c["weight_kind"], "--zero-point", s["zero_point"]]
    for key in s["zero_point_keys"]:
        argv += ["--zero-point-key", key]
    for key in c["exposure_keys"]:
        argv += ["--exposure-key", key]
    return argv + [
        "--mosaic-background",
        c["mosaic_background"],
        "--mosaic-background-box",
        c["mosaic_background_box_px"],
    ]
