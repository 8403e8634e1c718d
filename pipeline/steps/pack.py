"""Pack the training objects' cutouts and catalog rows into the datacube (``photoz pack``).

The datacube layout is owned by :mod:`pipeline.store.cubes`; this step selects the objects (coverage cut), streams
their cutouts from the shards block by block, and computes the per-fold standardisation statistics from the
compressed pixels outside each fold (:mod:`pipeline.core.preprocess`), so that memory holds one block at a time.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from pipeline.core import io, preprocess
from pipeline.store import cubes as store

log = logging.getLogger("pipeline.pack")


def _shard_selection(shard: Path, wanted: set) -> tuple[np.ndarray, dict]:
    with h5py.File(shard, "r") as f:
        ids = f["object_id"][()]
    return np.flatnonzero(np.isin(ids, list(wanted))), store.read_attrs(shard)


def passes_coverage(coverage: np.ndarray, min_coverage: float, allow_missing_bands: bool) -> np.ndarray:
    """Objects (N,) whose every band reaches ``min_coverage``; with ``allow_missing_bands``, bands without any
    data (coverage 0, zero-filled and flagged in ``missing_bands``) are exempt, but at least one band must be there.
    """
    if not allow_missing_bands:
        return coverage.min(axis=1) >= min_coverage
    present = coverage > 0
    return present.any(axis=1) & (np.where(present, coverage, 1.0).min(axis=1) >= min_coverage)


def pack(
    training: pd.DataFrame,
    shards: list,
    out,
    min_coverage: float,
    n_folds: int,
    allow_missing_bands: bool = False,
    parquet_pixels: bool = False,
) -> pd.DataFrame:
    """Stream the training objects' cutouts from the shards into one datacube; return the catalog rows kept.

    Objects whose coverage is below ``min_coverage`` in any band are dropped (and counted in the log). Writes
    ``out`` (HDF5), its catalog rows (:func:`pipeline.store.cubes.catalog_path`) and, with ``parquet_pixels``,
    the Parquet pixel copy (:func:`pipeline.store.cubes.cubes_parquet_path`).
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
    stats = preprocess.FoldStatistics()
    with store.cube_writer(out, bands, size, parquet_pixels) as writer:
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
                for start in range(0, len(sel), store.ROW_GROUP_OBJECTS):
                    block = slice(start, start + store.ROW_GROUP_OBJECTS)
                    cubes = src["cubes"][sel[block]]  # sel is sorted, as h5py needs
                    writer.append(ids[block], cubes, cov[block])
                    stats.add(cubes)
        object_id = writer.object_id
        if len(object_id) == 0:
            raise ValueError(f"every training object has coverage below {min_coverage} in some band")
        if n_low:
            log.warning("dropped %d objects with coverage below %g in some band", n_low, min_coverage)
        rows = catalog.loc[object_id].reset_index()
        mean, std = stats.result(size * size, rows.fold.to_numpy(), n_folds)
        keep = {k: v for k, v in attrs.items() if k not in ("bands", "size", "shard")}
        store.finish_datacube(writer, rows, mean, std, n_folds, keep)
    io.write_parquet(rows, store.catalog_path(out))
    log.info("packed %d objects (%d bands, %dx%d) into %s", len(rows), len(bands), size, size, out)
    return rows


def main(argv=None) -> None:
    from pipeline.core import log as plog

    parser = argparse.ArgumentParser(prog="photoz pack", description=__doc__.splitlines()[0])
    parser.add_argument("--training", required=True, help="training catalog from photoz match (Parquet)")
    parser.add_argument("--cutouts", required=True, nargs="+", help="cutout shards (HDF5)")
    parser.add_argument("--min-coverage", type=float, required=True, help="minimum valid-pixel fraction per band")
    parser.add_argument("--allow-missing-bands", action="store_true", help="keep objects with bands of no data")
    parser.add_argument("--folds", type=int, required=True, help="number of folds in the training catalog")
    parser.add_argument("--parquet-pixels", action="store_true", help="also write the pixels as Parquet")
    parser.add_argument("--out", required=True, help="datacube (HDF5); its catalog Parquet is written beside it")
    args = parser.parse_args(argv)
    plog.setup()
    training = io.read_table(args.training)
    if training.fold.max() >= args.folds:
        raise ValueError(f"{args.training}: fold {training.fold.max()} found but --folds is {args.folds}")
    pack(training, args.cutouts, args.out, args.min_coverage, args.folds, args.allow_missing_bands,
         args.parquet_pixels)  # fmt: skip


if __name__ == "__main__":
    main()
