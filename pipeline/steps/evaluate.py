"""Point and PDF metrics of a predictions file (``photoz evaluate``): the paper's Section 5.1 and PDF quality."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from pipeline.core import io
from pipeline.core import log as plog
from pipeline.core.metrics import add_sample_arguments, evaluate
from pipeline.store.predictions import load_predictions

logger = logging.getLogger("pipeline.evaluate")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="photoz evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--predictions", required=True, help="predictions Parquet")
    parser.add_argument("--pdf", default=None, help="PDF store (default: <stem>.pdf.hdf5 beside the predictions)")
    add_sample_arguments(parser, "evaluate")
    parser.add_argument("--n-bins", type=int, default=8, help="equal-count bins for the binned tables")
    parser.add_argument("--out", required=True, help="metrics JSON")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    plog.setup(args.verbose)
    pred, pdf, z_edges = load_predictions(args.predictions, args.pdf, need_pdf=args.pdf is not None)
    result = evaluate(pred, pdf, z_edges, args.outlier_threshold, args.mag_column, args.n_bins, args.mag_max)
    result["model"] = Path(args.predictions).name.removesuffix(".parquet")
    io.write_json(result, args.out)
    logger.info(
        "%s: sigma_mad=%.5f eta=%.4f bias=%.5f n=%d",
        result["model"],
        result["sigma_mad"],
        result["outlier_fraction"],
        result["bias"],
        result["n"],
    )


if __name__ == "__main__":
    main()
