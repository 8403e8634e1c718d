"""Simulate a survey (``photoz simulate``): mosaics, a source list and spec-z catalogs, or injection into real mosaics.

``photoz simulate --config config/config.yaml --out DIR`` writes the survey described in
:mod:`pipeline.sim.survey`; ``--shard K/N`` and ``--merge PART ...`` split the rendering over jobs, and
``--inject-into BAND=GLOB`` renders the mock catalog into the user's own mosaics (:mod:`pipeline.sim.inject`).
"""

from __future__ import annotations

import argparse

from pipeline.core.config import load_config
from pipeline.core.log import setup
from pipeline.sim.inject import inject_survey
from pipeline.sim.survey import merge_shards, simulate_survey


def _load_sim_cfg(path) -> dict:
    """The validated ``simulation`` block of a YAML config file (a whole pipeline config, or that block alone)."""
    cfg = load_config(path, sections=("simulation",))
    if "simulation" not in cfg:
        raise ValueError(f"{path}: no top-level 'simulation' block")
    return dict(cfg["simulation"])


def _band_globs(items) -> dict:
    out = {}
    for item in items or ():
        band, sep, pattern = item.partition("=")
        if not sep or not band or not pattern:
            raise ValueError(f"--inject-into {item!r}: expected BAND=GLOB, e.g. r='frames/frame-r-*.fits*'")
        out[band] = pattern
    return out


def main(argv=None) -> None:
    """Command line: ``photoz simulate --config FILE --out DIR [--preset P] [--n-sources N] [--seed S]``, plus
    ``--shard K/N`` and ``--merge PART ...`` for sharded runs and ``--inject-into BAND=GLOB ...`` for injection."""
    parser = argparse.ArgumentParser(prog="photoz simulate", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="YAML config with a top-level 'simulation' block")
    parser.add_argument("--out", required=True, help="output survey directory")
    parser.add_argument("--preset", help="override simulation.preset (sdss, cfhtls, hsc)")
    parser.add_argument("--n-sources", type=int, help="override simulation.n_sources")
    parser.add_argument("--seed", type=int, help="override simulation.seed")
    parser.add_argument("--workers", type=int, help="rendering processes (default: the usable CPUs, at most 8)")
    parser.add_argument("--shard", help="render only tiles K, K+N, ... of the band-major tile list (K/N)")
    parser.add_argument("--merge", nargs="+", metavar="PART", help="join shard folders into --out, then stop")
    parser.add_argument(
        "--inject-into",
        action="append",
        metavar="BAND=GLOB",
        help="render the mock galaxies into the user's FITS mosaics of BAND (repeat per band) instead of simulating",
    )
    parser.add_argument("--psf-fwhm", type=float, help="injection: PSF FWHM in arcsec when headers lack one")
    parser.add_argument("--zero-point", type=float, help="injection: AB zero point when headers lack one")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    setup(args.verbose)
    if args.merge:
        merge_shards(args.merge, args.out)
        return
    sim_cfg = _load_sim_cfg(args.config) if args.config else {}
    for key, value in (("preset", args.preset), ("n_sources", args.n_sources), ("seed", args.seed)):
        if value is not None:
            sim_cfg[key] = value
    missing = [k for k in ("n_sources", "seed") if k not in sim_cfg]
    if missing:
        parser.error(f"missing simulation parameters {missing}: give --config or the options")
    if args.inject_into:
        inject_survey(
            sim_cfg, _band_globs(args.inject_into), args.out, psf_fwhm_arcsec=args.psf_fwhm, zero_point=args.zero_point
        )
        return
    simulate_survey(sim_cfg, args.out, workers=args.workers, shard=args.shard)


if __name__ == "__main__":
    main()
