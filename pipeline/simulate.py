"""The embedded simulated survey: multi-band mosaics, a source catalog and mock spec-z surveys.

``photoz simulate --config config/config.yaml --out DIR`` (or ``python -m pipeline.simulate``) writes::

    DIR/mosaics/<band>/tile-XX.fits   float32 nanomaggies, sky subtracted, TAN WCS (CD matrix), per band grids
    DIR/sources.parquet               true and observed catalog (object_id, ra, dec, ebv, mag_<band>, z_true, ...)
    DIR/specz/<survey>.parquet        mock spectroscopic surveys with their quality flags
    DIR/survey.json                   what was simulated, with the spec-z flag conventions

The survey is built in a temporary directory beside ``DIR`` and renamed onto it at the end, so that a killed run
never leaves a survey that looks complete. The same configuration and seed give byte-identical files.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import logging
import time
from pathlib import Path

import numpy as np

from . import __version__
from .bands import sort_bands
from .io import atomic_path, write_json
from .log import setup
from .sim.catalog import FIELD_CENTRE_DEG, component_fluxes, draw_catalog, field_side_deg
from .sim.mosaic import MAX_STAMP_PX, band_grid, render_band, write_tiles
from .sim.noise import ZERO_POINT, band_noise
from .sim.presets import get_preset
from .sim.render import TRUNC_RE, moffat_fwhm_radius
from .sim.sed import ColourGrid, extinction_coefficients
from .sim.specz import describe, mock_survey

log = logging.getLogger("pipeline.simulate")

# Streams of the seed: changing how one part draws never changes another part's numbers.
_STREAMS = ("catalog", "grids", "noise", "specz")


@functools.lru_cache(maxsize=4)
def _colour_grid(preset_name: str) -> ColourGrid:
    """The preset's (type x redshift) colour grid, computed once per process."""
    return ColourGrid(get_preset(preset_name).filters)


def _parameters(sim_cfg: dict) -> dict:
    """The resolved parameters that identify a survey (the preset's defaults filled in)."""
    preset = get_preset(sim_cfg.get("preset", "sdss"))
    params = {
        "preset": preset.name,
        "n_sources": int(sim_cfg["n_sources"]),
        "seed": int(sim_cfg["seed"]),
        "tile_size_px": int(sim_cfg.get("tile_size_px") or preset.tile_size_px),
        "star_fraction": float(sim_cfg.get("star_fraction", preset.star_fraction)),
        "mag_range": [float(m) for m in (sim_cfg.get("mag_range") or preset.gal_mag_range)],
    }
    lo, hi = params["mag_range"]
    if not lo < hi:
        raise ValueError(f"simulation.mag_range: bright limit {lo} must be below faint limit {hi}")
    if params["n_sources"] < 1:
        raise ValueError(f"simulation.n_sources must be positive, got {params['n_sources']}")
    if not 0.0 <= params["star_fraction"] < 1.0:
        raise ValueError(f"simulation.star_fraction must be in [0, 1), got {params['star_fraction']}")
    if params["tile_size_px"] <= 2 * 64:
        raise ValueError(
            f"simulation.tile_size_px must exceed twice the 64 px tile overlap, got {params['tile_size_px']}"
        )
    return params


def _check_destination(out: Path, params: dict) -> None:
    """Refuse to replace anything but an empty directory or a survey made with the same parameters."""
    if not out.exists():
        return
    if not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a directory; refusing to write a survey there")
    meta = out / "survey.json"
    if meta.exists():
        old = json.loads(meta.read_text()).get("parameters")
        if old != params:
            raise FileExistsError(
                f"{out} holds a different simulated survey ({old}); refusing to overwrite it with {params}: "
                "remove it or choose another output directory"
            )
    elif any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty and holds no survey.json; refusing to overwrite it")


