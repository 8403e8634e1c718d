"""Predictions: the one owner of the predictions Parquet and of the PDF store that sits beside it.

A predictions file ``<name>.parquet`` holds one row per object (``object_id``, the point estimates of its PDF,
``z_reg``, ``z_spec`` when known, ``fold`` and catalog columns); its PDFs are in ``<name>.pdf.hdf5``
(:mod:`pipeline.store.pdfs`, qp's ``hist`` layout).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core import io
from pipeline.core.pdf import point_estimates
from pipeline.store import pdfs

log = logging.getLogger(__name__)


def pdf_path_for(predictions) -> Path:
    """The PDF store that sits beside a predictions Parquet: ``<stem>.pdf.hdf5`` (the suffix qp.read expects)."""
    predictions = Path(predictions)
    return predictions.with_name(predictions.name.removesuffix(".parquet") + ".pdf.hdf5")


def predictions_table(object_id, probs, z_edges, **columns) -> pd.DataFrame:
    """One row per object: ``object_id``, the point estimates of the PDFs, then ``columns``."""
    est = point_estimates(probs, z_edges)
    return pd.DataFrame({"object_id": np.asarray(object_id, dtype=np.int64), **est, **columns})


def write_predictions(table: pd.DataFrame, probs, z_edges, out, storage=None) -> None:
    """Write the PDFs (in the qp representation ``storage``, default hist: :func:`pipeline.store.pdfs.write_pdfs`),
    then the table: the table's presence marks a complete pair."""
    pdfs.write_pdfs(pdf_path_for(out), table.object_id.to_numpy(), probs, z_edges, storage=storage)
    io.write_parquet(table, out)


def load_predictions(path, pdf_path=None, need_pdf: bool = False):
    """Read a predictions Parquet and, when found, its PDFs aligned to its rows by ``object_id``.

    ``pdf_path`` defaults to the store beside the Parquet file (:func:`pdf_path_for`); a missing default is not an
    error unless ``need_pdf``.

    Returns
    -------
    (DataFrame, ndarray or None, ndarray or None)
        Predictions, PDFs (N, n_bins) and z_edges.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"predictions not found: {path}")
    pred = pd.read_parquet(path)
    if pdf_path is None:
        pdf_path = pdf_path_for(path)
        if not pdf_path.exists():
            if need_pdf:
                raise FileNotFoundError(f"PDF file not found: {pdf_path}")
            log.info("no PDF file %s: PDF metrics skipped", pdf_path)
            return pred, None, None
    pdf_path = Path(pdf_path)
    if not pdf_path.exists():
        raise FileNotFoundError(f"PDF file not found: {pdf_path}")
    store = pdfs.read_pdfs(pdf_path)
    ids, pdf, z_edges = store["object_id"], store["pdf"], store["z_edges"]
    pos = pd.Index(ids).get_indexer(pred["object_id"].to_numpy())
    if (pos < 0).any():
        raise ValueError(f"{pdf_path}: {(pos < 0).sum()} objects of {path} have no PDF")
    return pred, pdf[pos], z_edges
