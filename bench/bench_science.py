"""The science benchmark: does the baseline CNN beat a colour-only photo-z, and the multimodal network the baseline?

Runs ``snakemake all`` on ``config/config.yaml`` + ``bench/science.yaml`` (+ the overrides given here) in a work
folder of its own, then prints one row per estimator (sigma_MAD, outlier fraction, bias, objects, wall minutes of its
training jobs), the bias of each in equal-count z_spec bins (does z_phot follow z_spec, or shrink to the sample's
mean?) and one row per paired bootstrap (delta sigma_MAD and eta, p-values), as Markdown for bench/README.md.
The report of the run is ``<workdir>/results/report/index.html``.

Usage: python bench/bench_science.py [--workdir bench-science] [--cores 2]
           [--n-sources 16000] [--epochs 25] [--width 0.15] [--test-folds 0]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]


def overrides(args) -> dict:
    """The config layer of the command line's overrides (nothing for an option left at its default)."""
    out: dict = {}
    if args.n_sources is not None:
        out["simulation"] = {"n_sources": args.n_sources}
    if args.epochs is not None:
        out["training"] = {"epochs": args.epochs}
    if args.width is not None:
        out["model_defaults"] = {"options": {"width": args.width}}
    if args.test_folds is not None:
        out["folds"] = {"test": args.test_folds}
    return out


def job_minutes(workdir: Path, rule: str, name: str) -> float:
    """Wall minutes (1 thread each) of a rule's jobs for one model, from Snakemake's benchmark files."""
    files = sorted((workdir / "benchmarks" / rule / name).rglob("*.tsv"))
    return sum(float(pd.read_csv(f, sep="\t")["s"].iloc[-1]) for f in files) / 60.0


def bias_by_redshift(metrics: dict[str, dict]) -> list[str]:
    """Bias per equal-count z_spec bin (rows: estimators): whether z_phot follows z_spec or regresses to the mean."""
    binned = {name: m["binned"]["z_spec"] for name, m in metrics.items()}
    if not binned:
        return []
    centres = next(iter(binned.values()))
    rows = ["| bias (1e-3) at median z_spec | " + " | ".join(f"{b['centre']:.3f}" for b in centres) + " |"]
    rows.append("|---" * (len(centres) + 1) + "|")
    for name, bins in binned.items():
        rows.append(f"| {name} | " + " | ".join(f"{b['bias'] * 1e3:+.1f}" for b in bins) + " |")
    return rows


def table(workdir: Path) -> str:
    res = workdir / "results" / "metrics"
    rows = ["| estimator | n | sigma_MAD | outliers | bias | training job min |", "|---|---|---|---|---|---|"]
    metrics = {path.stem: json.loads(path.read_text()) for path in sorted(res.glob("*.json"))}
    for name, m in metrics.items():
        rule = "reference" if (workdir / "benchmarks" / "reference" / name).exists() else "train"
        rows.append(
            f"| {name} | {m['n']} | {m['sigma_mad'] * 1e3:.2f}e-3 | {m['outlier_fraction'] * 100:.2f} % "
            f"| {m['bias'] * 1e3:+.2f}e-3 | {job_minutes(workdir, rule, name):.1f} |"
        )
    rows += ["", *bias_by_redshift(metrics)]
    rows += ["", "| A -> B | n | sigma_MAD A, B | p (sigma_MAD) | outliers A, B | p (outliers) |"]
    rows += ["|---|---|---|---|---|---|"]
    for path in sorted((res / "compare").glob("*.json")):
        c = json.loads(path.read_text())
        s, o = c["metrics"]["sigma_mad"], c["metrics"]["outlier_fraction"]
        a, _, b = path.stem.partition("--")
        rows.append(
            f"| {a} -> {b} | {c['n_shared']} | {s['value_a'] * 1e3:.2f}e-3, {s['value_b'] * 1e3:.2f}e-3 "
            f"| {s['p_value']:.4f} | {o['value_a'] * 100:.2f} %, {o['value_b'] * 100:.2f} % | {o['p_value']:.4f} |"
        )
    return "\n".join(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", type=Path, default=ROOT / "bench-science")
    p.add_argument("--cores", default="all")
    p.add_argument("--n-sources", type=int, default=None, help="simulated sources (bench/science.yaml: 16,000)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--width", type=float, default=None, help="fraction of the paper's widths")
    p.add_argument("--test-folds", type=int, nargs="+", default=None)
    p.add_argument("--table-only", action="store_true", help="print the table of a finished run")
    args = p.parse_args(argv)
    workdir = args.workdir.resolve()
    if not args.table_only:
        workdir.mkdir(parents=True, exist_ok=True)
        layer = workdir / "overrides.yaml"
        layer.write_text(yaml.safe_dump(overrides(args), sort_keys=False))
        configs = [str(ROOT / "config" / "config.yaml"), str(ROOT / "bench" / "science.yaml"), str(layer)]
        cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(workdir)]
        cmd += ["--cores", str(args.cores)]
        cmd += ["all", "--rerun-incomplete", "--configfile", *configs]
        start = time.monotonic()
        rc = subprocess.run(cmd).returncode
        if rc != 0:
            print(f"snakemake failed ({rc}); logs in {workdir / 'logs'}", file=sys.stderr)
            return rc
        print(f"\nworkflow: {(time.monotonic() - start) / 60:.1f} min wall, --cores {args.cores}")
    print(table(workdir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
