"""Learning curves: sigma_MAD of a CNN and of the RAIL colour reference against the number of training objects.

Whether a CNN overtakes a colour-only photo-z depends on how many spec-z galaxies it learns from (the paper's SDSS
sample is 100,000s; a benchmark on a CPU sees thousands). This takes a finished science-benchmark run
(``bench/bench_science.py``), trains the CNN again on nested fractions of the test fold's training objects (the
model's ``train_fraction``, :func:`pipeline.core.folds.fraction_subset`: the same objects for every model) and
fits the colour reference on the same subsets, then prints per fraction: training objects, both sigma_MAD on the
same test fold, and the paired bootstrap p-value of "the CNN is better" (paper Appendix D, 10,000 resamples).
With several ``--seeds``, each seed's sigma_MAD and that of their mean PDF (the ensemble the workflow makes): how
much of a difference between two networks is the seed's. Fraction 1 reuses the run's own PDFs where it has them.

Usage: python bench/bench_train_size.py --workdir /tmp/sci25 [--fractions 0.25 0.5 1] [--seeds 0] [--jobs 1]
           [--model baseline] [--fold 0] [--threads 1] [--out <workdir>/train-size]
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import structlog
import yaml

from pipeline.core import io
from pipeline.core.bands import sort_bands
from pipeline.core.bootstrap import paired_bootstrap
from pipeline.core.config import load_config
from pipeline.core.folds import fraction_subset
from pipeline.core.metrics import delta_z, point_metrics
from pipeline.core.pdf import point_estimate_of, point_estimates
from pipeline.core.zgrid import ZGrid
from pipeline.steps.compare import shared_objects
from pipeline.steps.ensemble import average_runs
from pipeline.steps.reference import extinction_for, read_photometry, reference_fold


def z_phot_table(runs: list, catalog: pd.DataFrame, estimate: str) -> pd.DataFrame:
    """``object_id``, ``z_spec``, ``z_phot`` of the mean PDF of ``runs`` (``test_pdf.h5`` files of one fold), the
    workflow's seed ensemble (:func:`pipeline.steps.ensemble.average_runs`)."""
    ens = average_runs(runs)
    z = ens["z_reg"] if estimate == "z_reg" else point_estimates(ens["pdf"], ens["z_edges"])["z_phot"]
    z_spec = catalog.set_index("object_id")["z_spec"].loc[ens["object_id"]].to_numpy()
    return pd.DataFrame({"object_id": ens["object_id"], "z_spec": z_spec, "z_phot": z})


def train_command(res: Path, model: str, fraction: float, fold: int, seed: int, threads: int, out: Path) -> list:
    """``photoz train`` of ``model`` on ``fraction`` of the training folds, into ``out``."""
    cfg = yaml.safe_load((res / "config" / f"model-{model}.yaml").read_text())
    cfg["models"][model]["train_fraction"] = fraction
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    cmd = [sys.executable, "-m", "pipeline.cli", "train", "--config", str(out / "config.yaml")]
    cmd += ["--datacube", str(res / "datacube" / "train.h5"), "--model", model, "--fold", str(fold)]
    return cmd + ["--seed", str(seed), "--out-dir", str(out), "--threads", str(threads)]


