"""Shared fixtures: the repository root, the real data folder beside it, and a tiny workflow config."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import yaml

# one intra-op thread: small tensors gain nothing from more, and spinning threads stall badly on a loaded machine
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def demo_config() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def tiny_config(demo: dict) -> dict:
    """The demo config shrunk to seconds per stage: a few hundred bright sources, 16-pixel cutouts, 2 epochs."""
    cfg = copy.deepcopy(demo)
    cfg["simulation"].update(n_sources=260, seed=3, mag_range=[14.0, 17.3])
    cfg["cutouts"].update(size=16, shards=2)
    cfg["zgrid"]["n_bins"] = 40
    cfg["training"].update(epochs=2, batch_size=16)
    cfg["model_defaults"] = {"options": {"width": 0.05}}
    cfg["evaluation"]["n_boot"] = 200
    cfg["folds"]["test"] = None  # every fold, whatever the demo runs: the tests check the whole chain
    return cfg


@pytest.fixture
def tiny(demo_config) -> dict:
    return tiny_config(demo_config)
