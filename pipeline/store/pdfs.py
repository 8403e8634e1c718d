"""The PDF store: the one owner of the qp-readable HDF5 layout of redshift PDFs.

Every store follows qp's own layout for one of its representations, so that ``qp.read(path)`` opens it: a ``meta``
group (``pdf_name``, ``pdf_version`` and the representation's shared parameters, each (1, ...)), a ``data`` group
(the per-object parameters, (N, ...)) and ``ancil/object_id`` (N,) the objects. qp reads every top-level key as a
table, so nothing else may sit there; the z grid and the representation's settings are root attributes, which qp
ignores.

The default representation is the ``hist`` ensemble on the z grid: ``meta/bins`` (1, n_bins + 1) the z edges,
``data/pdfs`` (N, n_bins) float32 probabilities per bin (rows sum to one). A catalogue-wide run may store its PDFs
in a compact qp form instead (:data:`REPRESENTATIONS`, chosen by the config's ``production.pdf``), converted from
the histogram by :func:`encode`:

``quant``
    ``data/locs`` (N, n_quantiles) float32: the redshifts where the CDF of the histogram (linear inside each bin)
    reaches the quantiles ``meta/quants`` = (i + 1/2) / n_quantiles; qp pads the 0 and 1 quantiles when it reads
    (``ensure_extent``) and draws the PDF piecewise linear (its default constructor).
``interp``
    ``data/yvals`` (N, n_points) float32: the density (per unit z) at ``meta/xvals``, averaged over the cell of
    each point so that a PDF narrower than the cells keeps its mass (no aliasing).
``packed_interp``
    the same values packed by qp into one byte each (``data/ypacked`` uint8, ``data/ymax`` the row maxima,
    ``PackingType.linear_from_rowmax``): a quarter of ``interp``.

``n_points: null`` puts the points of ``interp`` and ``packed_interp`` at the bin centres of the z grid.
"""

from __future__ import annotations

import json

import h5py
import numpy as np

from pipeline.core import io
from pipeline.core.pdf import quantiles

REPRESENTATIONS = ("hist", "quant", "interp", "packed_interp")
BLOCK = 4096  # objects converted at a time


def storage_spec(storage=None) -> dict:
    """The full storage settings (``representation``, ``n_quantiles``, ``n_points``) from a partial mapping, a
    representation name or None (the histogram); raises ValueError for an unknown representation."""
    from pipeline.core.config import schema_default

    spec = schema_default("production.pdf")
    if isinstance(storage, str):
        storage = {"representation": storage}
    spec.update({k: v for k, v in (storage or {}).items() if v is not None or k == "n_points"})
    unknown = set(spec) - {"representation", "n_quantiles", "n_points"}
    if unknown:
        raise ValueError(f"unknown PDF storage settings {sorted(unknown)}")
    if spec["representation"] not in REPRESENTATIONS:
        raise ValueError(
            f"unknown PDF representation {spec['representation']!r}: valid are {', '.join(REPRESENTATIONS)}"
        )
    if int(spec["n_quantiles"]) < 2:
        raise ValueError(f"n_quantiles is {spec['n_quantiles']}: at least 2 are needed")
    if spec["n_points"] is not None and int(spec["n_points"]) < 2:
        raise ValueError(f"n_points is {spec['n_points']}: at least 2 are needed")
    return spec


def describe(storage=None) -> str:
    """One line naming a storage, e.g. ``quant (20 quantiles)``, for logs and catalogue metadata."""
    spec = storage_spec(storage)
    rep = spec["representation"]
    if rep == "quant":
        return f"quant ({spec['n_quantiles']} quantiles)"
    if rep in ("interp", "packed_interp"):
        return f"{rep} ({spec['n_points'] or 'bin-centre'} points)"
    return "hist (the z grid's bins)"


def _cdf_at(pdf: np.ndarray, z_edges: np.ndarray, x: np.ndarray) -> np.ndarray:
    """CDF (N, len(x)) of bin-probability PDFs at the points ``x``, linear inside each bin, 0 / 1 outside."""
    cdf = np.concatenate([np.zeros((len(pdf), 1)), np.cumsum(pdf, axis=1, dtype=np.float64)], axis=1)
    cdf /= cdf[:, -1:]
    k = np.clip(np.searchsorted(z_edges, x, side="right"), 1, len(z_edges) - 1)
    frac = np.clip((x - z_edges[k - 1]) / (z_edges[k] - z_edges[k - 1]), 0, 1)
    return cdf[:, k - 1] + frac * (cdf[:, k] - cdf[:, k - 1])


