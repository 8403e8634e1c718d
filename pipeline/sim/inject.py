"""Injection: render mock galaxies into the user's own mosaics (real noise, real PSF, real WCS).

Survey teams calibrate their pipelines this way: objects of known redshift, colours and shape are added to the real
images, which keep their noise, masks, artefacts and astrometry, and the pipeline is run on the result. Positions go
through the tile's full WCS (``all_world2pix``: SIP and other distortions included) and the galaxy's shape through
the WCS's local Jacobian; the PSF is a Moffat of the header's (or the given) FWHM; fluxes are converted from
nanomaggies to the tile's units with its AB zero point. Where the header gives a gain (``GAIN``, electrons per data
unit) the injected light also gets its photon noise.
"""

from __future__ import annotations

import dataclasses
import glob
import logging
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.io import fits

from pipeline.core.bands import sort_bands
from pipeline.core.io import atomic_path, write_json
from pipeline.core.sky import unit_vectors

from .catalog import component_fluxes, draw_catalog, tan_project
from .mosaic import MAX_STAMP_PX, SHAPE_COLUMNS, add_sources, max_radius_arcsec
from .noise import ZERO_POINT
from .survey import check_destination, colour_grid, parameters

log = logging.getLogger("pipeline.sim")

ZP_KEYS = ("MAGZERO", "MAGZP", "MAGZPT", "ZP", "ZEROPT", "PHOTZP")
PSF_KEYS = ("PSF_FWHM", "PSFFWHM", "SEEING", "FWHM")
_EDGE_ARCSEC = 5.0


@dataclasses.dataclass
class _Tile:
    path: Path
    band: str
    data: np.ndarray
    header: fits.Header
    wcs: object
    scale: float
    zero_point: float
    psf_fwhm: float
    gain: float | None


def _open_tile(path: Path, band: str, psf_fwhm: float | None, zero_point: float | None) -> _Tile:
    from astropy.wcs import WCS, FITSFixedWarning
    from astropy.wcs.utils import proj_plane_pixel_scales

    with fits.open(path) as hdul, warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        for hdu in hdul:
            if hdu.is_image and hdu.data is not None and hdu.data.ndim == 2:
                wcs = WCS(hdu.header).celestial
                if wcs.has_celestial:
                    header, data = hdu.header.copy(), np.asarray(hdu.data, dtype=np.float64)
                    break
        else:
            raise ValueError(f"{path}: no 2-d image HDU with a celestial WCS to inject into")
    if zero_point is None:
        zero_point = next((float(header[k]) for k in ZP_KEYS if k in header), None)
        if zero_point is None and any(u in str(header.get("BUNIT", "")).lower() for u in ("nanomagg", "nmgy")):
            zero_point = ZERO_POINT
    if zero_point is None:
        raise ValueError(
            f"{path}: no AB zero point in the header (looked for {', '.join(ZP_KEYS)} and BUNIT = nanomaggy): "
            "give one (--zero-point)"
        )
    if psf_fwhm is None:
        psf_fwhm = next((float(header[k]) for k in PSF_KEYS if k in header), None)
    if psf_fwhm is None or not psf_fwhm > 0:
        raise ValueError(
            f"{path}: no PSF FWHM (arcsec) in the header (looked for {', '.join(PSF_KEYS)}): give one (--psf-fwhm)"
        )
    scale = float(np.mean(proj_plane_pixel_scales(wcs)) * 3600.0)
    gain = float(header["GAIN"]) if "GAIN" in header and float(header["GAIN"]) > 0 else None
    return _Tile(path, band, data, header, wcs, scale, zero_point, psf_fwhm, gain)


