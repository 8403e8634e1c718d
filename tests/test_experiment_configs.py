"""The paper's study configs: each layers onto the demo (or the 9-band survey layer), validates and plans its jobs.
Their runs at tiny size are tests/test_experiments.py (a file of its own, so that a second test worker takes these
dry runs while the first runs the studies)."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import yaml
from snakemake.utils import update_config

from pipeline.core.config import validate_config
from pipeline.core.folds import evaluated_folds

from conftest import REPO, experiment_layers, merged_experiment

EXPERIMENTS = sorted(p.stem for p in (REPO / "config" / "experiments").glob("*.yaml"))


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_config_is_valid(repo, name):
    cfg = validate_config(merged_experiment(name))
    assert cfg["results"] == f"results/experiments/{name}"
    assert cfg["specz"]["catalogs"][0]["path"].startswith(f"results/experiments/{name}/survey/")
    in_pairs = {m for pair in cfg["evaluation"]["compare"] for m in (pair["baseline"], pair["candidate"])}
    assert in_pairs == set(cfg["models"])  # every model trained is compared, every pair names trained models
    assert all(pair.get("label") for pair in cfg["evaluation"]["compare"])


def test_band_subsets_need_the_nine_band_layer(repo):
    cfg = merged_experiment("bands")
    assert validate_config(copy.deepcopy(cfg))["models"]["baseline_5b"]["bands"] == list("grizy")
    without = {}
    for f in (repo / "config" / "config.yaml", repo / "config" / "experiments" / "bands.yaml"):
        update_config(without, yaml.safe_load(f.read_text()))
    with pytest.raises(Exception, match="models.baseline_7b.bands"):
        validate_config(without)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_dry_run(repo, tmp_path, name):
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "--directory", str(tmp_path),
         "--cores", "2", "-n", "all", "--configfile", *map(str, experiment_layers(name))],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = (line.split() for line in proc.stdout.splitlines())
    counts = {r[0]: int(r[1]) for r in rows if len(r) == 2 and r[1].isdigit()}
    cfg = validate_config(merged_experiment(name))
    assert counts["train"] == len(cfg["models"]) * len(evaluated_folds(cfg["folds"])) and counts["report"] == 1
    # the study's pairs, and the colour reference against each model
    n_ref = len(cfg["models"]) if cfg["reference"]["enabled"] and cfg["reference"]["compare"] else 0
    assert counts["compare"] == len(cfg["evaluation"]["compare"]) + n_ref


def test_survey_layers_and_the_paper_scale(repo):
    for survey, name, seeds in (("hsc9-sim", "hsc", 3), ("hsc6-sim", "hsc", 3), ("cfhtls-sim", "cfhtls", 3)):
        cfg = {}
        for f in ("config.yaml", f"surveys/{survey}.yaml", "experiments/fusion.yaml", "scale/paper.yaml"):
            update_config(cfg, yaml.safe_load((repo / "config" / f).read_text()))
        cfg = validate_config(cfg)
        assert cfg["survey"]["name"] == name and cfg["training"]["seeds"] == list(range(seeds))
        assert cfg["evaluation"]["mag_max"] == 24.0 and cfg["selection"]["mag_max"] == 24.5  # evaluation-only cut
        assert cfg["cutouts"]["size"] == 64 and cfg["training"]["batch_size"] == 32
        assert all(m["options"]["width"] == 1.0 for m in cfg["models"].values())
    sdss = {}
    for f in ("config.yaml", "experiments/size.yaml", "scale/paper.yaml"):
        update_config(sdss, yaml.safe_load((repo / "config" / f).read_text()))
    assert validate_config(sdss)["training"]["seeds"] == [0, 1, 2, 3, 4]  # five for SDSS
