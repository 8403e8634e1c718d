"""The paper's input preprocessing (Section 3.1): P19 dynamic-range compression, then per-band standardisation.

The standardisation statistics come from the training part of each fold only (computed by ``photoz pack``), so
the test fold never leaks into them.

A band without data for an object (no tile covers it: its cutout plane is zero-filled, ``coverage`` 0, flagged in
the datacube's ``missing_bands``) is the paper's zero padding (Sec. 2.3): its pixels never enter the statistics,
and its network input is exactly 0 after compression and standardisation, not ``-mean / std``. A plane is missing
when every one of its pixels is exactly 0, which no observed plane with noise is.
"""

from __future__ import annotations

import numpy as np


def compress(x):
    """x_c = sign(x) (sqrt(|x| + 1) - 1), for NumPy arrays and torch tensors alike."""
    if isinstance(x, np.ndarray):
        return np.sign(x) * (np.sqrt(np.abs(x) + 1.0) - 1.0)
    import torch

    return torch.sign(x) * (torch.sqrt(torch.abs(x) + 1.0) - 1.0)


def missing_planes(cubes):
    """(N, n_bands) True where a band's plane is all zeros (no data), for NumPy arrays and torch tensors alike."""
    if isinstance(cubes, np.ndarray):
        return ~cubes.any(axis=(-2, -1))
    return ~cubes.bool().any(dim=-1).any(dim=-1)


def band_moments(cubes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-object, per-band sums of x_c and x_c**2 over pixels, (N, n_bands) each in float64, and the bands with
    data (N, n_bands) bool: a missing plane sums to 0 and does not count."""
    xc = compress(cubes.astype(np.float64, copy=False))
    return xc.sum(axis=(2, 3)), (xc * xc).sum(axis=(2, 3)), ~missing_planes(cubes)


def fold_statistics(s1, s2, n_pix: int, fold, n_folds: int, present=None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (n_folds, n_bands) of x_c over the objects outside each fold, each band over
    the objects that have data in it (``present`` (N, n_bands); default: all)."""
    present = np.ones(s1.shape, bool) if present is None else np.asarray(present, bool)
    mean = np.empty((n_folds, s1.shape[1]))
    std = np.empty_like(mean)
    for f in range(n_folds):
        train = fold != f
        n = present[train].sum(axis=0) * n_pix
        if not train.any():
            raise ValueError(f"fold {f}: no training objects outside it")
        if (n == 0).any():
            raise ValueError(f"fold {f}: band(s) {np.flatnonzero(n == 0).tolist()} have no data outside the fold")
        m = s1[train].sum(axis=0) / n
        mean[f] = m
        std[f] = np.sqrt(np.maximum(s2[train].sum(axis=0) / n - m * m, 1e-12))
    return mean.astype(np.float32), std.astype(np.float32)


def standardise(x, mean, std):
    """Compress, then centre and scale each band: x (B, n_bands, H, W), mean and std (n_bands,); the planes of
    missing bands (all zeros) stay exactly 0."""
    out = (compress(x) - mean[:, None, None]) / std[:, None, None]
    missing = missing_planes(x)
    if missing.any():
        out[missing] = 0
    return out


class FoldStatistics:
    """Accumulates the per-object moments of blocks of raw cubes, then gives :func:`fold_statistics` of them.

    Writers stream a datacube block by block; each block's moments are kept (two floats per object and band), so
    memory holds one block of pixels at a time.
    """

    def __init__(self):
        self.s1, self.s2, self.present = [], [], []

    def add(self, cubes: np.ndarray) -> None:
        s1, s2, present = band_moments(cubes)
        self.s1.append(s1)
        self.s2.append(s2)
        self.present.append(present)

    def result(self, n_pix: int, fold, n_folds: int) -> tuple[np.ndarray, np.ndarray]:
        s1, s2, present = (np.concatenate(x) for x in (self.s1, self.s2, self.present))
        return fold_statistics(s1, s2, n_pix, fold, n_folds, present)
