"""Paired bootstrap test between two predictions files (``photoz compare``, paper Appendix D)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core import io
from pipeline.core import log as plog
from pipeline.core.bootstrap import paired_bootstrap
from pipeline.core.config import schema_default
from pipeline.core.metrics import add_sample_arguments, evaluation_sample

logger = logging.getLogger("pipeline.compare")


def shared_objects(pred_a: pd.DataFrame, pred_b: pd.DataFrame) -> pd.DataFrame:
    """Inner join of two predictions on ``object_id``: columns ``z_spec``, ``z_phot_a``, ``z_phot_b``.

    Raises if the two disagree on ``z_spec`` or share no object.
    """
    cols = ["object_id", "z_spec", "z_phot"]
    for name, df in (("baseline", pred_a), ("candidate", pred_b)):
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise KeyError(f"{name} predictions lack {missing}")
    j = pred_a[cols].merge(pred_b[cols], on="object_id", suffixes=("_a", "_b"), validate="one_to_one")
    j = j[np.isfinite(j["z_spec_a"]) & np.isfinite(j["z_phot_a"]) & np.isfinite(j["z_phot_b"])]
    if len(j) == 0:
        raise ValueError("baseline and candidate share no object with a finite z_spec and z_phot")
    if not np.allclose(j["z_spec_a"], j["z_spec_b"], rtol=0, atol=1e-6):
        raise ValueError("baseline and candidate disagree on z_spec for shared objects")
    return j.rename(columns={"z_spec_a": "z_spec"})


def _estimate(pred: pd.DataFrame) -> str:
    return str(pred["estimate"].iloc[0]) if "estimate" in pred.columns and len(pred) else "median"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="photoz compare", description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="baseline (A) predictions Parquet")
    parser.add_argument("--candidate", required=True, help="candidate (B) predictions Parquet")
    parser.add_argument("--n-boot", type=int, default=schema_default("evaluation.n_boot"), help="resamples K")
    parser.add_argument("--seed", type=int, default=schema_default("evaluation.seed"), help="seed of the resampling")
    add_sample_arguments(parser, "compare")
    parser.add_argument("--method", choices=("fast", "direct"), default="fast")
    parser.add_argument("--threads", type=int, default=None, help="worker threads (default: the usable cores)")
    parser.add_argument("--out", required=True, help="comparison JSON")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    plog.setup(args.verbose)
    paths = {"baseline": Path(args.baseline), "candidate": Path(args.candidate)}
    for role, p in paths.items():
        if not p.exists():
            raise FileNotFoundError(f"{role} predictions not found: {p}")
    pred_a, pred_b = (pd.read_parquet(p) for p in paths.values())
    pred_a = pred_a[evaluation_sample(pred_a, args.mag_column, args.mag_max)]
    j = shared_objects(pred_a, pred_b)
    logger.info("%d shared objects, K=%d", len(j), args.n_boot)
    result = paired_bootstrap(
        j["z_spec"].to_numpy(), j["z_phot_a"].to_numpy(), j["z_phot_b"].to_numpy(),
        args.n_boot, args.seed, args.outlier_threshold, method=args.method, threads=args.threads,
    )  # fmt: skip
    result["baseline"] = paths["baseline"].name.removesuffix(".parquet")
    result["candidate"] = paths["candidate"].name.removesuffix(".parquet")
    result["mag_max"] = args.mag_max
    result["estimates"] = {role: _estimate(df) for role, df in (("baseline", pred_a), ("candidate", pred_b))}
    io.write_json(result, args.out)
    for name, r in result["metrics"].items():
        logger.info("%s: delta=%.3g G=%s p=%.4f", name, r["delta"], r["gain"], r["p_value"])


if __name__ == "__main__":
    main()
