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


def pytest_collection_modifyitems(items):
    """Files of end-to-end runs first, those with the most runs leading: under ``pytest -n auto --dist loadfile``
    (the README's test command) each file runs on one worker, so the longest start first and the short ones fill
    the other workers instead of one long file running alone at the end."""
    slow = {}
    for item in items:
        slow[item.path] = slow.get(item.path, 0) + (item.get_closest_marker("slow") is not None)
    items.sort(key=lambda item: -slow[item.path])  # stable: the files' own order otherwise


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def demo_config() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def tiny_config(demo: dict) -> dict:
    """The demo config shrunk to seconds per stage: a few hundred bright sources, 16-px cutouts, 3 folds, 2 epochs."""
    cfg = copy.deepcopy(demo)
    cfg["simulation"].update(n_sources=260, seed=3, mag_range=[14.0, 17.3])
    cfg["cutouts"].update(size=16, shards=2)
    cfg["zgrid"]["n_bins"] = 40
    cfg["training"].update(epochs=2, batch_size=16)
    cfg["model_defaults"] = {"options": {"width": 0.05}}
    cfg["evaluation"]["n_boot"] = 200
    # three folds, every one tested whatever the demo runs: the tests check the whole chain, fold by fold
    cfg["folds"].update(n=3, test=None)
    return cfg


@pytest.fixture
def tiny(demo_config) -> dict:
    return tiny_config(demo_config)
