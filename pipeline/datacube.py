"""The datacube store (``photoz pack``): cutouts of the training objects joined to their catalog rows.

Layout (HDF5, chunked along objects, uncompressed): ``cubes`` float32 (N, n_bands, S, S) as extracted,
``object_id``, ``coverage`` (N, n_bands), ``missing_bands`` (N,) bit mask of bands without data (zero-filled),
``z_spec``, ``ebv``, ``fold``, and the standardisation statistics ``norm_mean`` / ``norm_std`` (n_folds, n_bands)
of the compressed pixels outside each fold. Beside it, two Parquet files in the same row order: ``<name>.parquet``,
the catalog rows, and ``<name>.cubes.parquet``, one row per galaxy with ``object_id`` and the cube flattened into a
fixed-size list of float32 (shape and bands in the schema metadata), for tools that prefer Parquet.

The cubes are left uncompressed on purpose: noisy float32 pixels compress by 1.16x at best and gzip writes at
40-50 MB/s, while an uncompressed chunk is a plain block of ``CHUNK_OBJECTS`` cubes in the file, which
:mod:`pipeline.loader` reads through a NumPy memmap for fast random batches when the cube does not fit in memory.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import io, preprocess

log = logging.getLogger("pipeline.datacube")

CHUNK_OBJECTS = 64
ROW_GROUP_OBJECTS = 1024  # Parquet row group of the cube file; also the block size of the streaming writers
PREPROCESSING = "x_c = sign(x)(sqrt(|x|+1)-1), then (x_c - norm_mean[fold]) / norm_std[fold]"


def cubes_parquet_path(path) -> Path:
    """``train.h5`` -> ``train.cubes.parquet``: the cube Parquet beside a datacube."""
    path = Path(path)
    return path.with_name(path.stem + ".cubes.parquet")


def _cube_schema(n_bands: int, size: int, bands) -> pa.Schema:
    meta = {"shape": json.dumps([n_bands, size, size]), "bands": json.dumps(list(bands)), "dtype": "float32"}
    return pa.schema(
        [("object_id", pa.int64()), ("cube", pa.list_(pa.float32(), n_bands * size * size))], metadata=meta
    )


class _StoreWriter:
    """Streams blocks of cubes into the HDF5 store and the cube Parquet, accumulating the per-object moments."""

    def __init__(self, h5_tmp: Path, parquet_tmp: Path, bands, size: int):
        self.bands, self.size, nb = list(bands), int(size), len(bands)
        self.f = h5py.File(h5_tmp, "w")
        self.cubes = self.f.create_dataset(
            "cubes", (0, nb, size, size), maxshape=(None, nb, size, size), dtype="f4",
            chunks=(CHUNK_OBJECTS, nb, size, size),
        )  # fmt: skip
        self.coverage = self.f.create_dataset("coverage", (0, nb), maxshape=(None, nb), dtype="f4")
        self.pq = pq.ParquetWriter(parquet_tmp, _cube_schema(nb, size, bands), compression="none")
        self.ids, self.s1, self.s2 = [], [], []

    def append(self, object_id: np.ndarray, block: np.ndarray, coverage: np.ndarray) -> None:
        block = np.ascontiguousarray(block, dtype=np.float32)
        n0, n = self.cubes.shape[0], len(block)
        self.cubes.resize(n0 + n, axis=0)
        self.cubes[n0:] = block
        self.coverage.resize(n0 + n, axis=0)
        self.coverage[n0:] = coverage
        flat = pa.FixedSizeListArray.from_arrays(pa.array(block.reshape(-1)), block[0].size)
        ids = np.asarray(object_id, dtype=np.int64)
        self.pq.write_table(pa.Table.from_arrays([pa.array(ids), flat], schema=self.pq.schema))
        s1, s2 = preprocess.band_moments(block)
        self.ids.append(ids)
        self.s1.append(s1)
        self.s2.append(s2)

    @property
    def object_id(self) -> np.ndarray:
        return np.concatenate(self.ids) if self.ids else np.zeros(0, np.int64)

    def finish(self, rows: pd.DataFrame, n_folds: int, attrs: dict) -> None:
        """Write the per-object columns of ``rows`` (same order as appended), the fold statistics and attributes."""
        f, size = self.f, self.size
        fold = rows.fold.to_numpy()
        mean, std = preprocess.fold_statistics(
            np.concatenate(self.s1), np.concatenate(self.s2), size * size, fold, n_folds
        )
        f["object_id"] = self.object_id
        f["z_spec"] = rows.z_spec.to_numpy(np.float32)
        f["ebv"] = rows.ebv.to_numpy(np.float32)
        f["fold"] = fold.astype(np.int16)
        cov_all = self.coverage[()]
        f["missing_bands"] = ((cov_all == 0) * (1 << np.arange(len(self.bands)))).sum(axis=1).astype(np.uint32)
        f["norm_mean"], f["norm_std"] = mean, std
        for key, value in attrs.items():
            f.attrs[key] = value
        f.attrs["bands"] = self.bands
        f.attrs["size"] = size
        f.attrs["n_folds"] = n_folds
        f.attrs["preprocessing"] = PREPROCESSING
        self.close()

    def close(self) -> None:
        if self.f:
            self.f.close()
            self.f = None
        if self.pq:
            self.pq.close()
            self.pq = None


@contextlib.contextmanager
def store_writer(out, bands, size: int):
    """A :class:`_StoreWriter` of the store ``out`` and its cube Parquet, both written atomically: they take their
    final names only when the block ends without error (after ``writer.finish``)."""
    with io.atomic_path(out) as tmp, io.atomic_path(cubes_parquet_path(out)) as ptmp:
        writer = _StoreWriter(tmp, ptmp, bands, size)
        try:
            yield writer
        finally:
            writer.close()


def _shard_selection(shard: Path, wanted: set) -> tuple[np.ndarray, dict]:
    with h5py.File(shard, "r") as f:
        ids = f["object_id"][()]
        attrs = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in f.attrs.items()}
    return np.flatnonzero(np.isin(ids, list(wanted))), attrs


def passes_coverage(coverage: np.ndarray, min_coverage: float, allow_missing_bands: bool) -> np.ndarray:
    """Objects (N,) whose every band reaches ``min_coverage``; with ``allow_missing_bands``, bands without any
    data (coverage 0, zero-filled and flagged in ``missing_bands``) are exempt, but at least one band must be there.
    """
    if not allow_missing_bands:
        return coverage.min(axis=1) >= min_coverage
    present = coverage > 0
    return present.any(axis=1) & (np.where(present, coverage, 1.0).min(axis=1) >= min_coverage)


def pack(
    training: pd.DataFrame, shards: list, out, min_coverage: float, n_folds: int, allow_missing_bands: bool = False
) -> pd.DataFrame:
    """Stream the training objects' cutouts from the shards into one store; return the catalog rows kept.

    Objects whose coverage is below ``min_coverage`` in any band are dropped (and counted in the log). Writes
    ``out`` (HDF5), the catalog view ``out.with_suffix('.parquet')`` and the cube Parquet
    (:func:`cubes_parquet_path`).
    """
    out = Path(out)
    wanted = set(training.object_id.tolist())
    selections = [(Path(s), *_shard_selection(Path(s), wanted)) for s in shards]
    if not selections:
        raise ValueError("no cutout shards given")
    attrs = selections[0][2]
    for path, _, a in selections[1:]:
        for key in ("bands", "size", "pixel_scale_arcsec"):
            if a.get(key) != attrs.get(key):
                raise ValueError(f"{path}: {key}={a.get(key)} differs from {selections[0][0]}: {attrs.get(key)}")
    bands, size = list(attrs["bands"]), int(attrs["size"])
    total = sum(len(sel) for _, sel, _ in selections)
    if total == 0:
        raise ValueError("none of the training objects has a cutout: do the shards cover the training catalog?")

    catalog = training.set_index("object_id")
    with store_writer(out, bands, size) as writer:
        n_low = 0
        for path, sel, _ in selections:
            if len(sel) == 0:
                continue
            with h5py.File(path, "r") as src:
                cov = src["coverage"][()][sel]
                good = passes_coverage(cov, min_coverage, allow_missing_bands)
                n_low += int((~good).sum())
                sel, cov = sel[good], cov[good]
                ids = src["object_id"][()][sel]
                for start in range(0, len(sel), ROW_GROUP_OBJECTS):
                    block = slice(start, start + ROW_GROUP_OBJECTS)
                    writer.append(ids[block], src["cubes"][sel[block]], cov[block])  # sel is sorted, as h5py needs
        object_id = writer.object_id
        if len(object_id) == 0:
            raise ValueError(f"every training object has coverage below {min_coverage} in some band")
        if n_low:
            log.warning("dropped %d objects with coverage below %g in some band", n_low, min_coverage)
        rows = catalog.loc[object_id].reset_index()
        writer.finish(rows, n_folds, attrs)
    io.write_parquet(rows, out.with_suffix(".parquet"))
    log.info("packed %d objects (%d bands, %dx%d) into %s", len(rows), len(bands), size, size, out)
    return rows


def load(path, cubes: bool = True) -> dict:
    """Read a datacube into memory: arrays by dataset name, plus ``attrs``; without ``cubes`` when ``cubes=False``."""
    with h5py.File(path, "r") as f:
        data = {key: f[key][()] for key in f if cubes or key != "cubes"}
        data["attrs"] = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in f.attrs.items()}
        data["attrs"]["n_objects"] = int(f["cubes"].shape[0])
    data["attrs"]["bands"] = [str(b) for b in data["attrs"]["bands"]]
    return data


def read_cubes_parquet(path) -> tuple[np.ndarray, np.ndarray, dict]:
    """Read a cube Parquet back: ``object_id`` (N,), cubes float32 (N, n_bands, S, S) and its metadata.

    Reads the whole file (a fixed-size-list column is decoded by whole row groups, so it is no random-access
    format: train from the HDF5 store).
    """
    table = pq.read_table(path)
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    shape = tuple(json.loads(meta["shape"]))
    cube = table.column("cube").combine_chunks()
    values = cube.values.to_numpy(zero_copy_only=False) if len(cube) else np.zeros(0, np.float32)
    cubes = values.astype(np.float32, copy=False).reshape((len(cube), *shape))
    info = {"shape": list(shape), "bands": json.loads(meta.get("bands", "[]"))}
    return table.column("object_id").to_numpy(), cubes, info


def main(argv=None) -> None:
    from pipeline import log as plog

    parser = argparse.ArgumentParser(prog="photoz pack", description=__doc__.splitlines()[0])
    parser.add_argument("--training", required=True, help="training catalog from photoz match (Parquet)")
    parser.add_argument("--cutouts", required=True, nargs="+", help="cutout shards (HDF5)")
    parser.add_argument("--min-coverage", type=float, default=0.9, help="minimum valid-pixel fraction in every band")
    parser.add_argument("--allow-missing-bands", action="store_true", help="keep objects with bands of no data")
    parser.add_argument("--folds", type=int, default=5, help="number of folds in the training catalog")
    parser.add_argument(
        "--out", required=True, help="datacube (HDF5); the catalog and cube Parquet files are written beside it"
    )
    args = parser.parse_args(argv)
    plog.setup()
    training = io.read_table(args.training)
    if training.fold.max() >= args.folds:
        raise SystemExit(f"{args.training}: fold {training.fold.max()} found but --folds is {args.folds}")
    pack(training, args.cutouts, args.out, args.min_coverage, args.folds, args.allow_missing_bands)


if __name__ == "__main__":
    main()
