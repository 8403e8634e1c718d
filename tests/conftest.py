"""Shared fixtures: the repository root, the real data folder beside it, and a tiny workflow config."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import yaml
from snakemake.utils import update_config

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


NINE_BANDS = {"bands"}  # studies that need config/surveys/hsc9-sim.yaml under them


def experiment_layers(name: str) -> list[Path]:
    """The config files of a study, in Snakemake's --configfile order: the demo, the survey layer it needs, the
    study."""
    files = [REPO / "config" / "config.yaml"]
    if name in NINE_BANDS:
        files.append(REPO / "config" / "surveys" / "hsc9-sim.yaml")
    return [*files, REPO / "config" / "experiments" / f"{name}.yaml"]


def merged_experiment(name: str) -> dict:
    """A study's layers merged as Snakemake merges --configfile layers (before validation)."""
    cfg = {}
    for f in experiment_layers(name):
        update_config(cfg, yaml.safe_load(f.read_text()))
    return cfg


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
