"""The datacube store (``photoz pack``): cutouts of the training objects joined to their catalog rows.

Layout (HDF5, chunked along objects): ``cubes`` float32 (N, n_bands, S, S) as extracted, ``object_id``,
``coverage`` (N, n_bands), ``missing_bands`` (N,) bit mask of bands without data (zero-filled), ``z_spec``,
``ebv``, ``fold``, and the standardisation statistics ``norm_mean`` / ``norm_std`` (n_folds, n_bands) of the
compressed pixels outside each fold. The catalog rows, in the same order, are in the Parquet view beside it.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from pipeline import io, preprocess

log = logging.getLogger("pipeline.datacube")

CHUNK_OBJECTS = 64


def _shard_selection(shard: Path, wanted: set) -> tuple[np.ndarray, dict]:
    with h5py.File(shard, "r") as f:
        ids = f["object_id"][()]
        attrs = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in f.attrs.items()}
    return np.flatnonzero(np.isin(ids, list(wanted))), attrs


def pack(training: pd.DataFrame, shards: list, out, min_coverage: float, n_folds: int) -> pd.DataFrame:
    """Stream the training objects' cutouts from the shards into one store; return the catalog rows kept.

    Objects whose coverage is below ``min_coverage`` in any band are dropped (and counted in the log).
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
    kept_ids, s1_all, s2_all = [], [], []
    with io.atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
        cubes = f.create_dataset(
            "cubes",
            (0, len(bands), size, size),
            maxshape=(None, len(bands), size, size),
            dtype="f4",
            chunks=(CHUNK_OBJECTS, len(bands), size, size),
        )
        coverage = f.create_dataset("coverage", (0, len(bands)), maxshape=(None, len(bands)), dtype="f4")
        n_low = 0
        for path, sel, _ in selections:
            if len(sel) == 0:
                continue
            with h5py.File(path, "r") as src:
                ids = src["object_id"][()][sel]
                cov = src["coverage"][()][sel]
                good = cov.min(axis=1) >= min_coverage
                n_low += int((~good).sum())
                for start in range(0, int(good.sum()), 1024):
                    rows = sel[good][start : start + 1024]
                    block = src["cubes"][rows]  # rows are sorted, which h5py requires
                    n0 = cubes.shape[0]
                    cubes.resize(n0 + len(rows), axis=0)
                    cubes[n0:] = block
                    coverage.resize(n0 + len(rows), axis=0)
                    coverage[n0:] = cov[good][start : start + 1024]
                    s1, s2 = preprocess.band_moments(block)
                    s1_all.append(s1)
                    s2_all.append(s2)
                kept_ids.append(ids[good])
        object_id = np.concatenate(kept_ids) if kept_ids else np.zeros(0, np.int64)
        if len(object_id) == 0:
            raise ValueError(f"every training object has coverage below {min_coverage} in some band")
        if n_low:
            log.warning("dropped %d objects with coverage below %g in some band", n_low, min_coverage)
        rows = catalog.loc[object_id].reset_index()
        fold = rows.fold.to_numpy()
        mean, std = preprocess.fold_statistics(
            np.concatenate(s1_all), np.concatenate(s2_all), size * size, fold, n_folds
        )
        f["object_id"] = object_id.astype(np.int64)
        f["z_spec"] = rows.z_spec.to_numpy(np.float32)
        f["ebv"] = rows.ebv.to_numpy(np.float32)
        f["fold"] = fold.astype(np.int16)
        cov_all = coverage[()]
        f["missing_bands"] = ((cov_all == 0) * (1 << np.arange(len(bands)))).sum(axis=1).astype(np.uint32)
        f["norm_mean"], f["norm_std"] = mean, std
        for key, value in attrs.items():
            f.attrs[key] = value
        f.attrs["bands"] = bands
        f.attrs["n_folds"] = n_folds
        f.attrs["preprocessing"] = "x_c = sign(x)(sqrt(|x|+1)-1), then (x_c - norm_mean[fold]) / norm_std[fold]"
    io.write_parquet(rows, out.with_suffix(".parquet"))
    log.info("packed %d objects (%d bands, %dx%d) into %s", len(rows), len(bands), size, size, out)
    return rows


def load(path) -> dict:
    """Read a whole datacube into memory: arrays by dataset name, plus ``attrs``."""
    with h5py.File(path, "r") as f:
        data = {key: f[key][()] for key in f}
        data["attrs"] = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in f.attrs.items()}
    data["attrs"]["bands"] = [str(b) for b in data["attrs"]["bands"]]
    return data


def main(argv=None) -> None:
    from pipeline import log as plog

    parser = argparse.ArgumentParser(prog="photoz pack", description=__doc__.splitlines()[0])
    parser.add_argument("--training", required=True, help="training catalog from photoz match (Parquet)")
    parser.add_argument("--cutouts", required=True, nargs="+", help="cutout shards (HDF5)")
    parser.add_argument("--min-coverage", type=float, default=0.9, help="minimum valid-pixel fraction in every band")
    parser.add_argument("--folds", type=int, default=5, help="number of folds in the training catalog")
    parser.add_argument("--out", required=True, help="datacube (HDF5); the Parquet view is written beside it")
    args = parser.parse_args(argv)
    plog.setup()
    training = io.read_table(args.training)
    if training.fold.max() >= args.folds:
        raise SystemExit(f"{args.training}: fold {training.fold.max()} found but --folds is {args.folds}")
    pack(training, args.cutouts, args.out, args.min_coverage, args.folds)


if __name__ == "__main__":
    main()
