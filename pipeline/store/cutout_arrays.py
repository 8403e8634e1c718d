"""Cutout arrays made elsewhere: the one reader of the files ``photoz import-cube`` accepts.

A survey's cutout service, or a public datacube, hands over one array of N cutouts with C bands, bands first
(N, C, H, W) or last (N, H, W, C) (or (N, H, W) for one band), as ``.npy``, ``.npz``, HDF5 (``.h5``, ``.hdf5``) or
FITS (an image HDU, NAXIS4 = N). :func:`open_array` opens it without reading it and :meth:`CutoutArray.blocks`
yields it in row blocks, always as (n, C, H, W), so that memory holds one block whatever the size of the file:
``.npy`` through a memory map, ``.npz`` streamed from the archive member, HDF5 by slices, FITS through
``ImageHDU.section``.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["CutoutArray", "open_array", "npz_record_array", "FORMATS"]

FORMATS = (".npy", ".npz", ".h5", ".hdf5", ".hdf", ".fits", ".fit", ".fits.fz", ".fits.gz")
DEFAULT_KEYS = ("cube", "cubes", "cutouts", "images")


@dataclass
class CutoutArray:
    """An opened cutout array: ``shape`` as stored, the ``bands_axis`` found, and a reader of row blocks."""

    path: Path
    shape: tuple
    bands_axis: str  # "first" or "last"
    _read: object = field(repr=False)  # (start, stop) -> ndarray as stored
    _close: object = field(repr=False, default=None)

    @property
    def n(self) -> int:
        return int(self.shape[0])

    @property
    def n_bands(self) -> int:
        return 1 if len(self.shape) == 3 else int(self.shape[1] if self.bands_axis == "first" else self.shape[3])

    @property
    def image_shape(self) -> tuple[int, int]:
        if len(self.shape) == 3:
            return tuple(self.shape[1:])
        return tuple(self.shape[2:] if self.bands_axis == "first" else self.shape[1:3])

    def blocks(self, block: int) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(start, cubes)``, cubes float32 (n, C, H, W), ``block`` rows at a time."""
        for start in range(0, self.n, block):
            raw = np.asarray(self._read(start, min(start + block, self.n)))
            if raw.ndim == 3:
                raw = raw[:, None]
            elif self.bands_axis == "last":
                raw = raw.transpose(0, 3, 1, 2)
            yield start, np.ascontiguousarray(raw, dtype=np.float32)

    def close(self) -> None:
        if self._close is not None:
            self._close()
            self._close = None


def _bands_axis(path, shape, n_bands: int, bands_axis: str) -> str:
    """Which axis holds the bands, checked against the number of band names."""
    if len(shape) == 3:
        if n_bands != 1:
            raise ValueError(f"{path}: the cutouts have shape {shape}, one band, but {n_bands} band names are given")
        return "first"
    if len(shape) != 4:
        raise ValueError(f"{path}: the cutouts have shape {shape}: expected (N, C, H, W) or (N, H, W, C)")
    axes = {"first": shape[1], "last": shape[3]}
    if bands_axis == "auto":
        fits = [a for a, size in axes.items() if size == n_bands]
        if len(fits) == 2 and shape[1] != shape[2]:  # (N, C, S, S) with C == S is rare; square images decide
            fits = ["first"] if shape[2] == shape[3] else ["last"]
        if not fits:
            raise ValueError(
                f"{path}: the cutouts have shape {shape}, with neither axis 1 (bands first) nor axis 3 (bands last) "
                f"of length {n_bands}, the number of band names given"
            )
        if len(fits) == 2:
            raise ValueError(
                f"{path}: shape {shape} is ambiguous, bands first or last: set survey.cube.bands_axis (--bands-axis)"
            )
        return fits[0]
    if axes[bands_axis] != n_bands:
        raise ValueError(
            f"{path}: the cutouts have {axes[bands_axis]} bands on axis {1 if bands_axis == 'first' else 3} "
            f"(bands {bands_axis}, shape {shape}) but {n_bands} band names are given"
        )
    return bands_axis


def _npz_header(zf: zipfile.ZipFile, name: str):
    """An open stream of archive member ``name`` positioned at its data, its shape, dtype and Fortran flag."""
    fp = zf.open(name)
    version = np.lib.format.read_magic(fp)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read_header(fp)
    return fp, tuple(shape), dtype, fortran


def _npz_member(zf: zipfile.ZipFile, key: str, path):
    """An open stream positioned at the data of ``key`` in the archive, with its shape and dtype."""
    name = key if key in zf.namelist() else f"{key}.npy"
    if name not in zf.namelist():
        names = [n.removesuffix(".npy") for n in zf.namelist()]
        raise KeyError(f"{path}: no array {key!r} in the archive (it has {names})")
    fp, shape, dtype, fortran = _npz_header(zf, name)
    if fortran:
        fp.close()
        raise ValueError(f"{path}: {key} is stored in Fortran order: save it C-contiguous")
    return fp, shape, dtype