def train_all(runs: list[tuple[list, Path]], jobs: int) -> None:
    """Run the training commands, ``jobs`` at a time; raise if one wrote no PDF store."""
    running: list[subprocess.Popen] = []
    for cmd, _ in runs:
        while len(running) >= jobs:
            time.sleep(5)
            running = [p for p in running if p.poll() is None]
        running.append(subprocess.Popen(cmd))
    for proc in running:
        proc.wait()
    if failed := [cmd for cmd, pdf in runs if not pdf.exists()]:
        raise RuntimeError(f"{len(failed)} training runs failed, e.g. {' '.join(failed[0])}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", type=Path, required=True, help="a finished bench_science.py work folder")
    p.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds per fraction (their mean PDF too)")
    p.add_argument("--model", default="baseline")
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads per training run")
    p.add_argument("--jobs", type=int, default=1, help="training runs at once")
    p.add_argument("--out", type=Path, help="folder of the retrained runs (default <workdir>/train-size)")
    args = p.parse_args(argv)
    # RAIL logs every data-store insertion through structlog; keep its warnings only
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    res = args.workdir / "results"
    out = args.out or args.workdir / "train-size"
    runs, missing = {}, []
    for fraction in args.fractions:
        for seed in args.seeds:
            own = res / "models" / args.model / f"fold{args.fold}" / f"seed{seed}"
            run = own if fraction == 1.0 and (own / "test_pdf.h5").exists() else out / f"f{fraction:g}" / f"seed{seed}"
            runs[fraction, seed] = run / "test_pdf.h5"
            if not runs[fraction, seed].exists():
                cmd = train_command(res, args.model, fraction, args.fold, seed, args.threads, run)
                missing.append((cmd, runs[fraction, seed]))
    train_all(missing, args.jobs)
    model_cfg = yaml.safe_load((res / "config" / f"model-{args.model}.yaml").read_text())
    estimate = point_estimate_of(model_cfg["models"][args.model].get("loss") or {})
    cfg = load_config(str(res / "config" / "reference.yaml"), sections=("reference", "survey", "zgrid", "evaluation"))
    threshold = cfg["evaluation"]["outlier_threshold"]
    reference, bands, zgrid = cfg["reference"], sort_bands(cfg["survey"]["bands"]), ZGrid.from_config(cfg["zgrid"])
    catalog = io.read_table(res / "datacube" / "train.parquet")
    if reference["magnitudes"] == "catalog":
        mags = [args.workdir / cfg["survey"]["sources"]]
    else:
        mags = sorted((res / "photometry").glob("shard-*.parquet"))
    photometry = read_photometry(mags, bands)
    extinction = extinction_for(reference, res / "survey" / "survey.json")
    fold_of = catalog["fold"].to_numpy()
    print("| fraction | training objects | test objects | CNN sigma_MAD per seed | CNN mean PDF of the seeds "
          "| reference sigma_MAD | p (CNN mean PDF better) |\n|---|---|---|---|---|---|---|", flush=True)  # fmt: skip
    for fraction in args.fractions:
        keep = np.zeros(len(catalog), bool)
        keep[fold_of == args.fold] = True
        keep[fraction_subset(np.flatnonzero(fold_of != args.fold), fraction, args.fold)] = True
        ref = reference_fold(
            catalog[keep], photometry, args.fold, reference, bands, cfg["survey"]["mag_column"], extinction, zgrid
        )
        z_ref = point_estimates(ref["pdf"], zgrid.edges)["z_phot"]
        ref_table = pd.DataFrame({"object_id": ref["object_id"], "z_spec": ref["z_spec"], "z_phot": z_ref})
        members = [runs[fraction, seed] for seed in args.seeds]
        tables = [z_phot_table([m], catalog, estimate) for m in members] + [z_phot_table(members, catalog, estimate)]
        joined = [shared_objects(ref_table, t) for t in tables]
        sig = [point_metrics(delta_z(j.z_phot_b, j.z_spec), threshold)["sigma_mad"] * 1e3 for j in joined]
        sig.append(point_metrics(delta_z(z_ref, ref["z_spec"]), threshold)["sigma_mad"] * 1e3)
        j = joined[-1]
        test = paired_bootstrap(j.z_spec.to_numpy(), j.z_phot_a.to_numpy(), j.z_phot_b.to_numpy(), 10_000, 0, threshold)
        print(
            f"| {fraction:g} | {int(keep.sum() - (fold_of == args.fold).sum())} | {len(j)} "
            f"| {', '.join(f'{x:.2f}' for x in sig[:-2])}e-3 | {sig[-2]:.2f}e-3 | {sig[-1]:.2f}e-3 "
            f"| {test['metrics']['sigma_mad']['p_value']:.4f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