def _points(spec: dict, z_edges: np.ndarray) -> np.ndarray:
    if spec["n_points"] is None:
        return 0.5 * (z_edges[1:] + z_edges[:-1])
    return np.linspace(z_edges[0], z_edges[-1], int(spec["n_points"]))


def _cell_density(pdf: np.ndarray, z_edges: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Mean density (N, len(x)) over the cell of each point: between the midpoints to its neighbours."""
    bounds = np.concatenate([[x[0]], 0.5 * (x[1:] + x[:-1]), [x[-1]]])
    # the end points' cells are half cells (the grid ends there), as in qp's trapezoid normalisation
    return np.diff(_cdf_at(pdf, z_edges, bounds), axis=1) / np.diff(bounds)


def _quants(n: int) -> np.ndarray:
    return (np.arange(n) + 0.5) / n


def encode(pdf, z_edges, storage=None) -> tuple[dict, dict]:
    """The qp ``meta`` and ``data`` tables of bin-probability PDFs (N, n_bins) in the chosen representation.

    Returns
    -------
    (meta, data) : (dict, dict)
        ``meta`` arrays shaped as qp writes them ((1, ...) rows, names as byte strings); ``data`` arrays (N, ...).
    """
    spec = storage_spec(storage)
    rep = spec["representation"]
    pdf = np.asarray(pdf, dtype=np.float64)
    z_edges = np.asarray(z_edges, dtype=np.float64)
    meta = {"pdf_name": np.array([rep.encode()]), "pdf_version": np.array([0])}
    if rep == "hist":
        meta["bins"] = z_edges[None, :]
        return meta, {"pdfs": pdf.astype(np.float32)}
    if rep == "quant":
        q = _quants(int(spec["n_quantiles"]))
        meta.update(quants=q[None, :], pdf_constructor_name=np.array([b"piecewise_linear"]),
                    ensure_extent=np.array([True]))  # fmt: skip
        locs = quantiles(pdf, z_edges, q).astype(np.float32)
        return meta, {"locs": np.maximum.accumulate(locs, axis=1)}  # float32 rounding never breaks the order
    x = _points(spec, z_edges)
    meta["xvals"] = x[None, :]
    y = _cell_density(pdf, z_edges, x)
    if rep == "interp":
        return meta, {"yvals": y.astype(np.float32)}
    from qp.parameterizations.packed_interp.packing_utils import PackingType, pack_array

    packed, ymax = pack_array(PackingType.linear_from_rowmax, y)
    meta.update(packing_type=np.array([PackingType.linear_from_rowmax.value]), log_floor=np.array([-3.0]))
    return meta, {"ypacked": packed, "ymax": np.asarray(ymax, np.float32).reshape(-1, 1)}


def _root_attrs(f: h5py.File, z_edges: np.ndarray, spec: dict) -> None:
    f.attrs["z_edges"] = np.asarray(z_edges, np.float64)
    f.attrs["pdf_representation"] = spec["representation"]
    f.attrs["pdf_storage"] = json.dumps(spec)


def write_pdfs(path, object_id, pdf, z_edges, storage=None, **ancil) -> None:
    """Write PDFs atomically in a qp layout; ``ancil`` arrays (N,) are stored beside ``object_id``.

    Parameters
    ----------
    pdf : array (N, n_bins)
        Probabilities per bin of the z grid ``z_edges`` (n_bins + 1,).
    storage : mapping or str, optional
        The representation (the config's ``production.pdf``: ``representation``, ``n_quantiles``, ``n_points``, or
        just a name); by default the histogram itself.
    """
    z_edges = np.asarray(z_edges, dtype=np.float64)
    pdf = np.asarray(pdf, dtype=np.float32)
    if pdf.ndim != 2 or pdf.shape[1] != len(z_edges) - 1:
        raise ValueError(f"pdf shape {pdf.shape} does not match {len(z_edges) - 1} bins")
    spec = storage_spec(storage)
    n = len(pdf)
    with io.atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        _root_attrs(f, z_edges, spec)
        # an empty store still needs the meta table and the data's shapes: encode one flat PDF for them
        meta, data = encode(pdf[:BLOCK] if n else np.ones((1, pdf.shape[1])), z_edges, spec)
        for key, value in meta.items():
            f[f"meta/{key}"] = value
        created = {key: _create(f, f"data/{key}", n, value) for key, value in data.items()}
        for start in range(0, n, BLOCK):
            if start:
                data = encode(pdf[start : start + BLOCK], z_edges, spec)[1]
            for key, value in data.items():
                created[key][start : start + len(value)] = value
        f["ancil/object_id"] = np.asarray(object_id, dtype=np.int64)
        for key, values in ancil.items():
            f[f"ancil/{key}"] = np.asarray(values)


def _create(f: h5py.File, name: str, n: int, like: np.ndarray) -> h5py.Dataset:
    shape = (n, *like.shape[1:])
    if n == 0:
        return f.create_dataset(name, shape, dtype=like.dtype)
    chunks = (min(n, BLOCK), *like.shape[1:])
    return f.create_dataset(name, shape, dtype=like.dtype, chunks=chunks, compression="gzip", shuffle=True)


def concat_pdfs(paths, out) -> int:
    """Concatenate PDF stores (same grid and representation) into one, block by block: memory holds one store's
    data at a time. Returns the number of objects."""
    sizes, first = [], None
    for path in paths:
        with h5py.File(path, "r") as f:
            meta = {k: f[f"meta/{k}"][()] for k in f["meta"]}
            head = (meta, _attrs(f), {k: (f[f"data/{k}"].shape[1:], f[f"data/{k}"].dtype) for k in f["data"]})
            sizes.append(len(f["ancil/object_id"]))
        if first is None:
            first = head
        elif not _same_layout(head, first):
            raise ValueError(f"{path}: PDF grid or representation differs from {paths[0]}")
    if first is None:
        raise ValueError("no PDF stores to concatenate")
    meta, attrs, data = first
    total = sum(sizes)
    with io.atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
        for key, value in attrs.items():
            f.attrs[key] = value
        for key, value in meta.items():
            f[f"meta/{key}"] = value
        outs = {k: _create(f, f"data/{k}", total, np.zeros((1, *shape), dtype)) for k, (shape, dtype) in data.items()}
        ids = f.create_dataset("ancil/object_id", (total,), dtype="i8")
        start = 0
        for path, n in zip(paths, sizes, strict=True):
            with h5py.File(path, "r") as src:
                for key, dset in outs.items():
                    dset[start : start + n] = src[f"data/{key}"][()]
                ids[start : start + n] = src["ancil/object_id"][()]
            start += n
    return total


def _attrs(f: h5py.File) -> dict:
    return dict(f.attrs.items())


def _same_layout(a, b) -> bool:
    (meta_a, attrs_a, data_a), (meta_b, attrs_b, data_b) = a, b
    same_meta = meta_a.keys() == meta_b.keys() and all(np.array_equal(meta_a[k], meta_b[k]) for k in meta_a)
    same_attrs = attrs_a.keys() == attrs_b.keys() and all(np.array_equal(attrs_a[k], attrs_b[k]) for k in attrs_a)
    return same_meta and same_attrs and data_a == data_b


def read_storage(path) -> dict:
    """The storage settings of a PDF store (``representation``, ``n_quantiles``, ``n_points``)."""
    with h5py.File(path, "r") as f:
        if "pdf_storage" in f.attrs:
            return json.loads(f.attrs["pdf_storage"])
        return storage_spec(f["meta/pdf_name"][0].decode())


def read_pdfs(path) -> dict:
    """Read a PDF store: ``object_id`` (N,), ``pdf`` (N, n_bins) probabilities per bin of the z grid, ``z_edges``
    (n_bins + 1,) and the ancil arrays. A compact store is opened by qp and integrated over the grid's bins (mass
    outside the grid is dropped, rows renormalised)."""
    with h5py.File(path, "r") as f:
        out = {key: f[f"ancil/{key}"][()] for key in f["ancil"]}
        name = f["meta/pdf_name"][0].decode()
        if name == "hist":
            out["pdf"] = f["data/pdfs"][()]
            out["z_edges"] = f["meta/bins"][0]
            return out
        if "z_edges" not in f.attrs:
            raise ValueError(f"{path}: a {name} PDF store without its z grid (root attribute z_edges)")
        z_edges = np.asarray(f.attrs["z_edges"], np.float64)
    import qp

    ens = qp.read(str(path))
    cdf = np.asarray(ens.cdf(z_edges), np.float64).reshape(ens.npdf, -1)
    prob = np.clip(np.diff(cdf, axis=1), 0, None)
    total = prob.sum(axis=1, keepdims=True)
    out["pdf"] = (prob / np.where(total > 0, total, 1)).astype(np.float32)
    out["z_edges"] = z_edges
    return out
