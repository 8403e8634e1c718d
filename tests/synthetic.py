"""Small synthetic cutout shards and training catalogs for the datacube, training and ensemble tests."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd

BANDS = ["g", "r", "i"]


def galaxies(n: int, size: int = 16, seed: int = 0):
    """Gaussian blobs whose colour follows z, so that a network has something to learn: cubes (n, 3, size, size)."""
    rng = np.random.default_rng(seed)
    z = rng.uniform(0.02, 0.35, n)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    blob = np.exp(-(xx**2 + yy**2) / (2 * 2.0**2))
    colour = np.stack([1.0 - 2 * z, np.ones(n), 1.0 + 3 * z], axis=1) * rng.uniform(5, 20, (n, 1))
    cubes = colour[:, :, None, None] * blob + rng.normal(0, 0.05, (n, len(BANDS), size, size))
    return cubes.astype(np.float32), z


def write_shard(path, object_id, cubes, coverage=None) -> None:
    with h5py.File(path, "w") as f:
        f["cubes"] = cubes
        f["object_id"] = np.asarray(object_id, dtype=np.int64)
        f["coverage"] = np.ones(cubes.shape[:2], np.float32) if coverage is None else coverage
        f.attrs["bands"] = BANDS
        f.attrs["size"] = cubes.shape[-1]
        f.attrs["pixel_scale_arcsec"] = 0.4


def make_datacube(tmp_path, n: int = 120, size: int = 16, n_folds: int = 5, parquet_pixels: bool = False):
    """Two shards and a training catalog packed into a datacube; returns (cube path, training catalog)."""
    from pipeline.core.folds import assign_folds
    from pipeline.steps import pack

    cubes, z = galaxies(n, size)
    ids = np.arange(10, 10 + n)
    write_shard(tmp_path / "s0.h5", ids[: n // 2], cubes[: n // 2])
    write_shard(tmp_path / "s1.h5", ids[n // 2 :], cubes[n // 2 :])
    training = pd.DataFrame(
        {"object_id": ids, "z_spec": z, "ebv": 0.02, "mag_r": 17.0, "fold": assign_folds(n, n_folds, 0)}
    )
    path = tmp_path / "train.h5"
    pack.pack(training, [tmp_path / "s0.h5", tmp_path / "s1.h5"], path, 0.9, n_folds, parquet_pixels=parquet_pixels)
    return path, training


def train_config(epochs: int = 2, **training) -> dict:
    from pipeline.core.config import validate_config

    cfg = {
        "training": {"epochs": epochs, "batch_size": 16, "lr": 0.003, **training},
        "zgrid": {"z_min": 0.0, "z_max": 0.4, "n_bins": 20},
        "models": {"tiny": {"arch": "baseline", "options": {"width": 0.05}}},
    }
    return validate_config(cfg, sections=("training", "zgrid", "models"))
