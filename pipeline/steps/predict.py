"""Catalog-wide photo-z (``photoz predict``): every (fold, seed) model predicts, and their PDFs are averaged.

The cutouts are read in blocks, so memory stays bounded whatever the size of the catalog; the workflow scatters
the catalog over chunks, and ``photoz merge`` joins the chunk tables. A model trained on some of the survey's bands
reads those channels of the cutouts, picked by name (``meta["bands"]`` of its checkpoints). With ``rows``, one job
takes one of N equal row ranges of the file (the imported datacube of ``photoz import-cube`` is one file for the
whole survey). The point estimates always come from the averaged histogram; the PDFs are stored in the
representation asked for (``production.pdf``, :mod:`pipeline.store.pdfs`).
"""

from __future__ import annotations

import argparse
import logging

import numpy as np
import pandas as pd

from pipeline.core import io, runtime
from pipeline.core import log as plog
from pipeline.core.bands import channel_index
from pipeline.core.config import schema_default
from pipeline.core.extinction import ebv_at
from pipeline.core.inference import model_from_checkpoint, predict_batches
from pipeline.core.pdf import delta_pdf, point_estimate_of
from pipeline.core.zgrid import ZGrid
from pipeline.store import cubes, loader, pdfs
from pipeline.store.predictions import predictions_table, write_predictions

log = logging.getLogger("pipeline.predict")

BLOCK = 4096


def load_models(paths: list) -> list[tuple]:
    """Load every checkpoint; all must share bands, image size and redshift grid."""
    models = []
    for path in paths:
        expect = {k: models[0][1][k] for k in ("bands", "image_size", "zgrid")} if models else None
        models.append(model_from_checkpoint(path, expect))
    if not models:
        raise ValueError("no model checkpoints given")
    return models


def row_slice(rows: str | None, n: int) -> slice:
    """``"k/N"`` -> the k-th (from 0) of N nearly equal ranges of ``n`` rows; None -> all rows."""
    if rows is None:
        return slice(0, n)
    try:
        k, parts = map(int, rows.split("/"))
    except ValueError:
        raise ValueError(f"rows {rows!r}: expected k/N, e.g. 0/4") from None
    if not 0 <= k < parts:
        raise ValueError(f"rows {rows!r}: k must be in 0..{parts - 1}")
    return slice(k * n // parts, (k + 1) * n // parts)


def predict_catalog(
    cutouts,
    model_paths: list,
    sources: pd.DataFrame | None,
    out,
    device: str = "auto",
    rows: str | None = None,
    pdf_storage: dict | None = None,
) -> int:
    """Average the PDFs of all models for every object of a cutout file (or of its ``rows`` range, ``"k/N"``);
    write predictions to ``out`` and the PDFs beside it in the ``pdf_storage`` representation (default hist)."""
    models = load_models(model_paths)
    meta = models[0][1]
    zgrid = ZGrid(**meta["zgrid"])
    dev = runtime.pick_device(device)
    attrs = cubes.read_attrs(cutouts)
    chan = channel_index(meta["bands"], attrs["bands"], f"cutout file {cutouts}")
    if int(attrs["size"]) != meta["image_size"]:
        raise ValueError(f"{cutouts}: cutout size {int(attrs['size'])} does not match the models' {meta['image_size']}")
    storage = pdfs.storage_spec(pdf_storage)
    object_id, coverage = cubes.read_columns(cutouts, "object_id", "coverage")
    span = row_slice(rows, len(object_id))
    object_id, coverage = object_id[span], coverage[span]
    reader = loader.file_source(cutouts, channels=chan)
    ebv = _ebv_for(object_id, sources)
    probs = np.zeros((len(object_id), zgrid.n_bins), np.float32)
    z_reg = np.zeros(len(object_id), np.float32)
    for start in plog.progress(range(0, len(object_id), BLOCK), total=-(-len(object_id) // BLOCK), desc="predict"):
        block = reader.take(span.start + np.arange(start, min(start + BLOCK, len(object_id))))
        for model, m in models:
            p, r = predict_batches(
                model, block, ebv[start : start + BLOCK], m["norm_mean"], m["norm_std"], dev, zgrid.n_bins
            )
            probs[start : start + len(p)] += p / len(models)
            z_reg[start : start + len(p)] += r / len(models)
    estimate = point_estimate_of(meta.get("loss", {}))
    if estimate == "z_reg":  # a regression-only model: its softmax head is untrained
        probs = delta_pdf(z_reg, zgrid.edges)
    table = predictions_table(object_id, probs, zgrid.edges, z_reg=z_reg, min_coverage=coverage.min(axis=1))
    if estimate == "z_reg":
        table["z_phot"] = z_reg.astype(np.float64)
    table["estimate"] = estimate
    if sources is not None:
        keep = [c for c in sources.columns if c not in table.columns or c == "object_id"]
        table = table.merge(sources[keep], on="object_id", how="left", validate="one_to_one")
    table["n_members"] = len(models)
    write_predictions(table, probs, zgrid.edges, out, storage=storage)
    log.info("wrote photo-z of %d objects from %d models to %s (PDFs as %s)", len(table), len(models), out,
             pdfs.describe(storage))  # fmt: skip
    return len(table)


def _ebv_for(object_id, sources) -> np.ndarray:
    if sources is None or "ebv" not in sources.columns:
        if sources is None:
            raise ValueError("--sources is needed for E(B-V) (a column 'ebv', or ra/dec to read the SFD map)")
        rows = sources.set_index("object_id").loc[object_id]
        return ebv_at(rows.ra, rows.dec).astype(np.float32)
    return sources.set_index("object_id").loc[object_id, "ebv"].to_numpy(np.float32)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="photoz predict", description=__doc__.splitlines()[0])
    parser.add_argument("--cutouts", required=True, help="cutout file of the sources to predict (HDF5)")
    parser.add_argument("--models", nargs="+", required=True, help="model.pt of every (fold, seed) run of one model")
    parser.add_argument("--sources", help="source catalog (E(B-V) and columns carried into the output)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--rows", help="k/N: only the k-th (from 0) of N equal row ranges of the cutout file")
    storage = schema_default("production.pdf")
    parser.add_argument("--pdf-representation", default=storage["representation"],
                        help=f"qp representation of the stored PDFs: {', '.join(pdfs.REPRESENTATIONS)}")  # fmt: skip
    parser.add_argument("--pdf-n-quantiles", type=int, default=storage["n_quantiles"], help="quantiles (quant)")
    parser.add_argument("--pdf-n-points", type=int, default=storage["n_points"],
                        help="points of interp / packed_interp (default: the z grid's bin centres)")  # fmt: skip
    parser.add_argument("--out", required=True, help="predictions (Parquet); PDFs go to <stem>.pdf.hdf5")
    args = parser.parse_args(argv)
    plog.setup()
    storage = {"representation": args.pdf_representation, "n_quantiles": args.pdf_n_quantiles,
               "n_points": args.pdf_n_points}  # fmt: skip
    pdfs.storage_spec(storage)  # an unknown representation stops before any model is loaded
    sources = io.read_table(args.sources) if args.sources else None
    predict_catalog(args.cutouts, args.models, sources, args.out, args.device, args.rows, storage)


if __name__ == "__main__":
    main()
