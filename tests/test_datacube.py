"""The datacube store: join, coverage cut, per-fold statistics that never see the test fold."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest

from pipeline import datacube, preprocess

from synthetic import galaxies, make_datacube, write_shard


def test_pack_joins_and_orders(tmp_path):
    path, training = make_datacube(tmp_path, n=60)
    data = datacube.load(path)
    view = pd.read_parquet(path.with_suffix(".parquet"))
    assert data["cubes"].shape == (60, 3, 16, 16)
    assert view.object_id.tolist() == data["object_id"].tolist()
    cat = training.set_index("object_id").loc[data["object_id"]]
    assert np.allclose(data["z_spec"], cat.z_spec) and (data["fold"] == cat.fold).all()
    assert data["attrs"]["bands"] == ["g", "r", "i"] and data["attrs"]["n_folds"] == 5


def test_fold_statistics_exclude_the_test_fold(tmp_path):
    path, _ = make_datacube(tmp_path, n=60)
    data = datacube.load(path)
    for f in range(5):
        xc = preprocess.compress(data["cubes"][data["fold"] != f].astype(np.float64))
        assert np.allclose(data["norm_mean"][f], xc.mean(axis=(0, 2, 3)), rtol=1e-5)
        assert np.allclose(data["norm_std"][f], xc.std(axis=(0, 2, 3)), rtol=1e-4)
    assert not np.allclose(data["norm_mean"][0], data["norm_mean"][1])


def test_coverage_cut_and_missing_bands(tmp_path):
    cubes, z = galaxies(20)
    coverage = np.ones((20, 3), np.float32)
    coverage[3] = [1.0, 0.5, 1.0]  # below the cut: dropped
    coverage[4] = [0.0, 1.0, 1.0]  # a missing band, kept when the cut allows it
    cubes[4, 0] = 0
    write_shard(tmp_path / "s.h5", np.arange(20), cubes, coverage)
    training = pd.DataFrame({"object_id": np.arange(20), "z_spec": z, "ebv": 0.0, "fold": np.arange(20) % 2})
    datacube.pack(training, [tmp_path / "s.h5"], tmp_path / "a.h5", min_coverage=0.9, n_folds=2)
    with h5py.File(tmp_path / "a.h5") as f:
        assert 3 not in f["object_id"][()] and 4 not in f["object_id"][()]
    datacube.pack(training, [tmp_path / "s.h5"], tmp_path / "b.h5", min_coverage=0.0, n_folds=2)
    with h5py.File(tmp_path / "b.h5") as f:
        ids = f["object_id"][()].tolist()
        assert f["missing_bands"][ids.index(4)] == 1 and f["missing_bands"][ids.index(5)] == 0


def test_nothing_matches_is_an_error(tmp_path):
    cubes, _ = galaxies(5)
    write_shard(tmp_path / "s.h5", np.arange(5), cubes)
    training = pd.DataFrame({"object_id": [100], "z_spec": [0.1], "ebv": [0.0], "fold": [0]})
    with pytest.raises(ValueError, match="none of the training objects"):
        datacube.pack(training, [tmp_path / "s.h5"], tmp_path / "c.h5", 0.9, 2)
    assert not (tmp_path / "c.h5").exists()


def test_compression_formula():
    x = np.array([-3.0, 0.0, 3.0])
    assert np.allclose(preprocess.compress(x), [-1.0, 0.0, 1.0])
