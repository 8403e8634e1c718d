"""Import an existing datacube in the format of the public P19 SDSS cube (``photoz import-cube``).

The input is an ``.npz`` with ``cube`` float32 (N, H, W, C) — channels last, as Pasquet et al. (2019) distribute
it — and ``labels``, a record array with (at least) the spectroscopic redshift and E(B-V) of each object. It is
written as the same store ``photoz pack`` makes: the HDF5 datacube with cubes transposed to (N, C, H, W), folds
dealt from a seed with :func:`pipeline.core.folds.assign_folds`, per-fold statistics, and the catalog Parquet view (the
labels' fields are carried along). The cube is streamed from the archive block by block, so
memory stays bounded for the 42 GB SDSS sample. An object whose band is all zeros has that band flagged missing
(coverage 0) — the paper zero-fills missing bands.
"""

from __future__ import annotations

import argparse
import logging
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core import io, preprocess
from pipeline.core.bands import sort_bands
from pipeline.core.folds import assign_folds
from pipeline.store import cubes

log = logging.getLogger("pipeline.import_cube")

SDSS_PIXEL_SCALE = 0.396  # arcsec per pixel of the SDSS imaging the P19 cube was cut from


def _npz_member(zf: zipfile.ZipFile, key: str):
    """An open stream positioned at the data of ``key`` in the archive, with its shape and dtype."""
    name = key if key in zf.namelist() else f"{key}.npy"
    if name not in zf.namelist():
        raise KeyError(f"no array {key!r} in the archive (it has {[n.removesuffix('.npy') for n in zf.namelist()]})")
    fp = zf.open(name)
    version = np.lib.format.read_magic(fp)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read_header(fp)
    if fortran:
        raise ValueError(f"{key} is stored in Fortran order: save it C-contiguous")
    return fp, shape, dtype


def _blocks(path, key: str, block: int):
    """Yield consecutive row blocks of a C-ordered array in an .npz without reading it whole."""
    with zipfile.ZipFile(path) as zf:
        fp, shape, dtype = _npz_member(zf, key)
        row = int(np.prod(shape[1:])) * dtype.itemsize
        for start in range(0, shape[0], block):
            n = min(block, shape[0] - start)
            buf = fp.read(n * row)
            if len(buf) != n * row:
                raise ValueError(f"{path}: {key} is truncated")
            yield np.frombuffer(buf, dtype=dtype).reshape((n, *shape[1:]))


