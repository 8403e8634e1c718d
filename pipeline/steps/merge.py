"""Join the chunks of a catalog-wide photo-z run into one catalog (``photoz merge``): Parquet, FITS and PDFs."""

from __future__ import annotations

import argparse

import pandas as pd

from pipeline.core import io
from pipeline.core import log as plog
from pipeline.store import pdfs
from pipeline.store.predictions import pdf_path_for


def merge_chunks(chunks: list, out) -> pd.DataFrame:
    """Concatenate chunk predictions into one catalog: Parquet, FITS beside it, and the PDFs streamed chunk by chunk.

    The tables (a few numbers per object) are held in memory; the PDFs, n_bins times larger, never are.
    """
    from astropy.table import Table

    table = pd.concat([io.read_table(c) for c in chunks], ignore_index=True)
    if table.object_id.duplicated().any():
        raise ValueError("an object appears in more than one chunk")
    pdfs.concat_pdfs([pdf_path_for(c) for c in chunks], pdf_path_for(out))
    fits_path = str(out).removesuffix(".parquet") + ".fits"
    with io.atomic_path(fits_path) as tmp:
        Table.from_pandas(table).write(tmp, format="fits")
    io.write_parquet(table, out)  # last: its presence marks a complete merge
    return table


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="photoz merge", description=__doc__.splitlines()[0])
    parser.add_argument("chunks", nargs="+", help="chunk predictions (Parquet, with their .pdf.hdf5 beside them)")
    parser.add_argument("--out", required=True, help="merged catalog (Parquet); FITS and PDFs are written beside it")
    args = parser.parse_args(argv)
    plog.setup()
    merge_chunks(args.chunks, args.out)


if __name__ == "__main__":
    main()
