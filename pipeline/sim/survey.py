"""The embedded simulated survey: multi-band mosaics, a source catalog and mock spec-z surveys.

:func:`simulate_survey` writes::

    DIR/mosaics/<band>/tile-XX.fits   float32 nanomaggies, sky subtracted, TAN or TAN-SIP WCS, per band grids
    DIR/sources.parquet               true and observed catalog (object_id, ra, dec, ebv, mag_<band>, z_true, ...)
    DIR/specz/<survey>.parquet        mock spectroscopic surveys with their quality flags
    DIR/survey.json                   what was simulated, with the spec-z flag conventions

The survey is built in a temporary directory beside ``DIR`` and renamed onto it at the end, so that a killed run
never leaves a survey that looks complete. The same configuration and seed give byte-identical files, whatever the
number of rendering processes (``workers``) and whether it was made at once or as ``shard`` parts joined by
:func:`merge_shards`. :mod:`pipeline.sim.inject` renders the mock catalog into the user's own mosaics instead.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np

from pipeline import __version__
from pipeline.core.bands import sort_bands
from pipeline.core.io import atomic_path, read_json, write_json

from . import epochs as multi
from .catalog import FIELD_CENTRE_DEG, component_fluxes, draw_catalog, field_side_deg, tan_project
from .mosaic import SHAPE_COLUMNS, BandJob, band_grid, draw_masks, max_radius_arcsec, write_tile
from .noise import ZERO_POINT, band_noise
from .presets import Preset, get_preset
from .sed import ColourGrid, check_filters, extinction_coefficients
from .specz import describe, mock_survey

log = logging.getLogger("pipeline.sim")

# Streams of the seed: changing how one part draws never changes another part's numbers.
_STREAMS = ("catalog", "grids", "noise", "specz")
# Reference-band galaxy magnitudes the catalog model (counts, sizes, redshifts) is meant for.
_MAG_LIMITS = (8.0, 30.0)


@functools.lru_cache(maxsize=4)
def colour_grid(filters: tuple[tuple[str, str], ...]) -> ColourGrid:
    """The (type x redshift) colour grid of ``filters`` (band, curve name pairs), computed once per process."""
    return ColourGrid(dict(filters))


def resolve_preset(sim_cfg: dict) -> Preset:
    """The preset named by ``sim_cfg`` with its ``filters`` overrides applied; a ``ValueError`` for unknown bands or
    filter curves."""
    preset = get_preset(sim_cfg.get("preset", "sdss"))
    overrides = dict(sim_cfg.get("filters") or {})
    unknown = sorted(set(overrides) - set(preset.bands))
    if unknown:
        raise ValueError(
            f"simulation.filters: bands {unknown} are not in the {preset.name} preset (bands {list(preset.bands)})"
        )
    filters = {**preset.filters, **overrides}
    check_filters(filters)
    return dataclasses.replace(preset, filters=filters)


def parameters(sim_cfg: dict) -> tuple[dict, Preset]:
    """The resolved parameters that identify a survey (the preset's defaults filled in), and the preset they give
    (filters overridden, galaxy magnitude range set)."""
    preset = resolve_preset(sim_cfg)
    params = {
        "preset": preset.name,
        "n_sources": int(sim_cfg["n_sources"]),
        "seed": int(sim_cfg["seed"]),
        "tile_size_px": int(sim_cfg.get("tile_size_px") or preset.tile_size_px),
        "star_fraction": float(sim_cfg.get("star_fraction", preset.star_fraction)),
        "mag_range": [float(m) for m in (sim_cfg.get("mag_range") or preset.gal_mag_range)],
    }
    if sim_cfg.get("filters"):
        params["filters"] = dict(sorted(sim_cfg["filters"].items()))
    epochs = int(sim_cfg.get("epochs") or 1)
    if epochs < 1:
        raise ValueError(f"simulation.epochs must be >= 1, got {epochs}")
    if epochs > 1:  # absent for one epoch: the single-epoch surveys keep their parameters (and bytes)
        params["epochs"] = epochs
    lo, hi = params["mag_range"]
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise ValueError(f"simulation.mag_range: bright limit {lo} must be below faint limit {hi}")
    if lo < _MAG_LIMITS[0] or hi > _MAG_LIMITS[1]:
        raise ValueError(
            f"simulation.mag_range {[lo, hi]} is outside the {list(_MAG_LIMITS)} that galaxy counts, sizes and "
            f"redshifts are modelled over ({preset.ref_band}-band AB magnitudes)"
        )
    if params["n_sources"] < 1:
        raise ValueError(f"simulation.n_sources must be positive, got {params['n_sources']}")
    if not 0.0 <= params["star_fraction"] < 1.0:
        raise ValueError(f"simulation.star_fraction must be in [0, 1), got {params['star_fraction']}")
    if params["tile_size_px"] <= 2 * 64:
        raise ValueError(
            f"simulation.tile_size_px must exceed twice the 64 px tile overlap, got {params['tile_size_px']}"
        )
    return params, dataclasses.replace(preset, gal_mag_range=(lo, hi))


def check_destination(out: Path, params: dict, shard=None) -> None:
    """Refuse to replace anything but an empty directory or a survey made with the same parameters (and shard)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a directory; refusing to write a survey there")
    meta = out / "survey.json"
    if meta.exists():
        old = read_json(meta)
        if old.get("parameters") != params or old.get("shard") != shard:
            raise FileExistsError(
                f"{out} holds a different simulated survey ({old.get('parameters')}, shard {old.get('shard')}); "
                f"refusing to overwrite it with {params}, shard {shard}: remove it or choose another output directory"
            )
    elif any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty and holds no survey.json; refusing to overwrite it")


def parse_shard(shard):
    """``"K/N"`` or (K, N) to ``[K, N]`` with 0 <= K < N; None stays None."""
    if shard is None:
        return None
    if isinstance(shard, str):
        try:
            k, n = (int(v) for v in shard.split("/"))
        except ValueError:
            raise ValueError(f"shard {shard!r}: expected K/N, e.g. 0/8") from None
    else:
        k, n = (int(v) for v in shard)
    if not 0 <= k < n:
        raise ValueError(f"shard {k}/{n}: need 0 <= K < N")
    return [k, n]


def _run_tiles(jobs: dict, tasks: list, workers: int) -> dict:
    """Render and write every (band, tile) of ``tasks``, in ``workers`` processes; returns {task: file name}."""
    global _JOBS
    if workers <= 1 or len(tasks) <= 1:
        return {t: write_tile(jobs[t[0]], t[1]) for t in tasks}
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    _JOBS = jobs  # inherited by the forked workers: the catalog arrays are not pickled per task
    try:
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            names = list(pool.map(_write_task, tasks, chunksize=1))
    finally:
        _JOBS = None
    return dict(zip(tasks, names, strict=True))


_JOBS = None


def _write_task(task):
    return write_tile(_JOBS[task[0]], task[1])


def default_workers() -> int:
    """Processes used for rendering: the CPUs this process may run on, at most 8."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS
        n = os.cpu_count() or 1
    return max(1, min(8, n))


def simulate_survey(sim_cfg: dict, out, workers: int | None = None, shard=None) -> dict:
    """Simulate a multi-band imaging survey with its source catalog and spec-z surveys.

    Parameters
    ----------
    sim_cfg : dict
        The config's ``simulation`` block: ``preset`` (``sdss``, ``cfhtls`` or ``hsc``), ``n_sources`` (galaxies
        plus stars), ``seed``, and optionally ``tile_size_px`` (largest tile side; tiles shrink evenly to cover the
        field), ``star_fraction``, ``mag_range`` (galaxies, reference band), ``filters`` (band -> filter curve)
        and ``epochs`` (single exposures per band, :mod:`pipeline.sim.epochs`; 1 by default).
    out : str or Path
        Output directory; replaced atomically. An existing directory holding a survey with other parameters, or
        anything other than a survey, is an error.
    workers : int, optional
        Processes rendering tiles (default :func:`default_workers`); the files do not depend on it.
    shard : str or (int, int), optional
        ``"K/N"``: render only the tiles ``K, K + N, K + 2N ...`` of the band-major tile list (the catalog and
        spec-z files are written by every shard, identical); :func:`merge_shards` joins the N shard folders.

    Returns
    -------
    dict
        The content of ``survey.json``.

    Raises
    ------
    ValueError
        Unknown preset, band or filter curve, or invalid parameters.
    FileExistsError
        ``out`` holds a different survey.
    """
    t_start = time.monotonic()
    params, preset = parameters(sim_cfg)
    shard = parse_shard(shard)
    out = Path(out)
    check_destination(out, params, shard)
    workers = workers or default_workers()
    bands = sort_bands(preset.bands)
    streams = dict(zip(_STREAMS, np.random.SeedSequence(params["seed"]).spawn(len(_STREAMS)), strict=True))
    rng = {k: np.random.default_rng(s) for k, s in streams.items()}

    noises = {b: band_noise(preset, b) for b in bands}
    # The largest galaxy must fit the largest stamp in every band, whatever its pixel scale and seeing.
    r_cap = min(max_radius_arcsec(noises[b].fwhm_px, preset.scale(b)) for b in bands)
    epochs = epoch_noise = None
    if params.get("epochs", 1) > 1:
        # A stream of its own, after the others: the single-epoch streams draw what they always drew.
        rng["epochs"] = np.random.default_rng(np.random.SeedSequence(params["seed"]).spawn(len(_STREAMS) + 1)[-1])
        epochs = multi.ensure_artefacts(
            {b: multi.draw_epochs(preset, b, params["epochs"], rng["epochs"]) for b in bands}
        )
        epoch_noise = {(b, e.index): band_noise(e.preset(preset, b), b) for b in bands for e in epochs[b]}
        r_cap = min(r_cap, *(max_radius_arcsec(n.fwhm_px, preset.scale(b)) for (b, _), n in epoch_noise.items()))
    colours = colour_grid(tuple(preset.filters.items()))
    df = draw_catalog(preset, params["n_sources"], params["star_fraction"], rng["catalog"], r_cap, colours)
    side = field_side_deg(preset, params["n_sources"])
    xi_src, _ = tan_project(df["ra"].to_numpy(), df["dec"].to_numpy())
    xi_max = {b: -side / 2 + preset.coverage[b] * side for b in bands if preset.coverage.get(b, 1.0) < 1.0}
    for band, cut in xi_max.items():
        # Sources outside a band's footprint have no measurement there.
        df.loc[xi_src > cut, [f"mag_{band}", f"magerr_{band}"]] = np.nan
    log.info("%s preset: %d sources over %.1f arcmin square", preset.name, len(df), side * 60)

    jobs = {}
    shapes = {c: df[c].to_numpy() for c in SHAPE_COLUMNS}
    with atomic_path(out, suffix="") as tmp:
        tmp.mkdir()
        for band in bands:
            scale = preset.scale(band)
            grid = band_grid(band, side, scale, params["tile_size_px"], rng["grids"], preset.sip_max_px)
            bulge, disk = component_fluxes(df, preset, colours, band)
            x, y = grid.world_to_pixel(df["ra"].to_numpy(), df["dec"].to_numpy())
            noise = noises[band]
            keywords = {
                "BAND": (band, "photometric band"),
                "FILTER": (preset.filters[band], "filter curve (speclite or astro-sedpy name)"),
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
            if epochs is None:
                jobs[band] = BandJob(
                    grid=grid, x=x, y=y, jac=grid.jacobian_arcsec(x, y), bulge=bulge, disk=disk, shapes=shapes,
                    is_star=df["is_star"].to_numpy(), noise=noise, beta=preset.moffat_beta, scale=scale,
                    noise_entropy=int(rng["noise"].integers(2**62)), masks=draw_masks(grid.size, rng["noise"]),
                    xi_max=xi_max.get(band), keywords=keywords, out_dir=tmp / "mosaics" / band,
                )  # fmt: skip
                continue
            for ep in epochs[band]:
                erng = rng["epochs"]
                grid = band_grid(
                    band, side, scale, params["tile_size_px"], erng, preset.sip_max_px, multi.DITHER_ARCSEC,
                    multi.ROTATION_DEG,
                )  # fmt: skip
                x, y = grid.world_to_pixel(df["ra"].to_numpy(), df["dec"].to_numpy())
                noise = epoch_noise[band, ep.index]
                adu = ep.adu_per_nmgy
                artefacts = multi.draw_artefacts(ep, grid.size, noise.sigma_pix, noise.fwhm_px, erng)
                jobs[band, ep.index] = BandJob(
                    grid=grid, x=x, y=y, jac=grid.jacobian_arcsec(x, y), bulge=bulge, disk=disk, shapes=shapes,
                    is_star=df["is_star"].to_numpy(), noise=noise, beta=preset.moffat_beta, scale=scale,
                    noise_entropy=int(erng.integers(2**62)), masks=draw_masks(grid.size, erng),
                    xi_max=xi_max.get(band), out_dir=tmp / "mosaics" / band, prefix=f"epoch-{ep.index:02d}-",
                    image_scale=adu, artefacts=artefacts,
                    keywords={
                        **keywords,
                        "BUNIT": ("adu", "AB mag = MAGZERO - 2.5 log10(ADU sum)"),
                        "MAGZERO": (ep.zero_point, "AB zero point of this epoch"),
                        "ZP": (ep.zero_point, "same as MAGZERO"),
                        "EPOCH": (ep.index, "epoch (exposure) index"),
                        "PSF_FWHM": (ep.fwhm_arcsec, "PSF FWHM, arcsec (Moffat)"),
                        "SKYLEVEL": (noise.sky * adu, "subtracted sky, ADU per pixel"),
                        "SKYSIG": (noise.sigma_pix * adu, "sky noise, ADU per pixel"),
                        "GAIN": (noise.gain / adu, "electrons per ADU"),
                        "DEPTH5": (ep.depth_mag, "5-sigma point-source depth, AB mag"),
                        "TRAIL": (artefacts["trail"] is not None, "a satellite trail crosses the epoch"),
                        "NCOSMIC": (len(artefacts["cosmic"]), "cosmic rays on the epoch's canvas"),
                    },
                )  # fmt: skip
        tasks = [(key, k) for key in jobs for k in range(len(jobs[key].grid.tiles))]
        mine = tasks if shard is None else tasks[shard[0] :: shard[1]]
        names = _run_tiles(jobs, mine, workers)
        log.info(
            "%d tiles in %d bands rendered with %d processes (%.1f s)",
            len(mine), len(bands), workers, time.monotonic() - t_start,
        )  # fmt: skip
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

        # The tiles written (a band's tiles outside its coverage are not); a shard lists its own, merge_shards all.
        tiles = {b: [f"mosaics/{b}/{names[t]}" for t in mine if _band_of(t[0]) == b and names[t]] for b in bands}
        summary = {
            "parameters": params,
            "preset": preset.name,
            "bands": bands,
            "filters": {b: preset.filters[b] for b in bands},
            "pixel_scale_arcsec": {b: preset.scale(b) for b in bands},
            "psf_fwhm_arcsec": {b: preset.psf_fwhm_arcsec[b] for b in bands},
            "depth_5sigma_mag": {b: preset.depth_mag[b] for b in bands},
            "sky_noise_nmgy_per_pixel": {b: noises[b].sigma_pix for b in bands},
            "extinction_r_coefficients": extinction_coefficients({b: preset.filters[b] for b in bands}),
            "coverage_fraction": {b: preset.coverage.get(b, 1.0) for b in bands},
            "sip_distortion": preset.sip_max_px > 0,
            "zero_point": ZERO_POINT,
            "flux_unit": "nanomaggy",
            "sky_subtracted": True,
            "field_centre_deg": list(FIELD_CENTRE_DEG),
            "field_side_deg": side,
            "n_sources": params["n_sources"],
            "n_stars": int(df["is_star"].sum()),
            "seed": params["seed"],
            "tiles": tiles,
            "specz": specz,
            "pipeline_version": __version__,
        }
        if epochs is not None:
            summary["flux_unit"] = "adu (each epoch's MAGZERO)"
            summary["epochs"] = {
                b: [multi.describe(e, b, preset, jobs[b, e.index].artefacts) for e in epochs[b]] for b in bands
            }
        if shard is not None:
            summary["shard"] = shard
        write_json(summary, tmp / "survey.json")
    log.info("survey written to %s in %.1f s", out, time.monotonic() - t_start)
    return summary


def _band_of(key) -> str:
    """The band of a rendering job's key: the band, or (band, epoch)."""
    return key if isinstance(key, str) else key[0]


