"""Per-model ``bands`` and ``train_fraction``: the channels a model reads, and the training objects it uses."""

from __future__ import annotations

import copy

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.core import folds, inference, io
from pipeline.core.config import ConfigError, section_config, validate_config
from pipeline.core.preprocess import standardise
from pipeline.steps import predict, train
from pipeline.store import checkpoints, loader, pdfs
from pipeline.store import cubes as store

from synthetic import galaxies, make_datacube, train_config


@pytest.fixture(scope="module")
def cube(tmp_path_factory):
    return make_datacube(tmp_path_factory.mktemp("cube"), n=100)[0]  # bands g, r, i; 5 folds of 20


def subset_config(epochs: int = 1, **models) -> dict:
    cfg = train_config(epochs=epochs)
    base = cfg["models"]["tiny"]
    cfg["models"] = {name: {**copy.deepcopy(base), **spec} for name, spec in models.items()}
    return validate_config(cfg, sections=("training", "zgrid", "models"))


# -- config ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"bands": ["g", "q"]}, r"models\.baseline\.bands: 'q' not in survey\.bands: valid are \['u', 'g', 'r'"),
        ({"bands": ["g", "g"]}, r"models\.baseline\.bands: .*non-unique"),
        ({"bands": []}, r"models\.baseline\.bands"),
        ({"train_fraction": 0}, r"models\.baseline\.train_fraction"),
        ({"train_fraction": 1.5}, r"models\.baseline\.train_fraction"),
        ({"train_fraction": -0.2}, r"models\.baseline\.train_fraction"),
    ],
)
def test_wrong_model_subsets_name_the_key(demo_config, spec, message):
    cfg = copy.deepcopy(demo_config)
    cfg["models"]["baseline"].update(spec)
    with pytest.raises(ConfigError, match=message):
        validate_config(cfg)


def test_model_subsets_are_filled_normalised_and_carried(demo_config):
    cfg = copy.deepcopy(demo_config)
    cfg["models"]["baseline"].update(bands=["z", "g", "r"], train_fraction=0.4)
    cfg = validate_config(cfg)
    assert cfg["models"]["baseline"]["bands"] == ["g", "r", "z"]  # the survey's wavelength order
    assert cfg["models"]["multimodal"]["train_fraction"] == 1.0 and "bands" not in cfg["models"]["multimodal"]
    part = section_config(cfg, ("training", "zgrid"), models=["baseline"])  # what the model's jobs depend on
    assert part["models"]["baseline"]["bands"] == ["g", "r", "z"]
    assert part["models"]["baseline"]["train_fraction"] == 0.4
    assert validate_config(copy.deepcopy(part), sections=("training", "zgrid", "models")) == part


# -- train_fraction -------------------------------------------------------------------------------------------------
def test_fraction_subsets_are_nested_fold_fixed_and_sized():
    idx = np.arange(3, 503, 2)  # 250 training objects
    subsets = {f: folds.fraction_subset(idx, f, fold=2) for f in (0.4, 0.6, 0.8, 1.0)}
    for f, sub in subsets.items():
        assert len(sub) == round(f * 250) and np.isin(sub, idx).all() and np.all(np.diff(sub) > 0)
    assert np.array_equal(subsets[1.0], idx)
    assert set(subsets[0.4]) < set(subsets[0.6]) < set(subsets[0.8]) < set(subsets[1.0])
    assert np.array_equal(folds.fraction_subset(idx[::-1], 0.4, fold=2), subsets[0.4])  # input order is irrelevant
    assert not np.array_equal(folds.fraction_subset(idx, 0.4, fold=3), subsets[0.4])  # drawn per fold
    with pytest.raises(ValueError, match="train_fraction"):
        folds.fraction_subset(idx, 0.0, fold=2)


def test_runs_use_the_same_subset_for_every_model_and_seed(cube, tmp_path):
    cfg = subset_config(a=dict(train_fraction=0.4), b=dict(train_fraction=0.4, bands=["r"]), c=dict(train_fraction=0.6))
    cfg["training"]["val_fraction"] = 0.25
    fold_of = store.load(cube, cubes=False)["fold"]

    def used(model, seed, fold=1):
        run = train.Run(cfg, model, fold, seed, cube, tmp_path / f"{model}{seed}")
        assert run.meta["train_fraction"] == cfg["models"][model]["train_fraction"]
        assert set(run.train_idx).isdisjoint(run.val_idx)
        return np.union1d(run.train_idx, run.val_idx), run

    pool, run = used("a", 0)
    assert len(pool) == round(0.4 * 80) and not (fold_of[pool] == 1).any()
    assert len(run.test_idx) == 20 and (fold_of[run.test_idx] == 1).all()  # the test fold is whole
    for model, seed in (("a", 1), ("a", 7), ("b", 0), ("b", 3)):
        assert np.array_equal(used(model, seed)[0], pool)
    assert set(pool) < set(used("c", 5)[0])
    assert not np.array_equal(used("a", 0, fold=2)[0], pool)


def test_a_checkpoint_of_another_fraction_is_not_resumed(cube, tmp_path):
    def run(fraction):
        r = train.Run(subset_config(epochs=2, m=dict(train_fraction=fraction)), "m", 0, 0, cube, tmp_path)
        r.meta["tag"] = ""  # as train_one sets it
        return r

    first = run(0.5)
    first.history.append(first.epoch(0))
    first.save(0)
    same, other = run(0.5), run(0.6)
    same.try_resume()
    other.try_resume()
    assert (same.start_epoch, other.start_epoch) == (1, 0)


