"""The datacube store: join, coverage cut, per-fold statistics that never see the test fold."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pyarrow
import pyarrow.parquet
import pytest

from pipeline.core import preprocess
from pipeline.steps import pack
from pipeline.store import cubes as store

from synthetic import galaxies, make_datacube, write_shard


def test_pack_joins_and_orders(tmp_path):
    path, training = make_datacube(tmp_path, n=60)
    data = store.load(path)
    view = pd.read_parquet(path.with_suffix(".parquet"))
    assert data["cubes"].shape == (60, 3, 16, 16)
    assert view.object_id.tolist() == data["object_id"].tolist()
    cat = training.set_index("object_id").loc[data["object_id"]]
    assert np.allclose(data["z_spec"], cat.z_spec) and (data["fold"] == cat.fold).all()
    assert data["attrs"]["bands"] == ["g", "r", "i"] and data["attrs"]["n_folds"] == 5
    assert not store.cubes_parquet_path(path).exists()  # the Parquet pixel copy only when asked for


def test_fold_statistics_exclude_the_test_fold(tmp_path):
    path, _ = make_datacube(tmp_path, n=60)
    data = store.load(path)
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
    pack.pack(training, [tmp_path / "s.h5"], tmp_path / "a.h5", min_coverage=0.9, n_folds=2)
    with h5py.File(tmp_path / "a.h5") as f:
        assert 3 not in f["object_id"][()] and 4 not in f["object_id"][()]
    pack.pack(training, [tmp_path / "s.h5"], tmp_path / "m.h5", 0.9, 2, allow_missing_bands=True)
    with h5py.File(tmp_path / "m.h5") as f:
        assert 3 not in f["object_id"][()] and 4 in f["object_id"][()]  # a band of no data is exempt, 0.5 is not
    pack.pack(training, [tmp_path / "s.h5"], tmp_path / "b.h5", min_coverage=0.0, n_folds=2)
    with h5py.File(tmp_path / "b.h5") as f:
        ids = f["object_id"][()].tolist()
        assert f["missing_bands"][ids.index(4)] == 1 and f["missing_bands"][ids.index(5)] == 0


def test_nothing_matches_is_an_error(tmp_path):
    cubes, _ = galaxies(5)
    write_shard(tmp_path / "s.h5", np.arange(5), cubes)
    training = pd.DataFrame({"object_id": [100], "z_spec": [0.1], "ebv": [0.0], "fold": [0]})
    with pytest.raises(ValueError, match="none of the training objects"):
        pack.pack(training, [tmp_path / "s.h5"], tmp_path / "c.h5", 0.9, 2)
    assert not (tmp_path / "c.h5").exists()


def test_compression_formula():
    x = np.array([-3.0, 0.0, 3.0])
    assert np.allclose(preprocess.compress(x), [-1.0, 0.0, 1.0])


def test_cube_parquet_reads_back_identical_arrays(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "ROW_GROUP_OBJECTS", 16)  # several row groups per shard
    path, _ = make_datacube(tmp_path, n=70, parquet_pixels=True)
    data = store.load(path)
    pq_path = store.cubes_parquet_path(path)
    assert pq_path.name == "train.cubes.parquet"
    object_id, cubes, info = store.read_cubes_parquet(pq_path)
    assert np.array_equal(object_id, data["object_id"])
    assert cubes.dtype == np.float32 and np.array_equal(cubes, data["cubes"])
    assert info == {"shape": [3, 16, 16], "bands": ["g", "r", "i"]}
    meta = pyarrow.parquet.ParquetFile(pq_path)
    cube_type = meta.schema_arrow.field("cube").type
    assert meta.num_row_groups > 2 and pyarrow.types.is_fixed_size_list(cube_type) and cube_type.list_size == 768
    # the catalog view is unchanged: catalog columns only, same row order
    view = pd.read_parquet(path.with_suffix(".parquet"))
    assert "cube" not in view.columns and view.object_id.tolist() == object_id.tolist()


def _p19_npz(path, n=30, size=8, seed=1, **fields):
    rng = np.random.default_rng(seed)
    cube = rng.normal(0, 1, (n, size, size, 5)).astype(np.float32)
    cube[2, :, :, 0] = 0  # u missing: zero-filled
    names = {"z": "z", "ebv": "ebv", **fields}
    labels = np.zeros(n, dtype=[(names["z"], "f4"), (names["ebv"], "f4"), ("ra", "f8")])
    labels[names["z"]] = rng.uniform(0, 0.3, n)
    labels[names["ebv"]] = rng.uniform(0, 0.1, n)
    labels["ra"] = np.arange(n)
    np.savez(path, cube=cube, labels=labels)
    return cube, labels


def test_import_cube_writes_the_pack_store(tmp_path, monkeypatch):
    from pipeline.cli import main as cli
    from pipeline.core.folds import assign_folds
    from pipeline.steps import import_cube

    monkeypatch.setattr(store, "ROW_GROUP_OBJECTS", 7)  # streamed in several blocks
    cube, labels = _p19_npz(tmp_path / "p19.npz")
    cli(["import-cube", "--npz", str(tmp_path / "p19.npz"), "--out", str(tmp_path / "sdss.h5"), "--seed", "3",
         "--parquet-pixels"])  # fmt: skip
    data = store.load(tmp_path / "sdss.h5")
    assert data["cubes"].shape == (30, 5, 8, 8)
    assert np.array_equal(data["cubes"], cube.transpose(0, 3, 1, 2))  # N x H x W x C -> N x C x H x W
    assert data["attrs"]["bands"] == list("ugriz") and data["attrs"]["n_folds"] == 5
    assert np.array_equal(data["fold"], assign_folds(30, 5, 3))
    assert np.allclose(data["z_spec"], labels["z"]) and np.allclose(data["ebv"], labels["ebv"])
    assert data["missing_bands"][2] == 1 and (np.delete(data["missing_bands"], 2) == 0).all()
    for f in range(5):  # the same statistics pack computes, never from the test fold nor from a missing band
        rows = data["fold"] != f
        xc = preprocess.compress(data["cubes"][rows].astype(np.float64))
        present = ~((data["missing_bands"][rows, None] >> np.arange(5)) & 1).astype(bool)
        mean = (xc.sum(axis=(2, 3)) * present).sum(axis=0) / (present.sum(axis=0) * 64)
        assert np.allclose(data["norm_mean"][f], mean, rtol=1e-4, atol=1e-6)
    view = pd.read_parquet(tmp_path / "sdss.parquet")
    assert view.object_id.tolist() == list(range(30)) and np.allclose(view.ra, labels["ra"])
    ids, cubes, _ = store.read_cubes_parquet(tmp_path / "sdss.cubes.parquet")
    assert np.array_equal(cubes, data["cubes"])

    # other field names for the labels, and a wrong one
    _p19_npz(tmp_path / "other.npz", z="zspec", ebv="EBV")
    import_cube.import_cube(tmp_path / "other.npz", tmp_path / "o.h5", columns={"z": "zspec", "ebv": "EBV"}, n_folds=3)
    assert store.load(tmp_path / "o.h5")["attrs"]["n_folds"] == 3
    with pytest.raises(KeyError, match="no column z='z'"):
        import_cube.import_cube(tmp_path / "other.npz", tmp_path / "bad.h5")
    assert not (tmp_path / "bad.h5").exists()