def _tile_order(rel: str) -> tuple[int, ...]:
    """Sort key of a tile file (``tile-03.fits``, ``epoch-01-tile-03.fits``): its numbers."""
    return tuple(int(n) for n in re.findall(r"\d+", Path(rel).name))


def merge_shards(parts, out) -> dict:
    """Join the folders written by ``simulate_survey(..., shard="K/N")`` for K = 0..N-1 into one survey at ``out``.

    Every part must hold the same parameters and a distinct shard of the same N; the result is byte-identical to the
    survey made in one go.
    """
    parts = [Path(p) for p in parts]
    metas = [read_json(p / "survey.json") for p in parts]
    params = metas[0]["parameters"]
    shards = sorted(tuple(m.get("shard") or ()) for m in metas)
    n = shards[0][1] if shards and len(shards[0]) == 2 else None
    if n is None or shards != [(k, n) for k in range(n)]:
        raise ValueError(f"merge_shards: need the shards 0..N-1 of one survey exactly once, got {shards}")
    for p, m in zip(parts, metas, strict=True):
        if m["parameters"] != params:
            raise ValueError(f"merge_shards: {p} holds a survey with other parameters ({m['parameters']})")
    out = Path(out)
    check_destination(out, params)
    summary = {k: v for k, v in metas[0].items() if k != "shard"}
    summary["tiles"] = {b: sorted({t for m in metas for t in m["tiles"][b]}, key=_tile_order) for b in summary["bands"]}
    with atomic_path(out, suffix="") as tmp:
        shutil.copytree(parts[0], tmp, ignore=shutil.ignore_patterns("mosaics", "survey.json"))
        for p, m in zip(parts, metas, strict=True):
            for band in m["bands"]:
                for rel in m["tiles"][band]:
                    (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(p / rel, tmp / rel)
        write_json(summary, tmp / "survey.json")
    return summary