# -- bands ----------------------------------------------------------------------------------------------------------
def _shard(path, object_id, cubes, bands) -> None:
    with h5py.File(path, "w") as f:
        f["cubes"] = cubes
        f["object_id"] = np.asarray(object_id, dtype=np.int64)
        f["coverage"] = np.ones(cubes.shape[:2], np.float32)
        f.attrs["bands"] = bands
        f.attrs["size"] = cubes.shape[-1]


def test_a_band_subset_model_trains_and_predicts_on_its_channels(cube, tmp_path):
    # written out of order and not contiguous in the cube (g, r, i): the model reads g and i, in that order
    cfg = subset_config(gi=dict(bands=["i", "g"]))
    out = train.train_one(cfg, "gi", 0, 0, cube, tmp_path / "gi")
    meta = checkpoints.load_checkpoint(out)["meta"]
    data = store.load(cube, cubes=False)
    assert meta["bands"] == ["g", "i"]
    assert np.allclose(meta["norm_mean"], data["norm_mean"][0][[0, 2]])
    assert np.allclose(meta["norm_std"], data["norm_std"][0][[0, 2]])
    model, _ = inference.model_from_checkpoint(out, {"bands": ["g", "i"]})
    first_conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.in_channels == 2
    with pytest.raises(ValueError, match=r"bands: checkpoint has \['g', 'i'\]"):
        inference.model_from_checkpoint(out, {"bands": ["g", "r", "i"]})

    # the same objects as 3-band (g, r, i) and as 2-band (i, g) cutouts: the same photo-z, read by band name
    cubes, _ = galaxies(12, seed=4)
    sources = pd.DataFrame({"object_id": np.arange(700, 712), "ebv": 0.03})
    _shard(tmp_path / "gri.h5", sources.object_id, cubes, ["g", "r", "i"])
    _shard(tmp_path / "ig.h5", sources.object_id, cubes[:, [2, 0]], ["i", "g"])
    scrambled = cubes.copy()
    scrambled[:, 1] = np.random.default_rng(0).normal(0, 50, scrambled[:, 1].shape)  # r: not read
    _shard(tmp_path / "gRi.h5", sources.object_id, scrambled, ["g", "r", "i"])
    tables = {}
    for name in ("gri", "ig", "gRi"):
        predict.predict_catalog(tmp_path / f"{name}.h5", [out], sources, tmp_path / f"{name}.parquet", "cpu")
        tables[name] = io.read_table(tmp_path / f"{name}.parquet")
    assert np.array_equal(tables["gri"].z_phot, tables["ig"].z_phot)
    assert np.array_equal(tables["gri"].z_reg, tables["ig"].z_reg)
    assert np.array_equal(tables["gri"].z_reg, tables["gRi"].z_reg)

    # ... and the test fold's PDFs of the run are those the model gives on the g and i channels of the cube
    f = h5py.File(cube, "r")
    test = np.flatnonzero(data["fold"] == 0)
    probs, _ = inference.predict_batches(
        model, f["cubes"][()][test][:, [0, 2]], data["ebv"][test], meta["norm_mean"], meta["norm_std"],
        torch.device("cpu"), 20,
    )  # fmt: skip
    f.close()
    assert np.allclose(pdfs.read_pdfs(tmp_path / "gi" / "test_pdf.h5")["pdf"], probs, atol=1e-6)

    _shard(tmp_path / "gr.h5", sources.object_id, cubes[:, :2], ["g", "r"])
    with pytest.raises(ValueError, match=r"lacks band\(s\) \['i'\]"):
        predict.predict_catalog(tmp_path / "gr.h5", [out], sources, tmp_path / "gr.parquet", "cpu")


def test_a_model_band_the_datacube_lacks_is_named(cube, tmp_path):
    with pytest.raises(ValueError, match=r"models\.zy\.bands: \['z'\] not among the datacube's bands"):
        train.Run(subset_config(zy=dict(bands=["g", "z"])), "zy", 0, 0, cube, tmp_path)


@pytest.mark.parametrize("channels", [[0, 2], [2, 0], [1], [0, 1, 2]])
def test_channel_selection_is_the_same_in_memory_streamed_and_from_h5py(cube, tmp_path, channels):
    data = store.load(cube)
    mean, std = data["norm_mean"][3][channels], data["norm_std"][3][channels]
    in_memory = loader.open_cubes(cube, mean, std, "cpu", max_memory_gb=1, channels=channels)
    streamed = loader.open_cubes(cube, mean, std, "cpu", max_memory_gb=0, channels=channels)
    assert (in_memory.kind, streamed.kind, streamed.raw.kind) == ("memory", "stream", "memmap")
    whole = standardise(torch.from_numpy(data["cubes"][:, channels]), torch.tensor(mean), torch.tensor(std))
    idx = torch.randperm(100, generator=torch.Generator().manual_seed(1))[:33]
    assert torch.equal(in_memory.batch(idx), whole[idx]) and torch.equal(streamed.batch(idx), whole[idx])
    with h5py.File(tmp_path / "gz.h5", "w") as f:
        f.create_dataset("cubes", data=data["cubes"], compression="gzip", chunks=(8, 3, 16, 16))
    h5 = loader.file_source(tmp_path / "gz.h5", channels=channels)
    assert h5.kind == "h5py" and h5.shape == (100, len(channels), 16, 16)
    assert np.array_equal(h5.take(idx.numpy()), data["cubes"][idx.numpy()][:, channels])
    assert np.array_equal(loader.Rows(streamed.raw, idx.numpy())[3:9], data["cubes"][idx.numpy()[3:9]][:, channels])
    with pytest.raises(ValueError, match="one value per channel"):
        loader.open_cubes(cube, data["norm_mean"][3], data["norm_std"][3], "cpu", channels=channels[:1])
