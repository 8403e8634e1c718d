"""The colour reference on every fold of a training catalog: sigma_MAD, outliers and run time per RAIL estimator.

The catalog is ``photoz match``'s training catalog or the datacube catalog (object_id, z_spec, fold, ebv); the
magnitudes are its own ``mag_<band>`` columns (the survey's catalogue magnitudes) unless ``--photometry`` names
other tables. Metrics are those of ``photoz evaluate`` on z_phot, the median of the PDF on the project's z grid.

Usage: python bench/bench_reference.py --catalog results/datacube/train.parquet --survey-meta results/survey/survey.json
           [--estimator knn flexzboost] [--option knn:nneigh_max=15] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd
import yaml

from pipeline.core import io
from pipeline.core.config import schema_default
from pipeline.core.metrics import delta_z, point_metrics
from pipeline.core.pdf import point_estimates
from pipeline.core.zgrid import ZGrid
from pipeline.steps.reference import extinction_for, reference_fold


def _cpu() -> float:
    """CPU seconds of this process and of its finished children (joblib's workers)."""
    return sum(os.times()[:4])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--catalog", required=True)
    p.add_argument("--photometry", nargs="*", help="tables with mag_<band>, magerr_<band> (default: the catalog)")
    p.add_argument("--survey-meta", required=True, help="survey.json (bands' extinction coefficients)")
    p.add_argument("--bands", default="u,g,r,i,z")
    p.add_argument("--estimator", nargs="+", default=["knn", "flexzboost"])
    p.add_argument("--option", action="append", default=[], help="estimator:key=yaml-value, repeatable")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--outlier-threshold", type=float, default=0.05)
    args = p.parse_args(argv)
    catalog = io.read_table(args.catalog)
    phot = pd.concat([io.read_table(f) for f in args.photometry]) if args.photometry else catalog
    bands = args.bands.split(",")
    zgrid = ZGrid.from_config(schema_default("zgrid"))
    extinction = extinction_for({}, args.survey_meta)
    print(f"{len(catalog)} galaxies, folds {sorted(set(catalog.fold))}, bands {bands}, threads {args.threads}")
    for estimator in args.estimator:
        options = {}
        for item in args.option:
            name, _, kv = item.partition(":")
            if name == estimator:
                key, _, value = kv.partition("=")
                options[key] = yaml.safe_load(value)
        reference = {"estimator": estimator, "options": options}
        start, cpu0, parts = time.perf_counter(), _cpu(), []
        for fold in sorted(set(catalog.fold)):
            parts.append(reference_fold(catalog, phot, fold, reference, bands, "mag_r", extinction, zgrid))
        seconds, cpu = time.perf_counter() - start, _cpu() - cpu0
        pdf = np.concatenate([r["pdf"] for r in parts])
        z_spec = np.concatenate([r["z_spec"] for r in parts])
        z_phot = point_estimates(pdf, zgrid.edges)["z_phot"]
        m = point_metrics(delta_z(z_phot, z_spec), args.outlier_threshold)
        z_reg = np.concatenate([r["z_reg"] for r in parts])
        m_reg = point_metrics(delta_z(z_reg, z_spec), args.outlier_threshold)
        print(
            f"{estimator:10s} {options}: sigma_MAD {m['sigma_mad'] * 1e3:5.1f}e-3, "
            f"outliers {m['outlier_fraction']:6.2%}, bias {m['bias'] * 1e3:+5.1f}e-3 (z_phot = PDF median; "
            f"RAIL zmode: sigma_MAD {m_reg['sigma_mad'] * 1e3:5.1f}e-3, outliers {m_reg['outlier_fraction']:6.2%}); "
            f"{seconds:6.1f} s wall, {cpu:6.1f} s CPU for {len(parts)} folds"
        )


if __name__ == "__main__":
    main()