def import_cube(
    npz,
    out,
    bands=tuple("ugriz"),
    z_field: str = "z",
    ebv_field: str = "ebv",
    id_field: str | None = None,
    n_folds: int = 5,
    seed: int = 0,
    pixel_scale_arcsec: float = SDSS_PIXEL_SCALE,
    parquet_pixels: bool = False,
) -> pd.DataFrame:
    """Write the datacube store ``out`` (HDF5, plus its Parquet files) from a P19-format ``.npz``; return its catalog.

    Parameters
    ----------
    npz : path
        Archive with ``cube`` (N, H, W, C) and ``labels`` (N,) record array.
    bands : sequence of str
        Names of the C channels, in the cube's order (sorted by wavelength in the store).
    z_field, ebv_field : str
        Fields of ``labels`` holding the spectroscopic redshift and E(B-V) (mag).
    id_field : str, optional
        Field holding a unique int64 object id; by default the row number.
    n_folds, seed : int
        Folds dealt by :func:`pipeline.core.folds.assign_folds`.
    """
    npz, out = Path(npz), Path(out)
    with np.load(npz) as archive:
        if "labels" not in archive.files:
            raise KeyError(f"{npz}: no 'labels' record array")
        labels = pd.DataFrame.from_records(archive["labels"])
    with zipfile.ZipFile(npz) as zf:
        shape = _npz_member(zf, "cube")[1]
    if len(shape) != 4 or shape[1] != shape[2]:
        raise ValueError(f"{npz}: cube has shape {shape}, expected (N, S, S, C)")
    n, size, n_bands = shape[0], shape[1], shape[3]
    bands = list(bands)
    if len(bands) != n_bands:
        raise ValueError(f"{npz}: the cube has {n_bands} channels but {len(bands)} band names were given: {bands}")
    if len(labels) != n:
        raise ValueError(f"{npz}: {len(labels)} labels for {n} cubes")
    for field in (z_field, ebv_field) + ((id_field,) if id_field else ()):
        if field not in labels.columns:
            raise KeyError(f"{npz}: labels have no field {field!r} (fields: {list(labels.columns)})")
    order = [bands.index(b) for b in sort_bands(bands)]
    object_id = labels[id_field].to_numpy(np.int64) if id_field else np.arange(n, dtype=np.int64)
    if len(np.unique(object_id)) != n:
        raise ValueError(f"{npz}: {id_field} is not unique")
    rows = labels.drop(columns=[c for c in (z_field, ebv_field, id_field) if c]).assign(
        object_id=object_id,
        z_spec=labels[z_field].to_numpy(np.float64),
        ebv=labels[ebv_field].to_numpy(np.float64),
        fold=assign_folds(n, n_folds, seed),
    )
    rows = rows[
        [
            "object_id",
            "z_spec",
            "ebv",
            "fold",
            *[c for c in rows.columns if c not in ("object_id", "z_spec", "ebv", "fold")],
        ]
    ]
    attrs = {"pixel_scale_arcsec": pixel_scale_arcsec, "source": str(npz.name), "fold_seed": seed}
    stats = preprocess.FoldStatistics()
    with cubes.cube_writer(out, sort_bands(bands), size, parquet_pixels) as writer:
        start = 0
        for nhwc in _blocks(npz, "cube", cubes.ROW_GROUP_OBJECTS):
            nchw = np.ascontiguousarray(nhwc.transpose(0, 3, 1, 2)[:, order], dtype=np.float32)
            coverage = (np.abs(nchw).max(axis=(2, 3)) > 0).astype(np.float32)
            writer.append(object_id[start : start + len(nchw)], nchw, coverage)
            stats.add(nchw)
            start += len(nchw)
        mean, std = stats.result(size * size, rows.fold.to_numpy(), n_folds)
        cubes.finish_datacube(writer, rows, mean, std, n_folds, attrs)
    io.write_parquet(rows, cubes.catalog_path(out))
    log.info("imported %d objects (%s, %dx%d) from %s into %s", n, "".join(sort_bands(bands)), size, size, npz, out)
    return rows


def main(argv=None) -> None:
    from pipeline.core import log as plog
    from pipeline.core.config import schema_default

    parser = argparse.ArgumentParser(prog="photoz import-cube", description=__doc__.splitlines()[0])
    parser.add_argument("--npz", required=True, help="P19-format archive: cube (N, H, W, C) and labels")
    parser.add_argument("--out", required=True, help="datacube (HDF5); the Parquet files are written beside it")
    parser.add_argument("--bands", nargs="+", default=list("ugriz"), help="names of the cube's channels, in order")
    columns = schema_default("survey.cube.columns")
    parser.add_argument("--z-field", default=columns["z"], help="field of labels with the spectroscopic redshift")
    parser.add_argument("--ebv-field", default=columns["ebv"], help="field of labels with E(B-V)")
    parser.add_argument("--id-field", default=columns["id"], help="field of labels with a unique id (default: row)")
    parser.add_argument("--folds", type=int, default=schema_default("folds.n"), help="number of folds to deal")
    parser.add_argument("--seed", type=int, default=schema_default("folds.seed"), help="seed of the fold assignment")
    parser.add_argument(
        "--pixel-scale", type=float, default=schema_default("survey.cube.pixel_scale_arcsec"), help="arcsec per pixel"
    )
    parser.add_argument("--parquet-pixels", action="store_true", help="also write the pixels as Parquet")
    args = parser.parse_args(argv)
    plog.setup()
    import_cube(
        args.npz, args.out, args.bands, args.z_field, args.ebv_field, args.id_field, args.folds, args.seed,
        args.pixel_scale, args.parquet_pixels,
    )  # fmt: skip


if __name__ == "__main__":
    main()
