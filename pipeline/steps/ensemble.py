"""Ensemble PDFs (``photoz ensemble``): average the seeds of each test fold, then assemble the folds.

Each object appears in exactly one test fold, so the assembled predictions hold one row per object of the
datacube: the predictions contract of DESIGN.md, with the PDFs beside it in qp's ``hist`` layout.
"""

from __future__ import annotations

import argparse
import logging
from collections import defaultdict

import numpy as np
import pandas as pd

from pipeline.core import io
from pipeline.core.pdf import delta_pdf
from pipeline.store import pdfs
from pipeline.store.predictions import predictions_table, write_predictions

log = logging.getLogger("pipeline.ensemble")

ESTIMATES = ("median", "z_reg")


def average_runs(runs: list) -> dict:
    """Average the PDFs of the runs (``test_pdf.h5`` files) per fold and concatenate the folds.

    Returns ``object_id``, ``pdf``, ``z_reg``, ``fold``, ``n_members`` (N,) sorted by object id, and ``z_edges``.
    """
    by_fold = defaultdict(list)
    z_edges = None
    for path in runs:
        run = pdfs.read_pdfs(path)
        if z_edges is None:
            z_edges = run["z_edges"]
        elif not np.array_equal(z_edges, run["z_edges"]):
            raise ValueError(f"{path}: redshift grid differs from {runs[0]}")
        folds = np.unique(run["fold"])
        if len(folds) != 1:
            raise ValueError(f"{path}: holds several folds {folds.tolist()}; expected one test fold per run")
        by_fold[int(folds[0])].append((path, run))
    if not by_fold:
        raise ValueError("no runs given")
    parts = []
    for fold, members in sorted(by_fold.items()):
        ref_path, ref = members[0]
        for path, run in members[1:]:
            if not np.array_equal(run["object_id"], ref["object_id"]):
                raise ValueError(f"{path}: test objects differ from {ref_path} although both are fold {fold}")
        probs = np.mean([run["pdf"] for _, run in members], axis=0)
        z_reg = np.mean([run["z_reg"] for _, run in members], axis=0)
        n = len(ref["object_id"])
        parts.append((ref["object_id"], probs, z_reg, np.full(n, fold), np.full(n, len(members))))
        log.info("fold %d: %d objects, %d seed(s)", fold, n, len(members))
    object_id, probs, z_reg, fold, n_members = (np.concatenate(x) for x in zip(*parts, strict=True))
    if len(np.unique(object_id)) != len(object_id):
        raise ValueError("an object appears in more than one test fold")
    order = np.argsort(object_id, kind="stable")
    out = {"object_id": object_id, "pdf": probs, "z_reg": z_reg, "fold": fold, "n_members": n_members}
    out = {k: v[order] for k, v in out.items()}
    out["z_edges"] = z_edges
    return out


def ensemble(runs: list, catalog: pd.DataFrame, out, estimate: str = "median") -> pd.DataFrame:
    """Average, assemble, attach the catalog columns and write ``out`` (Parquet) with its PDF store.

    ``estimate`` is what ``z_phot`` is (:func:`pipeline.core.pdf.point_estimate_of`): ``"median"`` of the PDF, or
    ``"z_reg"`` for a regression-only model, whose PDF store then holds all the probability in the bin of z_reg.
    """
    if estimate not in ESTIMATES:
        raise ValueError(f"unknown estimate {estimate!r}: valid are {', '.join(ESTIMATES)}")
    ens = average_runs(runs)
    if estimate == "z_reg":
        ens["pdf"] = delta_pdf(ens["z_reg"], ens["z_edges"])
    table = predictions_table(
        ens["object_id"], ens["pdf"], ens["z_edges"], z_reg=ens["z_reg"], fold=ens["fold"], n_members=ens["n_members"]
    )
    if estimate == "z_reg":
        table["z_phot"] = ens["z_reg"].astype(np.float64)
    table["estimate"] = estimate
    extra = catalog.drop(columns=[c for c in ("fold",) if c in catalog.columns])
    table = table.merge(extra, on="object_id", how="left", validate="one_to_one")
    if "z_spec" in table and table.z_spec.isna().any():
        raise ValueError(f"{int(table.z_spec.isna().sum())} predicted objects are missing from the catalog")
    write_predictions(table, ens["pdf"], ens["z_edges"], out)
    log.info("wrote %d predictions to %s", len(table), out)
    return table


def main(argv=None) -> None:
    from pipeline.core import log as plog

    parser = argparse.ArgumentParser(prog="photoz ensemble", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", required=True, help="test_pdf.h5 of every (fold, seed) run of a model")
    parser.add_argument("--catalog", required=True, help="catalog rows of the datacube (its Parquet view)")
    parser.add_argument("--out", required=True, help="predictions (Parquet); the PDFs go to <stem>.pdf.hdf5")
    parser.add_argument(
        "--estimate", choices=ESTIMATES, default="median", help="z_phot: the PDF median, or z_reg (regression-only)"
    )
    args = parser.parse_args(argv)
    plog.setup()
    ensemble(args.runs, io.read_table(args.catalog), args.out, args.estimate)


if __name__ == "__main__":
    main()
