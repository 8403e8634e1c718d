"""The cube store: the one owner of the HDF5 layout of cutout shards and of the datacube.

Both files share one layout (HDF5, chunked along objects, uncompressed): ``cubes`` float32 (N, n_bands, S, S) in
bands sorted by wavelength, ``object_id`` (N,), ``coverage`` (N, n_bands) the fraction of valid pixels, and the
attributes ``bands``, ``size``, ``pixel_scale_arcsec`` and ``flux_convention``. Cutout shards add the per-band
columns of :data:`BAND_COLUMNS` (N, n_bands): ``exposures``, the mean number of exposures combined per valid pixel
(1 for the single-tile choice), and ``pixel_noise``, the RMS noise of a valid pixel (1 sigma, cube units). The
datacube (``photoz pack``, or ``photoz import-cube``) adds the per-object columns ``z_spec``, ``ebv``, ``fold``,
``missing_bands`` (bit mask of bands without data, zero-filled), the standardisation statistics ``norm_mean`` /
``norm_std`` (n_folds, n_bands) of the compressed pixels outside each fold, and the attributes ``n_folds`` and
``preprocessing``. Beside a datacube sit its catalog rows as ``<name>.parquet`` (same row order) and, only when
asked for, the pixels as ``<name>.cubes.parquet`` (one row per galaxy: ``object_id`` and the cube flattened into a
fixed-size list of float32, shape and bands in the schema metadata), for tools that prefer Parquet.

The cubes are left uncompressed on purpose: noisy float32 pixels compress by 1.16x at best and gzip writes at
40-50 MB/s, while an uncompressed chunk is a plain block of ``CHUNK_OBJECTS`` cubes in the file, which
:mod:`pipeline.store.loader` reads through a NumPy memmap for fast random batches when the cube does not fit in
memory.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from pipeline.core import io

CHUNK_OBJECTS = 64
# Optional per-object, per-band float32 columns (N, n_bands) that a writer's ``append`` may carry.
BAND_COLUMNS = ("exposures", "pixel_noise")
ROW_GROUP_OBJECTS = 1024  # Parquet row group of the pixel copy; also the block size of the streaming writers
PREPROCESSING = "x_c = sign(x)(sqrt(|x|+1)-1), then (x_c - norm_mean[fold]) / norm_std[fold]"
FLUX_CONVENTION = (
    "flux per output pixel: the input image (flux per input pixel) is interpolated as a surface brightness and "
    "multiplied by the local ratio of output to input pixel area on the sky (the Jacobian of the tile WCS), so "
    "that summing a cutout's pixels preserves total flux; units are those of the input images"
)


def cubes_parquet_path(path) -> Path:
    """``train.h5`` -> ``train.cubes.parquet``: the pixel copy beside a datacube."""
    path = Path(path)
    return path.with_name(path.stem + ".cubes.parquet")


def catalog_path(path) -> Path:
    """``train.h5`` -> ``train.parquet``: the catalog rows beside a datacube."""
    return Path(path).with_suffix(".parquet")


def _cube_schema(n_bands: int, size: int, bands):
    import pyarrow as pa

    meta = {"shape": json.dumps([n_bands, size, size]), "bands": json.dumps(list(bands)), "dtype": "float32"}
    return pa.schema(
        [("object_id", pa.int64()), ("cube", pa.list_(pa.float32(), n_bands * size * size))], metadata=meta
    )


class CubeWriter:
    """Streams blocks of ``(object_id, cubes, coverage)`` into the cube layout (and the Parquet pixel copy)."""

    def __init__(self, h5_tmp: Path, bands, size: int, parquet_tmp: Path | None = None, n: int | None = None):
        self.bands, self.size, nb = list(bands), int(size), len(bands)
        self.f = h5py.File(h5_tmp, "w")
        per_chunk = CHUNK_OBJECTS if n is None else max(1, min(n, CHUNK_OBJECTS))  # no chunk larger than the file
        self.cubes = self.f.create_dataset(
            "cubes", (0, nb, size, size), maxshape=(None, nb, size, size), dtype="f4",
            chunks=(per_chunk, nb, size, size),
        )  # fmt: skip
        self.coverage = self.f.create_dataset("coverage", (0, nb), maxshape=(None, nb), dtype="f4")
        self.pq = None
        if parquet_tmp is not None:
            import pyarrow.parquet as pq

            self.pq = pq.ParquetWriter(parquet_tmp, _cube_schema(nb, size, bands), compression="none")
        self.ids: list[np.ndarray] = []

    def append(self, object_id: np.ndarray, block: np.ndarray, coverage: np.ndarray, **columns) -> None:
        """Append a block of cubes with their ``coverage`` and any :data:`BAND_COLUMNS` (each (n, n_bands)); a
        column must come with every block once it came with the first."""
        block = np.ascontiguousarray(block, dtype=np.float32)
        n0, n = self.cubes.shape[0], len(block)
        unknown = set(columns) - set(BAND_COLUMNS)
        if unknown:
            raise ValueError(f"unknown per-band columns {sorted(unknown)} (known: {BAND_COLUMNS})")
        nb = len(self.bands)
        for name in columns:
            if name not in self.f and n0 == 0:
                self.f.create_dataset(name, (0, nb), maxshape=(None, nb), dtype="f4")
        for name in BAND_COLUMNS:
            if (name in self.f) != (name in columns):
                raise ValueError(f"per-band column {name!r} must come with every block or with none")
        if n == 0:
            return
        self.cubes.resize(n0 + n, axis=0)
        self.cubes[n0:] = block
        self.coverage.resize(n0 + n, axis=0)
        self.coverage[n0:] = coverage
        for name, values in columns.items():
            self.f[name].resize(n0 + n, axis=0)
            self.f[name][n0:] = np.asarray(values, dtype=np.float32)
        ids = np.asarray(object_id, dtype=np.int64)
        if self.pq is not None:
            import pyarrow as pa

            flat = pa.FixedSizeListArray.from_arrays(pa.array(block.reshape(-1)), block[0].size)
            self.pq.write_table(pa.Table.from_arrays([pa.array(ids), flat], schema=self.pq.schema))
        self.ids.append(ids)

    @property
    def object_id(self) -> np.ndarray:
        return np.concatenate(self.ids) if self.ids else np.zeros(0, np.int64)

    def finish(self, attrs: dict) -> None:
        """Write ``object_id`` and the attributes (``size`` and ``flux_convention`` by default, ``bands``), close."""
        self.f["object_id"] = self.object_id
        meta = {"size": self.size, "flux_convention": FLUX_CONVENTION, **attrs, "bands": self.bands}
        for key, value in meta.items():
            self.f.attrs[key] = value if value is not None else ""
        self.close()

    def close(self) -> None:
        if self.f:
            self.f.close()
            self.f = None
        if self.pq:
            self.pq.close()
            self.pq = None


@contextlib.contextmanager
def cube_writer(out, bands, size: int, parquet_pixels: bool = False, n: int | None = None):
    """A :class:`CubeWriter` of ``out`` (and of its Parquet pixel copy when ``parquet_pixels``), written atomically:
    the files take their final names only when the block ends without error, after ``writer.finish``. ``n``, when
    known, is the number of objects to come (it bounds the chunk size)."""
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(io.atomic_path(out))
        ptmp = stack.enter_context(io.atomic_path(cubes_parquet_path(out))) if parquet_pixels else None
        writer = CubeWriter(tmp, bands, size, ptmp, n)
        try:
            yield writer
        finally:
            writer.close()


def write_cutouts(result: dict, path, attrs: dict) -> None:
    """Write in-memory cutouts (``object_id``, ``cubes``, ``coverage``, ``bands``) as a cube file, atomically."""
    cubes = np.asarray(result["cubes"], dtype=np.float32)
    size = cubes.shape[2] if cubes.ndim == 4 else int(attrs.get("size", 0))
    columns = {name: result[name] for name in BAND_COLUMNS if name in result}
    with cube_writer(path, result["bands"], size, n=len(cubes)) as writer:
        writer.append(result["object_id"], cubes, np.asarray(result["coverage"], dtype=np.float32), **columns)
        writer.finish(attrs)


def finish_datacube(writer: CubeWriter, rows: pd.DataFrame, mean, std, n_folds: int, attrs: dict) -> None:
    """Complete a datacube: the per-object columns of ``rows`` (in the order appended), the fold statistics
    ``mean`` / ``std`` (n_folds, n_bands), the bit mask of bands without data and the datacube attributes."""
    f = writer.f
    f["z_spec"] = rows.z_spec.to_numpy(np.float32)
    f["ebv"] = rows.ebv.to_numpy(np.float32)
    f["fold"] = rows.fold.to_numpy().astype(np.int16)
    cov = writer.coverage[()]
    f["missing_bands"] = missing_mask(cov)
    f["norm_mean"], f["norm_std"] = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    writer.finish({**attrs, "n_folds": n_folds, "preprocessing": PREPROCESSING})


def missing_mask(coverage: np.ndarray) -> np.ndarray:
    """Bit mask (N,) of the bands without any data (coverage 0): bit k set for band k."""
    coverage = np.asarray(coverage)
    return ((coverage == 0) * (1 << np.arange(coverage.shape[1]))).sum(axis=1).astype(np.uint32)


def read_attrs(path) -> dict:
    """The attributes of a cube file as plain Python values, ``bands`` as a list of str."""
    with h5py.File(path, "r") as f:
        attrs = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in f.attrs.items()}
    if "bands" in attrs:
        attrs["bands"] = [str(b) for b in attrs["bands"]]
    return attrs


def load(path, cubes: bool = True) -> dict:
    """Read a cube file into memory: arrays by dataset name, plus ``attrs``; without ``cubes`` when ``cubes=False``."""
    with h5py.File(path, "r") as f:
        data = {key: f[key][()] for key in f if cubes or key != "cubes"}
        data["attrs"] = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in f.attrs.items()}
        data["attrs"]["n_objects"] = int(f["cubes"].shape[0])
    data["attrs"]["bands"] = [str(b) for b in data["attrs"]["bands"]]
    return data


def read_cubes_parquet(path) -> tuple[np.ndarray, np.ndarray, dict]:
    """Read a Parquet pixel copy back: ``object_id`` (N,), cubes float32 (N, n_bands, S, S) and its metadata.

    Reads the whole file (a fixed-size-list column is decoded by whole row groups, so it is no random-access
    format: train from the HDF5 store).
    """
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    shape = tuple(json.loads(meta["shape"]))
    cube = table.column("cube").combine_chunks()
    values = cube.values.to_numpy(zero_copy_only=False) if len(cube) else np.zeros(0, np.float32)
    cubes = values.astype(np.float32, copy=False).reshape((len(cube), *shape))
    info = {"shape": list(shape), "bands": json.loads(meta.get("bands", "[]"))}
    return table.column("object_id").to_numpy(), cubes, info


def read_columns(path, *names) -> tuple[np.ndarray, ...]:
    """Whole per-object datasets of a cube file (``object_id``, ``coverage``, ``z_spec`` ...), in file order."""
    with h5py.File(path, "r") as f:
        missing = [n for n in names if n not in f]
        if missing:
            raise KeyError(f"{path}: no dataset {missing} (it holds {sorted(f)})")
        return tuple(f[n][()] for n in names)
