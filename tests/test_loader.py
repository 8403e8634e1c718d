"""The training input: in-memory and out-of-core sources give the same standardised batches, in the asked order."""

from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest
import torch

from pipeline.core.preprocess import standardise
from pipeline.steps import train
from pipeline.store import checkpoints, loader
from pipeline.store import cubes as store

from synthetic import make_datacube, train_config


@pytest.fixture(scope="module")
def cube(tmp_path_factory):
    return make_datacube(tmp_path_factory.mktemp("cube"), n=150)[0]  # 150 objects: three chunks, the last partial


def test_memmap_reads_the_rows_asked_for(cube):
    data = store.load(cube)
    src = loader.file_source(cube)
    assert src.kind == "memmap"
    idx = np.r_[149, 0, 64, 63, 128, 5, 5, np.random.default_rng(0).integers(0, 150, 40)]
    assert np.array_equal(src.take(idx), data["cubes"][idx])
    again = pickle.loads(pickle.dumps(src))  # a DataLoader worker reopens the file itself
    assert np.array_equal(again.take(idx), data["cubes"][idx])
    assert np.array_equal(loader.Rows(src, idx[3:])[2:9], data["cubes"][idx[3:][2:9]])


@pytest.mark.parametrize("layout", ["contiguous", "gzip"])
def test_other_layouts(tmp_path, layout):
    x = np.random.default_rng(1).normal(size=(20, 2, 5, 5)).astype(np.float32)
    with h5py.File(tmp_path / "c.h5", "w") as f:
        f.create_dataset(
            "cubes", data=x, **({"compression": "gzip", "chunks": (4, 2, 5, 5)} if layout == "gzip" else {})
        )
    src = loader.file_source(tmp_path / "c.h5")
    assert src.kind == ("memmap" if layout == "contiguous" else "h5py")
    idx = np.array([19, 3, 7, 3, 0])
    assert np.array_equal(src.take(idx), x[idx])


def test_in_memory_and_streamed_batches_are_identical(cube, monkeypatch):
    data = store.load(cube)
    mean, std = data["norm_mean"][2], data["norm_std"][2]
    in_memory = loader.open_cubes(cube, mean, std, "cpu", max_memory_gb=1)
    streamed = loader.open_cubes(cube, mean, std, "cpu", max_memory_gb=0)
    assert (in_memory.kind, streamed.kind) == ("memory", "stream")
    monkeypatch.setenv(loader.ENV_BUDGET, "0")
    assert loader.open_cubes(cube, mean, std, "cpu").kind == "stream"
    whole = standardise(torch.from_numpy(data["cubes"]), torch.tensor(mean), torch.tensor(std))
    idx = torch.randperm(150, generator=torch.Generator().manual_seed(0))[:37]
    assert torch.equal(in_memory.batch(idx), whole[idx]) and torch.equal(streamed.batch(idx), whole[idx])


def test_streamed_training_equals_in_memory_training(cube, tmp_path):
    cfg = train_config(epochs=1)
    train.train_one(cfg, "tiny", 0, 3, cube, tmp_path / "memory", max_memory_gb=1)
    train.train_one(cfg, "tiny", 0, 3, cube, tmp_path / "stream", max_memory_gb=0)
    a = checkpoints.load_checkpoint(tmp_path / "memory" / "model.pt")["model"]
    b = checkpoints.load_checkpoint(tmp_path / "stream" / "model.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
