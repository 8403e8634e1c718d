"""A band without data (the paper's zero padding): out of the statistics, exactly 0 at the network's input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.core import inference, preprocess
from pipeline.core.folds import assign_folds
from pipeline.steps import pack, train
from pipeline.store import cubes as store
from pipeline.store import loader

from synthetic import galaxies, train_config, write_shard

N = 90


@pytest.fixture(scope="module")
def cube(tmp_path_factory):
    """A datacube where the g band (channel 0) is missing for a third of the objects."""
    tmp = tmp_path_factory.mktemp("missing")
    cubes, z = galaxies(N, seed=4)
    coverage = np.ones((N, 3), np.float32)
    gone = np.arange(N) % 3 == 0
    cubes[gone, 0] = 0.0
    coverage[gone, 0] = 0.0
    write_shard(tmp / "s.h5", np.arange(N), cubes, coverage)
    training = pd.DataFrame({"object_id": np.arange(N), "z_spec": z, "ebv": 0.02, "fold": assign_folds(N, 3, 0)})
    path = tmp / "train.h5"
    pack.pack(training, [tmp / "s.h5"], path, 0.9, 3, allow_missing_bands=True)
    return path, gone


def test_missing_planes_stay_out_of_the_statistics(cube):
    path, gone = cube
    data = store.load(path)
    assert (data["missing_bands"] == gone[data["object_id"]]).all()  # bit 0: g
    for f in range(3):
        train_rows = data["fold"] != f
        has_g = train_rows & ~gone[data["object_id"]]
        xc = preprocess.compress(data["cubes"].astype(np.float64))
        assert np.isclose(data["norm_mean"][f][0], xc[has_g, 0].mean(), rtol=1e-5)
        assert np.isclose(data["norm_std"][f][0], xc[has_g, 0].std(), rtol=1e-4)
        assert np.isclose(data["norm_mean"][f][1], xc[train_rows, 1].mean(), rtol=1e-5)
        # counting the zero planes would pull the mean towards 0: the test would see it
        assert not np.isclose(data["norm_mean"][f][0], xc[train_rows, 0].mean(), rtol=1e-3)


def test_network_input_of_a_missing_band_is_exactly_zero(cube):
    path, gone = cube
    data = store.load(path)
    mean, std = data["norm_mean"][0], data["norm_std"][0]
    miss = gone[data["object_id"]]
    idx = torch.arange(N)
    for kind, budget in (("memory", 1), ("stream", 0)):
        x = loader.open_cubes(path, mean, std, "cpu", max_memory_gb=budget).batch(idx)
        assert (x[torch.from_numpy(miss), 0] == 0).all(), kind
        assert (x[torch.from_numpy(~miss), 0] != 0).any(dim=(-1, -2)).all(), kind  # present planes are not zeroed
    # and what the model sees in inference: predict_batches standardises the same way
    seen = []
    model = torch.nn.Module()
    model.forward = lambda x, e: (seen.append(x) or torch.zeros(len(x), 4), torch.zeros(len(x)))
    inference.predict_batches(model, data["cubes"], data["ebv"], mean, std, torch.device("cpu"), 4)
    assert (torch.cat(seen)[torch.from_numpy(miss), 0] == 0).all()


def test_training_with_missing_bands(cube, tmp_path):
    path, _ = cube
    out = train.train_one(train_config(epochs=1), "tiny", 0, 0, path, tmp_path / "run")
    assert out.exists()
