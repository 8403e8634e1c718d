"""Join the chunks of a catalog-wide photo-z run into one catalog (``photoz merge``): Parquet, FITS and PDFs.

The PDFs keep the representation the chunks were written in (``production.pdf``); it is stated in the catalogue's
metadata (Parquet schema metadata ``pdf_representation`` and ``pdf_storage``, FITS header ``PDFREPR`` and
``PDFSTORE``) and in the log, with the bytes a galaxy's PDF takes.
"""

from __future__ import annotations

import argparse
import json
import logging

import pandas as pd

from pipeline.core import io
from pipeline.core import log as plog
from pipeline.store import pdfs
from pipeline.store.predictions import pdf_path_for

log = logging.getLogger("pipeline.merge")


def merge_chunks(chunks: list, out) -> pd.DataFrame:
    """Concatenate chunk predictions into one catalog: Parquet, FITS beside it, and the PDFs streamed chunk by chunk.

    The tables (a few numbers per object) are held in memory; the PDFs, n_bins times larger, never are.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq
    from astropy.table import Table

    table = pd.concat([io.read_table(c) for c in chunks], ignore_index=True)
    if table.object_id.duplicated().any():
        raise ValueError("an object appears in more than one chunk")
    pdf_out = pdf_path_for(out)
    pdfs.concat_pdfs([pdf_path_for(c) for c in chunks], pdf_out)
    storage = pdfs.read_storage(pdf_out)
    described = pdfs.describe(storage)
    fits_path = str(out).removesuffix(".parquet") + ".fits"
    with io.atomic_path(fits_path) as tmp:
        fits_table = Table.from_pandas(table)
        fits_table.meta.update(PDFREPR=storage["representation"], PDFSTORE=described, PDFFILE=pdf_out.name)
        fits_table.write(tmp, format="fits")
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    meta = {**(arrow.schema.metadata or {}), b"pdf_representation": storage["representation"].encode(),
            b"pdf_storage": json.dumps(storage).encode(), b"pdf_file": pdf_out.name.encode()}  # fmt: skip
    with io.atomic_path(out) as tmp:  # last: its presence marks a complete merge
        pq.write_table(arrow.replace_schema_metadata(meta), tmp)
    per_galaxy = pdf_out.stat().st_size / max(len(table), 1)
    log.info("merged %d objects from %d chunks into %s; PDFs as %s in %s (%.0f bytes a galaxy)", len(table),
             len(chunks), out, described, pdf_out, per_galaxy)  # fmt: skip
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
