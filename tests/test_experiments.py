"""The paper's experiment configs: each layers onto the demo (or the 9-band survey layer), validates, plans its
jobs, and runs end to end at tiny size through the workflow into a report that holds its figure."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pandas as pd
import pytest
import yaml
from snakemake.utils import update_config

from pipeline.core.config import validate_config
from pipeline.core.folds import evaluated_folds

from conftest import REPO, tiny_config

EXPERIMENTS = sorted(p.stem for p in (REPO / "config" / "experiments").glob("*.yaml"))
# run for real at tiny size (the others validate and dry-run: their networks are those of the runs, other options)
RUNS = ["fusion", "size", "order", "bands", "architectures", "fraction", "all_bands", "dropout", "losses"]
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


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_dry_run(repo, tmp_path, name):
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "--directory", str(tmp_path),
         "--cores", "2", "-n", "all", "--configfile", *map(str, _layers(repo, name))],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = (line.split() for line in proc.stdout.splitlines())
    counts = {r[0]: int(r[1]) for r in rows if len(r) == 2 and r[1].isdigit()}
    cfg = validate_config(_merged(repo, name))
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


# -- every experiment for real, at tiny size --------------------------------------------------------------------
# The studies layered on the SDSS-like demo name no model twice with different settings, so they run together as
# one workflow (one DAG: shared survey, cutouts, datacube and common models, both cores busy); the 9-band study runs
# on its own survey. Each config alone is validated and dry-run above.


def _tiny_overrides(repo, nine_bands: bool, models) -> dict:
    """Shrink a run to seconds per job: tiny survey, 16-px cutouts, 2 folds, width 0.05, 2 epochs, K = 200, the
    reference from catalogue magnitudes."""
    demo = yaml.safe_load((repo / "config" / "config.yaml").read_text())
    tiny = tiny_config(demo)
    out = {
        "results": "results-hsc9" if nine_bands else "results-sdss",
        "cutouts": tiny["cutouts"],
        "zgrid": {"n_bins": 40},
        "training": tiny["training"],
        "folds": {"n": 2},
        "evaluation": {"n_boot": 200},
        "models": {m: {"options": {"width": 0.05}} for m in models},
        # the colour reference from the catalogue, in the report but in no pair: its photometry, pairs and bootstrap
        # are the end-to-end test's (tests/test_workflow.py), here they would only cost minutes
        "reference": {"magnitudes": "catalog", "compare": False},
    }
    if nine_bands:
        out["simulation"] = {"n_sources": 1500, "seed": 3, "mag_range": [18.0, 23.5]}
    else:
        out["simulation"] = tiny["simulation"]
    return out


@pytest.fixture(scope="module")
def ran(repo, tmp_path_factory):
    """``ran(nine_bands)``: the studies of one survey merged into one config and run to the report, once; returns
    the results folder."""
    done = {}

    def run(nine: bool):
        if nine not in done:
            try:
                done[nine] = _run_union(repo, tmp_path_factory, nine)
            except Exception as err:  # once: every study of the survey fails with it, none reruns the union
                done[nine] = err
        if isinstance(done[nine], Exception):
            raise done[nine]
        return done[nine]

    return run


def _run_union(repo, tmp_path_factory, nine: bool):
    names = [n for n in RUNS if (n in NINE_BANDS) == nine]
    cfg = {}
    for name in names:
        layer = _merged(repo, name)
        compare = cfg.get("evaluation", {}).get("compare", []) + layer["evaluation"]["compare"]
        update_config(cfg, layer)
        cfg["evaluation"]["compare"] = compare
    workdir = tmp_path_factory.mktemp("experiments-hsc9" if nine else "experiments-sdss")
    union = workdir / "union.yaml"
    union.write_text(yaml.safe_dump({"models": cfg["models"], "evaluation": {"compare": compare}}, sort_keys=False))
    over = workdir / "tiny.yaml"
    over.write_text(yaml.safe_dump(_tiny_overrides(repo, nine, cfg["models"]), sort_keys=False))
    layers = [*_layers(repo, names[0])[:-1], union, over]
    cmd = [sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "--directory", str(workdir),
           "--cores", "2", "report", "--configfile", *map(str, layers)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)  # a hang guard, not a speed limit
    assert proc.returncode == 0, proc.stderr[-6000:]
    return workdir / ("results-hsc9" if nine else "results-sdss")


@pytest.mark.slow
@pytest.mark.parametrize("name", RUNS)
def test_experiment_runs_tiny(repo, ran, name):
    res = ran(name in NINE_BANDS)
    cfg = _merged(repo, name)
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
    if name == "losses":  # Table A.1: regression-only models are scored on z_reg
        assert "Losses (paper Appendix A" in html
        for model in ("reg_rmse", "reg_mae", "reg_nmae"):
            assert json.loads((res / "metrics" / f"{model}.json").read_text())["estimate"] == "z_reg"
        pred = pd.read_parquet(res / "predictions" / "reg_mae.parquet")
        assert (pred.z_phot == pred.z_reg).all()
