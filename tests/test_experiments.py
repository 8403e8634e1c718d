"""The paper's experiment configs: each layers onto the demo (or the 9-band survey layer), validates, plans its
jobs, and runs end to end at tiny size through the workflow into a report that holds its figure."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest
import yaml
from snakemake.utils import update_config

from pipeline.core.config import validate_config

from conftest import tiny_config

EXPERIMENTS = ["fusion", "size", "order", "bands", "architectures", "fraction", "all_bands", "dropout"]
NINE_BANDS = {"bands"}  # experiments that need config/surveys/hsc9-sim.yaml under them


def _layers(repo, name) -> list:
    files = [repo / "config" / "config.yaml"]
    if name in NINE_BANDS:
        files.append(repo / "config" / "surveys" / "hsc9-sim.yaml")
    return [*files, repo / "config" / "experiments" / f"{name}.yaml"]


def _merged(repo, name) -> dict:
    cfg = {}
    for f in _layers(repo, name):
        update_config(cfg, yaml.safe_load(f.read_text()))
    return cfg


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_config_is_valid(repo, name):
    cfg = validate_config(_merged(repo, name))
    assert cfg["results"] == f"results/experiments/{name}"
    assert cfg["specz"]["catalogs"][0]["path"].startswith(f"results/experiments/{name}/survey/")
    in_pairs = {m for pair in cfg["evaluation"]["compare"] for m in (pair["baseline"], pair["candidate"])}
    assert in_pairs == set(cfg["models"])  # every model trained is compared, every pair names trained models
    assert all(pair.get("label") for pair in cfg["evaluation"]["compare"])


def test_band_subsets_need_the_nine_band_layer(repo):
    cfg = _merged(repo, "bands")
    assert validate_config(copy.deepcopy(cfg))["models"]["baseline_5b"]["bands"] == list("grizy")
    without = {}
    for f in (repo / "config" / "config.yaml", repo / "config" / "experiments" / "bands.yaml"):
        update_config(without, yaml.safe_load(f.read_text()))
    with pytest.raises(Exception, match="models.baseline_7b.bands"):
        validate_config(without)


def test_fusion_experiment_dry_run(repo, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "--directory", str(tmp_path),
         "--cores", "2", "-n", "all", "--configfile", *map(str, _layers(repo, "fusion"))],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = (line.split() for line in proc.stdout.splitlines())
    counts = {r[0]: int(r[1]) for r in rows if len(r) == 2 and r[1].isdigit()}
    # the study's 6 pairs, and the colour reference against each of the 7 models
    assert counts["train"] == 7 * 5 and counts["compare"] == 6 + 7 and counts["report"] == 1


# -- every experiment for real, at tiny size --------------------------------------------------------------------


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """One folder for all runs: the SDSS-like experiments share one tiny survey, datacube and common models."""
    return tmp_path_factory.mktemp("experiments")


def _tiny_overrides(repo, name, cfg: dict) -> dict:
    """Shrink an experiment to seconds per job: tiny survey, 16-px cutouts, 2 folds, width 0.05, 2 epochs."""
    demo = yaml.safe_load((repo / "config" / "config.yaml").read_text())
    tiny = tiny_config(demo)
    out = {
        "results": "results-hsc9" if name in NINE_BANDS else "results-sdss",
        "cutouts": tiny["cutouts"],
        "zgrid": {"n_bins": 40},
        "training": tiny["training"],
        "folds": {"n": 2},
        "evaluation": {"n_boot": 200},
        "models": {m: {"options": {"width": 0.05}} for m in cfg["models"]},
    }
    if name in NINE_BANDS:
        out["simulation"] = {"n_sources": 1500, "seed": 3, "mag_range": [18.0, 23.5]}
    else:
        out["simulation"] = tiny["simulation"]
    return out


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_runs_tiny(repo, workdir, name):
    cfg = _merged(repo, name)
    over = workdir / f"tiny-{name}.yaml"
    over.write_text(yaml.safe_dump(_tiny_overrides(repo, name, cfg), sort_keys=False))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "--directory", str(workdir),
           "--cores", "2", "report", "--configfile", *map(str, _layers(repo, name)), str(over)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-6000:]
    res = workdir / ("results-hsc9" if name in NINE_BANDS else "results-sdss")
    html = (res / "report" / "index.html").read_text()
    for pair in cfg["evaluation"]["compare"]:
        path = res / "metrics" / "compare" / f"{pair['baseline']}--{pair['candidate']}.json"
        comparison = json.loads(path.read_text())
        assert comparison["n_boot"] == 200 and 0 <= comparison["metrics"]["sigma_mad"]["p_value"] <= 1
        assert pair["label"] in html  # the gain chart's table names each pair by its label
    for model in cfg["models"]:
        assert json.loads((res / "metrics" / f"{model}.json").read_text())["n"] > 0
    assert "Gain of each candidate over its baseline" in html
    if name == "dropout":
        drop = res / "metrics" / "dropout" / "dropout.parquet"
        assert drop.exists() and "Modality dropout" in html
