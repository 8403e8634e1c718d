"""Training input: standardised batches of datacube rows, from memory when the cube fits and from the file when not.

Two sources of raw cubes read rows in the order asked for, so that a batch is the same whichever serves it:

- :class:`InMemoryCubes` — the whole cube, standardised once with the fold's statistics, on the training device
  (host or GPU); a batch is an index gather there (today's behaviour, and the fastest).
- :class:`MemmapCubes` — out of core: the file is opened once per process (also once per DataLoader worker, since
  it reopens itself after pickling) as a NumPy memmap, and each object is one contiguous block in it. That holds
  for the datacube's ``cubes`` (uncompressed, chunked along objects: an object is a slice of its chunk) and for
  any contiguous unfiltered dataset. A filtered (compressed) dataset falls back to :class:`H5Cubes`, a loop of
  ``ds[i]`` (h5py's fancy indexing ``ds[idx]`` is some 30 times slower than that loop).

:func:`open_cubes` picks in-memory when the standardised cube fits the memory budget (``max_memory_gb``, else the
``PHOTOZ_MAX_MEMORY_GB`` environment variable, else half the free memory of the device), and out-of-core
otherwise. Standardisation is elementwise, so a batch standardised alone equals the same rows of the cube
standardised at once, bit for bit; training is the same with either source and resumes exactly.

Every reader takes ``channels``, the indices of the bands a model reads (a model trained on a subset of the
survey's bands): rows then hold those channels only, in that order, and the memmap reader reads only their planes.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import h5py
import numpy as np
import torch

from pipeline.core.preprocess import standardise

log = logging.getLogger("pipeline.loader")

ENV_BUDGET = "PHOTOZ_MAX_MEMORY_GB"


def _channels(channels, n_channels: int, where) -> list[int] | None:
    """Checked channel indices; None (read every channel, in order) for None and for every channel in order."""
    if channels is None:
        return None
    channels = [int(c) for c in channels]
    if not channels or len(set(channels)) != len(channels) or not all(0 <= c < n_channels for c in channels):
        raise ValueError(f"{where}: channels {channels} must be distinct indices in [0, {n_channels})")
    return None if channels == list(range(n_channels)) else channels


class _FileRows:
    """What the readers of a file share: ``shape`` with the channels kept (indices along axis 1, in that order),
    and a handle opened lazily, once per process (dropped on pickling, so that a DataLoader worker reopens it)."""

    def __init__(self, path, dataset: str = "cubes", channels=None):
        self.path, self.dataset = str(path), dataset
        with h5py.File(self.path, "r") as f:
            shape = tuple(f[dataset].shape)
        self.channels = _channels(channels, shape[1], f"{path}:{dataset}")
        self.shape = shape if self.channels is None else (shape[0], len(self.channels), *shape[2:])
        self._handle = None

    def __len__(self) -> int:
        return self.shape[0]

    def __getstate__(self):
        return {**self.__dict__, "_handle": None}

    def close(self) -> None:
        self._handle = None


class H5Cubes(_FileRows):
    """Raw rows of an HDF5 dataset read one object at a time (any layout, filters included).

    ``channels`` (indices along axis 1) keeps those channels only, in that order.
    """

    kind = "h5py"

    def _ds(self):
        if self._handle is None:
            self._handle = h5py.File(self.path, "r")
        return self._handle[self.dataset]

    def take(self, idx) -> np.ndarray:
        ds = self._ds()
        out = np.empty((len(idx), *self.shape[1:]), np.float32)
        for k, i in enumerate(np.asarray(idx, dtype=np.int64)):
            out[k] = ds[int(i)] if self.channels is None else ds[int(i)][self.channels]
        return out

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
        super().close()


def object_offsets(path, dataset: str = "cubes") -> np.ndarray | None:
    """Byte offset of every object (row) of an unfiltered float32 dataset in its file, or None if it has none.

    A contiguous dataset has one offset (``ds.id.get_offset()``); a chunked one, chunked whole along the other
    axes, has one per chunk, and the rows of a chunk follow each other in it.
    """
    with h5py.File(path, "r") as f:
        ds = f[dataset]
        if ds.dtype != np.float32 or len(ds) == 0:
            return None
        row_bytes = int(np.prod(ds.shape[1:])) * 4
        rows = np.arange(len(ds), dtype=np.int64)
        if ds.chunks is None:
            offset = ds.id.get_offset()
            return None if offset is None else offset + rows * row_bytes
        if ds.id.get_create_plist().get_nfilters() or tuple(ds.chunks[1:]) != tuple(ds.shape[1:]):
            return None
        per_chunk = ds.chunks[0]
        starts = np.empty((len(ds) + per_chunk - 1) // per_chunk, np.int64)
        for c in range(len(starts)):
            info = ds.id.get_chunk_info_by_coord((c * per_chunk,) + (0,) * (ds.ndim - 1))
            if info.byte_offset is None or info.filter_mask:
                return None  # an unallocated chunk
            starts[c] = info.byte_offset
        return starts[rows // per_chunk] + (rows % per_chunk) * row_bytes


class MemmapCubes(_FileRows):
    """Raw rows of an uncompressed HDF5 dataset read through a NumPy memmap of the file (out of core, fast).

    ``channels`` (indices along axis 1) keeps those channels only, in that order; only their planes are read, one
    block per run of consecutive channels.
    """

    kind = "memmap"

    def __init__(self, path, dataset: str = "cubes", offsets: np.ndarray | None = None, channels=None):
        super().__init__(path, dataset, channels)
        self.offsets = object_offsets(path, dataset) if offsets is None else offsets
        if self.offsets is None:
            raise ValueError(f"{path}:{dataset} is compressed or not float32: it cannot be memory-mapped")
        self.row = int(np.prod(self.shape[1:]))
        # (source byte offset in the object, byte offset in the output row, bytes) of each run of channels
        plane = int(np.prod(self.shape[2:])) * 4
        chans = range(self.shape[1]) if self.channels is None else self.channels
        runs = []
        for pos, c in enumerate(chans):
            if runs and c == runs[-1][2]:
                runs[-1][2] += 1
            else:
                runs.append([c, pos, c + 1])
        self.runs = [(c0 * plane, pos * plane, (c1 - c0) * plane) for c0, pos, c1 in runs]

    def take(self, idx) -> np.ndarray:
        if self._handle is None:
            self._handle = np.memmap(self.path, dtype=np.uint8, mode="r")
        mm = self._handle
        out = np.empty((len(idx), self.row), np.float32)
        view = out.view(np.uint8)
        if len(self.runs) == 1:  # all channels, or one run of them: one copy per object
            ((src, dst, nbytes),) = self.runs
            for k, i in enumerate(np.asarray(idx, dtype=np.int64)):
                o = self.offsets[i] + src
                view[k, dst : dst + nbytes] = mm[o : o + nbytes]
        else:
            for k, i in enumerate(np.asarray(idx, dtype=np.int64)):
                o = self.offsets[i]
                for src, dst, nbytes in self.runs:
                    view[k, dst : dst + nbytes] = mm[o + src : o + src + nbytes]
        return out.reshape((len(idx), *self.shape[1:]))


def file_source(path, dataset: str = "cubes", channels=None):
    """The fastest out-of-core reader of a dataset: a memmap when it is uncompressed, else a loop of ``ds[i]``.

    ``channels``: indices of the channels (bands) to read, in that order; None reads them all.
    """
    offsets = object_offsets(path, dataset)
    if offsets is not None:
        return MemmapCubes(path, dataset, offsets, channels=channels)
    return H5Cubes(path, dataset, channels=channels)


class Rows:
    """A lazy (len, slice) view of some rows of a source, for readers that walk a subset batch by batch."""

    def __init__(self, source, idx):
        self.source, self.idx = source, np.asarray(idx, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, sl: slice) -> np.ndarray:
        return self.source.take(self.idx[sl])


class InMemoryCubes:
    """The whole cube standardised once on ``device``; a batch is a gather there."""

    kind = "memory"

    def __init__(self, source, mean, std, device, block: int = 1024):
        n = len(source)
        self.raw, self.device = source, torch.device(device)
        self.x = torch.empty(source.shape, dtype=torch.float32, device=self.device)
        mean_t, std_t = torch.as_tensor(mean, dtype=torch.float32), torch.as_tensor(std, dtype=torch.float32)
        for start in range(0, n, block):  # block by block: the host never holds a second copy of the whole cube
            raw = torch.from_numpy(source.take(np.arange(start, min(start + block, n))))
            self.x[start : start + len(raw)] = standardise(raw, mean_t, std_t).to(self.device)

    def __len__(self) -> int:
        return self.x.shape[0]

    def batch(self, idx) -> torch.Tensor:
        idx = torch.as_tensor(idx).to(self.device)
        return self.x[idx]


class StreamingCubes:
    """Standardised batches read from the file for each batch (host memory holds one batch at a time)."""

    kind = "stream"

    def __init__(self, source, mean, std, device):
        self.raw, self.device = source, torch.device(device)
        self.mean = torch.as_tensor(mean, dtype=torch.float32)
        self.std = torch.as_tensor(std, dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.raw)

    def batch(self, idx) -> torch.Tensor:
        idx = np.asarray(torch.as_tensor(idx).cpu())
        x = standardise(torch.from_numpy(self.raw.take(idx)), self.mean, self.std)
        return x.to(self.device, non_blocking=True)


def memory_budget(device, max_memory_gb: float | None = None) -> float:
    """Bytes the in-memory cube may take: the argument, else ``$PHOTOZ_MAX_MEMORY_GB``, else half the free memory."""
    if max_memory_gb is None and os.environ.get(ENV_BUDGET):
        max_memory_gb = float(os.environ[ENV_BUDGET])
    if max_memory_gb is not None:
        return max_memory_gb * 2**30
    device = torch.device(device)
    if device.type == "cuda":
        return 0.5 * torch.cuda.mem_get_info(device)[0]
    try:
        return 0.5 * os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 * 2**30


def open_cubes(path, mean, std, device, max_memory_gb: float | None = None, dataset: str = "cubes", channels=None):
    """Standardised batches of the datacube's cubes: in memory on ``device`` when they fit the budget, else streamed.

    ``channels`` selects the bands (indices along axis 1, in the order given; None: all), and ``mean`` / ``std``
    are those of the selected channels. Returns an object with ``batch(idx) -> tensor (B, n_channels, S, S)`` on
    ``device``, ``kind`` ('memory' or 'stream') and ``raw`` (the out-of-core reader of the raw cubes, same
    channels, with ``take(idx)``).
    """
    raw = file_source(path, dataset, channels)
    for name, stat in (("mean", mean), ("std", std)):
        if np.shape(stat) != (raw.shape[1],):
            raise ValueError(f"{name} has shape {np.shape(stat)}: expected one value per channel read, {raw.shape[1]}")
    need = float(np.prod(raw.shape)) * 4
    budget = memory_budget(device, max_memory_gb)
    if need <= budget:
        cubes = InMemoryCubes(raw, mean, std, device)
    else:
        cubes = StreamingCubes(raw, mean, std, device)
    log.info(
        "cubes of %s: %.2f GB, budget %.2f GB on %s: %s (%s reader)",
        Path(path).name, need / 1e9, budget / 1e9, device, cubes.kind, raw.kind,
    )  # fmt: skip
    return cubes
