"""The self-contained HTML report of a run (``photoz report``): metrics, figures, comparisons and experiments."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pandas as pd

from pipeline.core import io
from pipeline.core import log as plog
from pipeline.report.html import render_report, stem
from pipeline.store import dropouts

logger = logging.getLogger("pipeline.report")


def _need(path) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"report input not found: {path}")
    return path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="photoz report", description=__doc__.splitlines()[0])
    parser.add_argument("--predictions", nargs="*", default=[], help="predictions Parquet files")
    parser.add_argument("--metrics", nargs="*", default=[], help="metrics JSON files")
    parser.add_argument("--compare", nargs="*", default=[], help="comparison JSON files")
    parser.add_argument("--dropout", nargs="*", default=[], help="modality-dropout predictions Parquet files")
    parser.add_argument("--config", default=None, help="configuration YAML to show")
    parser.add_argument("--out", required=True, help="HTML page to write")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    plog.setup(args.verbose)
    predictions = {stem(p): pd.read_parquet(_need(p)) for p in args.predictions}
    metrics = {stem(p): io.read_json(_need(p)) for p in args.metrics}
    comparisons = [io.read_json(_need(p)) for p in args.compare]
    dropout = {stem(p): dropouts.read(_need(p)) for p in args.dropout}
    config_text = _need(args.config).read_text() if args.config else None
    page = render_report(predictions, metrics, comparisons, config_text, dropout=dropout)
    with io.atomic_path(args.out) as tmp:
        tmp.write_text(page)
    logger.info("report written to %s", args.out)


if __name__ == "__main__":
    main()
