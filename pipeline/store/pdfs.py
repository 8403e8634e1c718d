"""The PDF store: the one owner of the qp-readable HDF5 layout of redshift PDFs on the z grid.

The store follows qp's own layout for a ``hist`` ensemble, so that ``qp.read(path)`` opens it: ``meta/bins``
(1, n_bins + 1) holds the z edges, ``data/pdfs`` (N, n_bins) the probabilities per bin (rows sum to one) and
``ancil/object_id`` (N,) the objects. qp reads every top-level key as a table, so nothing else may sit there.
"""

from __future__ import annotations

import h5py
import numpy as np

from pipeline.core import io


def _create_store(f: h5py.File, z_edges: np.ndarray, n: int, n_bins: int) -> h5py.Dataset:
    """Write qp's ``hist`` metadata into an empty store and create its ``data/pdfs`` (n, n_bins) dataset."""
    f["meta/bins"] = z_edges[None, :]
    f["meta/pdf_name"] = np.array([b"hist"])
    f["meta/pdf_version"] = np.array([0])
    return f.create_dataset(
        "data/pdfs", (n, n_bins), dtype="f4", chunks=(min(n, 4096) or 1, n_bins), compression="gzip"
    )


def write_pdfs(path, object_id, pdf, z_edges, **ancil) -> None:
    """Write PDFs atomically in qp's ``hist`` layout; ``ancil`` arrays (N,) are stored beside ``object_id``."""
    pdf = np.asarray(pdf, dtype=np.float32)
    z_edges = np.asarray(z_edges, dtype=np.float64)
    if pdf.ndim != 2 or pdf.shape[1] != len(z_edges) - 1:
        raise ValueError(f"pdf shape {pdf.shape} does not match {len(z_edges) - 1} bins")
    with io.atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        _create_store(f, z_edges, *pdf.shape)[...] = pdf
        f["ancil/object_id"] = np.asarray(object_id, dtype=np.int64)
        for key, values in ancil.items():
            f[f"ancil/{key}"] = np.asarray(values)


def concat_pdfs(paths, out) -> int:
    """Concatenate PDF stores (same z grid) into one, copying block by block so memory holds one store at a time."""
    sizes, z_edges = [], None
    for path in paths:
        with h5py.File(path, "r") as f:
            sizes.append(f["data/pdfs"].shape)
            edges = f["meta/bins"][0]
        if z_edges is not None and not np.array_equal(edges, z_edges):
            raise ValueError(f"{path}: redshift grid differs from {paths[0]}")
        z_edges = edges
    total, n_bins = sum(s[0] for s in sizes), sizes[0][1]
    with io.atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
        pdfs = _create_store(f, z_edges, total, n_bins)
        ids = f.create_dataset("ancil/object_id", (total,), dtype="i8")
        start = 0
        for path, (n, _) in zip(paths, sizes, strict=True):
            with h5py.File(path, "r") as src:
                pdfs[start : start + n] = src["data/pdfs"][()]
                ids[start : start + n] = src["ancil/object_id"][()]
            start += n
    return total


def read_pdfs(path) -> dict:
    """Read a PDF store: ``object_id`` (N,), ``pdf`` (N, n_bins), ``z_edges`` (n_bins + 1,) and the ancil arrays."""
    with h5py.File(path, "r") as f:
        out = {key: f[f"ancil/{key}"][()] for key in f["ancil"]}
        out["pdf"] = f["data/pdfs"][()]
        out["z_edges"] = f["meta/bins"][0]
    return out
