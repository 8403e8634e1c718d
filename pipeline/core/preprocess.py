"""The paper's input preprocessing (Section 3.1): P19 dynamic-range compression, then per-band standardisation.

The standardisation statistics come from the training part of each fold only (computed by ``photoz pack``), so
the test fold never leaks into them.
"""

from __future__ import annotations

import numpy as np


def compress(x):
    """x_c = sign(x) (sqrt(|x| + 1) - 1), for NumPy arrays and torch tensors alike."""
    if isinstance(x, np.ndarray):
        return np.sign(x) * (np.sqrt(np.abs(x) + 1.0) - 1.0)
    import torch

    return torch.sign(x) * (torch.sqrt(torch.abs(x) + 1.0) - 1.0)


def band_moments(cubes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-object, per-band sums of x_c and x_c**2 over pixels: (N, n_bands) each, in float64."""
    xc = compress(cubes.astype(np.float64, copy=False))
    return xc.sum(axis=(2, 3)), (xc * xc).sum(axis=(2, 3))


def fold_statistics(s1, s2, n_pix: int, fold, n_folds: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (n_folds, n_bands) of x_c over every object outside each fold."""
    mean = np.empty((n_folds, s1.shape[1]))
    std = np.empty_like(mean)
    for f in range(n_folds):
        train = fold != f
        n = train.sum() * n_pix
        if n == 0:
            raise ValueError(f"fold {f}: no training objects outside it")
        m = s1[train].sum(axis=0) / n
        mean[f] = m
        std[f] = np.sqrt(np.maximum(s2[train].sum(axis=0) / n - m * m, 1e-12))
    return mean.astype(np.float32), std.astype(np.float32)


def standardise(x, mean, std):
    """Compress, then centre and scale each band: x (B, n_bands, H, W), mean and std (n_bands,)."""
    return (compress(x) - mean[:, None, None]) / std[:, None, None]


class FoldStatistics:
    """Accumulates the per-object moments of blocks of raw cubes, then gives :func:`fold_statistics` of them.

    Writers stream a datacube block by block; each block's moments are kept (two floats per object and band), so
    memory holds one block of pixels at a time.
    """

    def __init__(self):
        self.s1, self.s2 = [], []

    def add(self, cubes: np.ndarray) -> None:
        s1, s2 = band_moments(cubes)
        self.s1.append(s1)
        self.s2.append(s2)

    def result(self, n_pix: int, fold, n_folds: int) -> tuple[np.ndarray, np.ndarray]:
        return fold_statistics(np.concatenate(self.s1), np.concatenate(self.s2), n_pix, fold, n_folds)
