"""One training job: outputs, exact resume, NaN stop, and checkpoints that refuse another configuration."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.core import inference
from pipeline.steps import train
from pipeline.store import checkpoints, pdfs

from synthetic import make_datacube, train_config


@pytest.fixture(scope="module")
def cube(tmp_path_factory):
    return make_datacube(tmp_path_factory.mktemp("cube"), n=100)[0]


def _weights(path):
    return checkpoints.load_checkpoint(path)["model"]


def test_outputs_and_test_fold(cube, tmp_path):
    out = tmp_path / "run"
    train.train_one(train_config(epochs=2), "tiny", 1, 0, cube, out)
    hist = pd.read_csv(out / "history.csv")
    assert hist.epoch.tolist() == [0, 1] and np.isfinite(hist.train_loss).all()
    store = pdfs.read_pdfs(out / "test_pdf.h5")
    assert (store["fold"] == 1).all() and len(store["object_id"]) == 20
    assert np.allclose(store["pdf"].sum(axis=1), 1, atol=1e-5)
    meta = checkpoints.load_checkpoint(out / "model.pt")["meta"]
    assert meta["bands"] == ["g", "r", "i"] and meta["fold"] == 1 and meta["zgrid"]["n_bins"] == 20


def test_resume_gives_the_weights_of_an_uninterrupted_run(cube, tmp_path):
    cfg = train_config(epochs=3)
    train.train_one(cfg, "tiny", 0, 5, cube, tmp_path / "straight")

    # a job "killed" after its first epoch: only its checkpoint remains, then it is started again
    first = train.Run(train_config(epochs=3), "tiny", 0, 5, cube, tmp_path / "killed")
    first.history.append(first.epoch(0))
    first.save(0)
    del first
    train.train_one(cfg, "tiny", 0, 5, cube, tmp_path / "killed")

    a, b = _weights(tmp_path / "straight" / "model.pt"), _weights(tmp_path / "killed" / "model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert len(pd.read_csv(tmp_path / "killed" / "history.csv")) == 3


def test_different_seeds_differ(cube, tmp_path):
    train.train_one(train_config(epochs=1), "tiny", 0, 1, cube, tmp_path / "s1")
    train.train_one(train_config(epochs=1), "tiny", 0, 2, cube, tmp_path / "s2")
    a, b = _weights(tmp_path / "s1" / "model.pt"), _weights(tmp_path / "s2" / "model.pt")
    assert not all(torch.equal(a[k], b[k]) for k in a)


def test_nan_loss_stops_with_a_clear_message(cube, tmp_path):
    with pytest.raises(FloatingPointError, match="non-finite loss"):
        train.train_one(train_config(epochs=2, lr=1e30), "tiny", 0, 0, cube, tmp_path / "nan")
    assert not (tmp_path / "nan" / "model.pt").exists()


def test_checkpoint_for_another_configuration_is_refused(cube, tmp_path):
    train.train_one(train_config(epochs=1), "tiny", 0, 0, cube, tmp_path / "r")
    with pytest.raises(ValueError, match=r"bands: checkpoint has \['g', 'r', 'i'\]"):
        inference.model_from_checkpoint(tmp_path / "r" / "model.pt", {"bands": ["u", "g", "r"]})
    with pytest.raises(ValueError, match="zgrid"):
        inference.model_from_checkpoint(tmp_path / "r" / "model.pt", {"zgrid": {"z_min": 0, "z_max": 1, "n_bins": 9}})


def test_augment_is_a_symmetry_of_the_square():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    y = train.augment(x, torch.Generator().manual_seed(0))
    assert torch.equal(torch.sort(y.flatten(1)).values, torch.sort(x.flatten(1)).values)


def test_a_model_loss_overrides_the_training_loss(cube, tmp_path):
    # a regression-only model (Appendix A) never trains its classification head; the run records its loss
    cfg = train_config(epochs=1)
    cfg["models"]["tiny"]["loss"] = {"classification": 0.0, "regression": 1.0, "regression_kind": "nmae"}
    run = train.Run(cfg, "tiny", 0, 0, cube, tmp_path / "reg")
    head = run.model.head.cls.weight.detach().clone()
    run.fit()
    assert torch.equal(run.model.head.cls.weight, head)  # no gradient reached it
    assert run.meta["loss"]["regression_kind"] == "nmae" and run.meta["loss"]["classification"] == 0
    cls = train.Run(train_config(epochs=1), "tiny", 0, 0, cube, tmp_path / "cls")
    head = cls.model.head.cls.weight.detach().clone()
    cls.fit()
    assert not torch.equal(cls.model.head.cls.weight, head)


def test_no_validation_split_unless_early_stopping(cube, tmp_path):
    paper = train.Run(train_config(epochs=1), "tiny", 0, 0, cube, tmp_path / "a")
    assert len(paper.val_idx) == 0 and len(paper.train_idx) == 80  # all four other folds of 100 objects
    stop = train.Run(train_config(epochs=1, early_stopping_patience=2), "tiny", 0, 0, cube, tmp_path / "b")
    assert len(stop.val_idx) == 8 and len(stop.train_idx) == 72  # 0.1 of them held out to stop on
