"""Learning curves: sigma_MAD of a CNN and of the RAIL colour reference against the number of training objects.

Whether a CNN overtakes a colour-only photo-z depends on how many spec-z galaxies it learns from (the paper's SDSS
sample is 100,000s; a benchmark on a CPU sees thousands). This takes a finished science-benchmark run
(``bench/bench_science.py``), trains the CNN again on nested fractions of the test fold's training objects (the
model's ``train_fraction``, :func:`pipeline.core.folds.fraction_subset`: the same objects for every model) and
fits the colour reference on the same subsets, then prints per fraction: training objects, both sigma_MAD on the
same test fold, and the paired bootstrap p-value of "the CNN is better" (paper Appendix D, 10,000 resamples).
Fraction 1 reuses the run's own PDFs.

Usage: python bench/bench_train_size.py --workdir /tmp/sci25 [--fractions 0.25 0.5 1] [--model baseline]
           [--fold 0] [--threads 1] [--out <workdir>/train-size]
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import structlog
import yaml

from pipeline.core import io
from pipeline.core.bands import sort_bands
from pipeline.core.bootstrap import paired_bootstrap
from pipeline.core.config import load_config
from pipeline.core.folds import fraction_subset
from pipeline.core.metrics import delta_z, point_metrics
from pipeline.core.pdf import point_estimates
from pipeline.core.zgrid import ZGrid
from pipeline.steps.reference import extinction_for, read_photometry, reference_fold
from pipeline.store.pdfs import read_pdfs


def z_phot(path) -> tuple[np.ndarray, np.ndarray]:
    """object_id and z_phot (median of the PDF, the paper's estimate) of a PDF store."""
    store = read_pdfs(path)
    return store["object_id"], point_estimates(store["pdf"], store["z_edges"])["z_phot"]


def train_cnn(res: Path, model: str, fraction: float, fold: int, threads: int, out: Path) -> Path:
    """``photoz train`` of ``model`` on ``fraction`` of the training folds; the test fold's PDF store."""
    cfg = yaml.safe_load((res / "config" / f"model-{model}.yaml").read_text())
    cfg["models"][model]["train_fraction"] = fraction
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    pdf = out / "test_pdf.h5"
    if not pdf.exists():
        cmd = [sys.executable, "-m", "pipeline.cli", "train", "--config", str(out / "config.yaml")]
        cmd += ["--datacube", str(res / "datacube" / "train.h5"), "--model", model, "--fold", str(fold)]
        cmd += ["--seed", "0", "--out-dir", str(out), "--threads", str(threads)]
        subprocess.run(cmd, check=True)
    return pdf


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", type=Path, required=True, help="a finished bench_science.py work folder")
    p.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    p.add_argument("--model", default="baseline")
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, help="folder of the retrained runs (default <workdir>/train-size)")
    args = p.parse_args(argv)
    # RAIL logs every data-store insertion through structlog; keep its warnings only
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    res = args.workdir / "results"
    out = args.out or args.workdir / "train-size"
    cfg = load_config(str(res / "config" / "reference.yaml"), sections=("reference", "survey", "zgrid", "evaluation"))
    threshold = cfg["evaluation"]["outlier_threshold"]
    reference, bands = cfg["reference"], sort_bands(cfg["survey"]["bands"])
    catalog = io.read_table(res / "datacube" / "train.parquet")
    if reference["magnitudes"] == "catalog":
        mags = [args.workdir / cfg["survey"]["sources"]]
    else:
        mags = sorted((res / "photometry").glob("shard-*.parquet"))
    photometry = read_photometry(mags, bands)
    extinction = extinction_for(reference, res / "survey" / "survey.json")
    fold_of = catalog["fold"].to_numpy()
    rows = ["| fraction | training objects | test objects | CNN sigma_MAD | reference sigma_MAD | p (CNN better) |"]
    rows.append("|---|---|---|---|---|---|")
    for fraction in args.fractions:
        keep = np.zeros(len(catalog), bool)
        keep[fold_of == args.fold] = True
        keep[fraction_subset(np.flatnonzero(fold_of != args.fold), fraction, args.fold)] = True
        own = res / "models" / args.model / f"fold{args.fold}" / "seed0" / "test_pdf.h5"
        cnn_pdf = own if fraction == 1.0 and own.exists() else None
        cnn_pdf = cnn_pdf or train_cnn(res, args.model, fraction, args.fold, args.threads, out / f"f{fraction:g}")
        ids, z_cnn = z_phot(cnn_pdf)
        ref = reference_fold(
            catalog[keep], photometry, args.fold, reference, bands, cfg["survey"]["mag_column"], extinction,
            ZGrid.from_config(cfg["zgrid"]),
        )  # fmt: skip
        z_ref = point_estimates(ref["pdf"], ZGrid.from_config(cfg["zgrid"]).edges)["z_phot"]
        order = np.argsort(ids)
        z_cnn = z_cnn[order][np.searchsorted(ids[order], ref["object_id"])]
        z_spec = ref["z_spec"]
        m_cnn = point_metrics(delta_z(z_cnn, z_spec), threshold)
        m_ref = point_metrics(delta_z(z_ref, z_spec), threshold)
        test = paired_bootstrap(z_spec, z_ref, z_cnn, 10_000, 0, threshold)
        rows.append(
            f"| {fraction:g} | {int(keep.sum() - (fold_of == args.fold).sum())} | {len(z_spec)} "
            f"| {m_cnn['sigma_mad'] * 1e3:.2f}e-3 | {m_ref['sigma_mad'] * 1e3:.2f}e-3 "
            f"| {test['metrics']['sigma_mad']['p_value']:.4f} |"
        )
        print("\n".join(rows), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