def _default_key(path, candidates: dict) -> str:
    """``cube``/``cubes``/... if present, else the only candidate with 3 or 4 axes."""
    for key in DEFAULT_KEYS:
        if key in candidates:
            return key
    arrays = [k for k, shape in candidates.items() if len(shape) in (3, 4)]
    if len(arrays) != 1:
        raise KeyError(
            f"{path}: cannot tell which array holds the cutouts among {sorted(candidates)}: name it in "
            "survey.cube.key (--key)"
        )
    return arrays[0]


def _open_npz(path, key):
    zf = zipfile.ZipFile(path)
    if key is None:
        shapes = {}
        for name in zf.namelist():
            fp, shape, _, _ = _npz_header(zf, name)
            fp.close()
            shapes[name.removesuffix(".npy")] = shape
        key = _default_key(path, shapes)
    fp, shape, dtype = _npz_member(zf, key, path)
    row = int(np.prod(shape[1:])) * dtype.itemsize
    state = {"next": 0}

    def read(start, stop):
        # the member is a stream: blocks are read in order, as blocks() asks for them
        if start != state["next"]:
            raise RuntimeError("npz members are read in order")
        buf = fp.read((stop - start) * row)
        if len(buf) != (stop - start) * row:
            raise ValueError(f"{path}: array {key!r} is truncated")
        state["next"] = stop
        return np.frombuffer(buf, dtype=dtype).reshape((stop - start, *shape[1:]))

    def close():
        fp.close()
        zf.close()

    return tuple(shape), read, close


def _open_hdf5(path, key):
    import h5py

    f = h5py.File(path, "r")
    if key is None:
        shapes = {}
        f.visititems(lambda name, obj: shapes.__setitem__(name, obj.shape) if isinstance(obj, h5py.Dataset) else None)
        key = _default_key(path, shapes)
    if key not in f or not isinstance(f[key], h5py.Dataset):
        f.close()
        raise KeyError(f"{path}: no dataset {key!r}")
    dset = f[key]
    return tuple(dset.shape), lambda a, b: dset[a:b], f.close


def _open_fits(path, key):
    from astropy.io import fits

    hdul = fits.open(path, memmap=True)
    if key is None:
        images = [i for i, h in enumerate(hdul) if h.is_image and h.header.get("NAXIS", 0) in (3, 4)]
        if len(images) != 1:
            hdul.close()
            raise KeyError(f"{path}: {len(images)} image HDUs with 3 or 4 axes: name one in survey.cube.key (--key)")
        hdu = hdul[images[0]]
    else:
        try:
            hdu = hdul[int(key) if str(key).isdigit() else key]
        except (KeyError, IndexError):
            hdul.close()
            raise KeyError(f"{path}: no HDU {key!r}") from None
    shape = tuple(hdu.shape)
    return shape, lambda a, b: hdu.section[a:b], hdul.close


def _open_npy(path, key):
    arr = np.load(path, mmap_mode="r", allow_pickle=False)
    return tuple(arr.shape), lambda a, b: arr[a:b], None


def _format(path: Path) -> str:
    name = path.name.lower()
    for suffix, kind in ((".npy", "npy"), (".npz", "npz"), (".h5", "hdf5"), (".hdf5", "hdf5"), (".hdf", "hdf5")):
        if name.endswith(suffix):
            return kind
    if name.endswith((".fits", ".fit", ".fits.fz", ".fits.gz")):
        return "fits"
    raise ValueError(f"{path}: unknown cutout file format (expected {', '.join(FORMATS)})")


def open_array(path, n_bands: int, key: str | None = None, bands_axis: str = "auto") -> CutoutArray:
    """Open a cutout array without reading it; check its bands against ``n_bands``.

    Parameters
    ----------
    path : path
        ``.npy``, ``.npz``, ``.h5``/``.hdf5`` or ``.fits`` file.
    n_bands : int
        Number of band names (C).
    key : str, optional
        Array name (npz, HDF5) or HDU name or index (FITS); by default ``cube``/``cubes``/``cutouts``/``images``,
        else the only array with 3 or 4 axes.
    bands_axis : {"auto", "first", "last"}
        Where the bands are; ``auto`` takes the axis of length ``n_bands``.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"cutout file not found: {path}")
    opener = {"npy": _open_npy, "npz": _open_npz, "hdf5": _open_hdf5, "fits": _open_fits}[_format(path)]
    shape, read, close = opener(path, key)
    try:
        axis = _bands_axis(path, shape, n_bands, bands_axis)
    except ValueError:
        if close:
            close()
        raise
    return CutoutArray(path, shape, axis, read, close)


def npz_record_array(path, key: str = "labels"):
    """A record array stored in an ``.npz`` (the P19 ``labels``), as a DataFrame."""
    import pandas as pd

    with np.load(path, allow_pickle=False) as archive:
        if key not in archive.files:
            raise KeyError(f"{path}: no record array {key!r} (the archive holds {archive.files}): give a catalogue")
        return pd.DataFrame.from_records(archive[key])