def _local_jacobian(wcs, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pixel-to-sky Jacobian (arcsec per pixel, (east, north) = J @ (x, y)), shape (n, 2, 2), by central differences."""
    jac = np.empty((len(x), 2, 2))
    ra0, dec0 = wcs.all_pix2world(x, y, 0)
    cosd = np.cos(np.deg2rad(dec0))
    for j, (ddx, ddy) in enumerate(((0.5, 0.0), (0.0, 0.5))):
        ra_p, dec_p = wcs.all_pix2world(x + ddx, y + ddy, 0)
        ra_m, dec_m = wcs.all_pix2world(x - ddx, y - ddy, 0)
        dra = (ra_p - ra_m + 180.0) % 360.0 - 180.0
        jac[:, 0, j] = dra * cosd * 3600.0
        jac[:, 1, j] = (dec_p - dec_m) * 3600.0
    return jac


def _footprint(tiles: list[_Tile]):
    """Centre (ra, dec) and the corners (ra, dec arrays) of all tiles."""
    ras, decs = [], []
    for t in tiles:
        ny, nx = t.data.shape
        r, d = t.wcs.all_pix2world([0, nx - 1, nx - 1, 0], [0, 0, ny - 1, ny - 1], 0)
        ras.append(r)
        decs.append(d)
    ra, dec = np.concatenate(ras), np.concatenate(decs)
    # Mean of the corners' unit vectors, each component summed along a contiguous row.
    v = np.ascontiguousarray(unit_vectors(ra, dec).T).mean(axis=1)
    centre = (float(np.rad2deg(np.arctan2(v[1], v[0])) % 360.0), float(np.rad2deg(np.arcsin(v[2] / np.linalg.norm(v)))))
    return centre, ra, dec


def inject_tile(tile: _Tile, x: np.ndarray, y: np.ndarray, df: pd.DataFrame, bulge, disk, beta: float, rng):
    """The tile's data plus the sources of ``df`` rendered at its pixels (x, y) (in the tile's units; NaN pixels stay
    NaN), shape of the data."""
    ny, nx = tile.data.shape
    reach = MAX_STAMP_PX // 2 + 1
    inside = np.flatnonzero((x > -reach) & (x < nx + reach) & (y > -reach) & (y < ny + reach))
    if len(inside) == 0:
        return tile.data.copy()
    model = np.zeros_like(tile.data)
    shapes = {c: df[c].to_numpy() for c in SHAPE_COLUMNS}
    add_sources(
        model, inside, x, y, _local_jacobian(tile.wcs, x[inside], y[inside]), bulge, disk, shapes,
        df["is_star"].to_numpy(), tile.psf_fwhm / tile.scale, beta, tile.scale,
        factor=10.0 ** (0.4 * (tile.zero_point - ZERO_POINT)),
    )  # fmt: skip
    if tile.gain is not None:
        model += rng.standard_normal(model.shape) * np.sqrt(np.clip(model, 0.0, None) / tile.gain)
    return tile.data + model


def inject_survey(sim_cfg: dict, globs: dict, out, psf_fwhm_arcsec=None, zero_point=None) -> dict:
    """Render a mock catalog into the user's mosaics and write them, the catalog and its spec-z as a survey folder.

    Parameters
    ----------
    sim_cfg : dict
        The ``simulation`` block (``preset`` for the filters, colours and magnitude model; ``n_sources``, ``seed``,
        ``mag_range``, ``star_fraction`` (0 unless given), ``filters``).
    globs : dict
        Band -> glob of the user's FITS files (compressed ``.gz``/``.bz2`` files are read too).
    out : str or Path
        Output folder: ``mosaics/<band>/<file>.fits`` (the input tiles plus the mocks, header kept, ``INJECTD``
        added), ``sources.parquet`` (the injected objects), ``specz/injected.parquet`` (their true redshifts, secure)
        and ``survey.json``.
    psf_fwhm_arcsec, zero_point : float, optional
        Override the headers' PSF FWHM (arcsec) and AB zero point.

    Returns
    -------
    dict
        The content of ``survey.json``.
    """

    t_start = time.monotonic()
    sim_cfg = {"star_fraction": 0.0, **sim_cfg}
    params, preset = parameters(sim_cfg)
    bands = sort_bands(globs)
    unknown = [b for b in bands if b not in preset.bands]
    if unknown:
        raise ValueError(
            f"inject: bands {unknown} are not in the {preset.name} preset (bands {list(preset.bands)}); the preset "
            "gives each band its filter curve: choose a preset with them"
        )
    params["inject_into"] = {b: globs[b] for b in bands}
    params["psf_fwhm_arcsec"] = psf_fwhm_arcsec
    params["zero_point"] = zero_point
    out = Path(out)
    check_destination(out, params)
    tiles = {}
    for band in bands:
        paths = sorted(Path(p) for p in glob.glob(globs[band]))
        if not paths:
            raise FileNotFoundError(f"inject: no file matches {globs[band]!r} (band {band})")
        tiles[band] = [_open_tile(p, band, psf_fwhm_arcsec, zero_point) for p in paths]
    all_tiles = [t for b in bands for t in tiles[b]]
    centre, ra_c, dec_c = _footprint(tiles[bands[0]])
    xi, eta = tan_project(ra_c, dec_c, centre)
    edge = _EDGE_ARCSEC / 3600.0
    # The box around the first band's tiles; sources that land in none of a band's tiles are flagged per band.
    extent = (2 * (np.abs(xi).max() - edge), 2 * (np.abs(eta).max() - edge))
    streams = np.random.SeedSequence(params["seed"]).spawn(2)
    rng_cat, rng_noise = (np.random.default_rng(s) for s in streams)
    r_cap = min(max_radius_arcsec(t.psf_fwhm / t.scale, t.scale) for t in all_tiles)
    grid = colour_grid(tuple(preset.filters.items()))
    df = draw_catalog(
        preset, params["n_sources"], params["star_fraction"], rng_cat, r_cap, grid, centre=centre, extent_deg=extent
    )
    log.info("injecting %d sources into %d files of bands %s", len(df), len(all_tiles), bands)
    with atomic_path(out, suffix="") as tmp:
        tmp.mkdir()
        names = {}
        for band in bands:
            bulge, disk = component_fluxes(df, preset, grid, band)
            (tmp / "mosaics" / band).mkdir(parents=True)
            names[band] = []
            on = np.zeros(len(df), bool)
            for tile in tiles[band]:
                x, y = tile.wcs.all_world2pix(df["ra"].to_numpy(), df["dec"].to_numpy(), 0, quiet=True)
                on |= (x > -0.5) & (x < tile.data.shape[1] - 0.5) & (y > -0.5) & (y < tile.data.shape[0] - 0.5)
                image = inject_tile(tile, x, y, df, bulge, disk, preset.moffat_beta, rng_noise)
                header = tile.header.copy()
                header["INJECTD"] = (len(df), "mock sources injected by pipeline.simulate")
                header["INJPSF"] = (tile.psf_fwhm, "PSF FWHM used for the injection, arcsec")
                header["INJZP"] = (tile.zero_point, "AB zero point used for the injection")
                name = tile.path.name
                for suffix in (".bz2", ".gz", ".fz"):
                    name = name.removesuffix(suffix)
                if not name.endswith((".fits", ".fit")):
                    name += ".fits"
                fits.PrimaryHDU(data=image.astype(np.float32), header=header).writeto(tmp / "mosaics" / band / name)
                names[band].append(f"mosaics/{band}/{name}")
            df[f"injected_{band}"] = on
        df.to_parquet(tmp / "sources.parquet", index=False)
        (tmp / "specz").mkdir()
        gal = ~df["is_star"].to_numpy()
        pd.DataFrame(
            {"ra": df["ra"][gal], "dec": df["dec"][gal], "z": df["z_true"][gal], "zwarning": np.zeros(gal.sum(), int)}
        ).to_parquet(tmp / "specz" / "injected.parquet", index=False)
        summary = {
            "parameters": params,
            "mode": "injection",
            "preset": preset.name,
            "bands": bands,
            "filters": {b: preset.filters[b] for b in bands},
            "pixel_scale_arcsec": {b: tiles[b][0].scale for b in bands},
            "psf_fwhm_arcsec": {b: tiles[b][0].psf_fwhm for b in bands},
            "zero_point": {b: tiles[b][0].zero_point for b in bands},
            "field_centre_deg": list(centre),
            "field_extent_deg": list(extent),
            "n_sources": len(df),
            "seed": params["seed"],
            "tiles": names,
            "specz": {
                "injected": {
                    "file": "specz/injected.parquet",
                    "columns": {"ra": "ra", "dec": "dec", "z": "z", "flag": "zwarning"},
                    "flag_column": "zwarning",
                    "secure_values": [0],
                    "n": int(gal.sum()),
                }
            },
        }
        write_json(summary, tmp / "survey.json")
    log.info("injected survey written to %s in %.1f s", out, time.monotonic() - t_start)
    return summary