def simulate_survey(sim_cfg: dict, out) -> dict:
    """Simulate a multi-band imaging survey with its source catalog and spec-z surveys.

    Parameters
    ----------
    sim_cfg : dict
        The config's ``simulation`` block: ``preset`` (``sdss``, ``cfhtls`` or ``hsc``), ``n_sources`` (galaxies
        plus stars), ``seed``, and optionally ``tile_size_px`` (largest tile side; tiles shrink evenly to cover the
        field) and ``star_fraction``.
    out : str or Path
        Output directory; replaced atomically. An existing directory holding a survey with other parameters, or
        anything other than a survey, is an error.

    Returns
    -------
    dict
        The content of ``survey.json``.

    Raises
    ------
    ValueError
        Unknown preset or invalid parameters.
    FileExistsError
        ``out`` holds a different survey.
    """
    t_start = time.monotonic()
    params = _parameters(sim_cfg)
    preset = dataclasses.replace(get_preset(params["preset"]), gal_mag_range=tuple(params["mag_range"]))
    out = Path(out)
    _check_destination(out, params)
    bands = sort_bands(preset.bands)
    streams = dict(zip(_STREAMS, np.random.SeedSequence(params["seed"]).spawn(len(_STREAMS)), strict=True))
    rng = {k: np.random.default_rng(s) for k, s in streams.items()}
    scale = preset.pixel_scale_arcsec

    noises = {b: band_noise(preset, b) for b in bands}
    psf_half = max(moffat_fwhm_radius(n.fwhm_px) for n in noises.values())
    r_cap = (MAX_STAMP_PX // 2 - psf_half - 1) / TRUNC_RE * scale
    colour_grid = _colour_grid(preset.name)
    df = draw_catalog(preset, params["n_sources"], params["star_fraction"], rng["catalog"], r_cap, colour_grid)
    side = field_side_deg(preset, params["n_sources"])
    log.info("%s preset: %d sources over %.1f arcmin square", preset.name, len(df), side * 60)

    with atomic_path(out, suffix="") as tmp:
        tmp.mkdir()
        tiles = {}
        for band in bands:
            grid = band_grid(band, side, scale, params["tile_size_px"], rng["grids"])
            bulge, disk = component_fluxes(df, preset, colour_grid, band)
            noise = noises[band]
            canvas = render_band(grid, df, bulge, disk, noise, preset.moffat_beta, scale, rng["noise"])
            keywords = {
                "BAND": (band, "photometric band"),
                "FILTER": (preset.filters[band], "speclite filter curve"),
                "PIXSCALE": (scale, "arcsec per pixel"),
                "PSF_FWHM": (preset.psf_fwhm_arcsec[band], "PSF FWHM, arcsec (Moffat)"),
                "PSFBETA": (preset.moffat_beta, "Moffat beta of the PSF"),
                "SKYSUB": (True, "sky level already subtracted"),
                "SKYLEVEL": (noise.sky, "subtracted sky, nanomaggy per pixel"),
                "SKYSIG": (noise.sigma_pix, "sky noise, nanomaggy per pixel"),
                "GAIN": (noise.gain, "electrons per nanomaggy"),
                "RDNOISE": (noise.read_noise_e, "read noise, electrons"),
                "DEPTH5": (preset.depth_mag[band], "5-sigma point-source depth, AB mag"),
                "EXTCORR": (False, "not corrected for Galactic extinction"),
                "SURVEY": (preset.name, "simulated survey preset"),
                "SIMSEED": (params["seed"], "simulation seed"),
                "ORIGIN": "pipeline.simulate",
            }
            tiles[band] = write_tiles(canvas, grid, tmp / "mosaics" / band, keywords)
            log.info(
                "band %s: %d tiles of %d px (%.1f s)", band, len(grid.tiles), grid.tile_size, time.monotonic() - t_start
            )
        df.to_parquet(tmp / "sources.parquet", index=False)

        (tmp / "specz").mkdir()
        observed = np.zeros(len(df), bool)
        specz = {}
        for survey in preset.specz:
            table, seen = mock_survey(survey, df, rng["specz"], observed)
            observed |= seen
            table.to_parquet(tmp / "specz" / f"{survey.name}.parquet", index=False)
            specz[survey.name] = {**describe(survey), "n": len(table)}
            log.info("spec-z survey %s: %d redshifts", survey.name, len(table))

        summary = {
            "parameters": params,
            "preset": preset.name,
            "bands": bands,
            "filters": {b: preset.filters[b] for b in bands},
            "pixel_scale_arcsec": {b: scale for b in bands},
            "psf_fwhm_arcsec": {b: preset.psf_fwhm_arcsec[b] for b in bands},
            "depth_5sigma_mag": {b: preset.depth_mag[b] for b in bands},
            "sky_noise_nmgy_per_pixel": {b: noises[b].sigma_pix for b in bands},
            "extinction_r_coefficients": extinction_coefficients({b: preset.filters[b] for b in bands}),
            "zero_point": ZERO_POINT,
            "flux_unit": "nanomaggy",
            "sky_subtracted": True,
            "field_centre_deg": list(FIELD_CENTRE_DEG),
            "field_side_deg": side,
            "n_sources": params["n_sources"],
            "n_stars": int(df["is_star"].sum()),
            "seed": params["seed"],
            "tiles": {b: [f"mosaics/{b}/{name}" for name in tiles[b]] for b in bands},
            "specz": specz,
            "pipeline_version": __version__,
        }
        write_json(summary, tmp / "survey.json")
    log.info("survey written to %s in %.1f s", out, time.monotonic() - t_start)
    return summary


def _load_sim_cfg(path) -> dict:
    """The validated ``simulation`` block of a YAML config file."""
    from pipeline.config import load_config

    cfg = load_config(path, sections=("simulation",))
    if "simulation" not in cfg:
        raise ValueError(f"{path}: no top-level 'simulation' block")
    return dict(cfg["simulation"])


def main(argv=None) -> None:
    """Command line: ``photoz simulate --config FILE --out DIR [--preset P] [--n-sources N] [--seed S]``."""
    parser = argparse.ArgumentParser(prog="photoz simulate", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="YAML config with a top-level 'simulation' block")
    parser.add_argument("--out", required=True, help="output survey directory")
    parser.add_argument("--preset", help="override simulation.preset (sdss, cfhtls, hsc)")
    parser.add_argument("--n-sources", type=int, help="override simulation.n_sources")
    parser.add_argument("--seed", type=int, help="override simulation.seed")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    setup(args.verbose)
    sim_cfg = _load_sim_cfg(args.config) if args.config else {}
    for key, value in (("preset", args.preset), ("n_sources", args.n_sources), ("seed", args.seed)):
        if value is not None:
            sim_cfg[key] = value
    missing = [k for k in ("n_sources", "seed") if k not in sim_cfg]
    if missing:
        parser.error(f"missing simulation parameters {missing}: give --config or the options")
    simulate_survey(sim_cfg, args.out)


if __name__ == "__main__":
    main()
