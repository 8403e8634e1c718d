"""The paper's studies run end to end at tiny size through the workflow, into a report that holds their figures
(their configs alone are validated and dry-run in tests/test_experiment_configs.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
import yaml
from snakemake.utils import update_config

from conftest import NINE_BANDS, experiment_layers, merged_experiment, tiny_config

# run for real at tiny size (the others validate and dry-run: their networks are those of the runs, other options)
RUNS = ["fusion", "size", "order", "bands", "architectures", "fraction", "all_bands", "dropout", "losses"]


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
        layer = merged_experiment(name)
        compare = cfg.get("evaluation", {}).get("compare", []) + layer["evaluation"]["compare"]
        update_config(cfg, layer)
        cfg["evaluation"]["compare"] = compare
    workdir = tmp_path_factory.mktemp("experiments-hsc9" if nine else "experiments-sdss")
    union = workdir / "union.yaml"
    union.write_text(yaml.safe_dump({"models": cfg["models"], "evaluation": {"compare": compare}}, sort_keys=False))
    over = workdir / "tiny.yaml"
    over.write_text(yaml.safe_dump(_tiny_overrides(repo, nine, cfg["models"]), sort_keys=False))
    layers = [*experiment_layers(names[0])[:-1], union, over]
    cmd = [sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "--directory", str(workdir),
           "--cores", "2", "report", "--configfile", *map(str, layers)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)  # a hang guard, not a speed limit
    assert proc.returncode == 0, proc.stderr[-6000:]
    return workdir / ("results-hsc9" if nine else "results-sdss")


@pytest.mark.slow
@pytest.mark.parametrize("name", RUNS)
def test_experiment_runs_tiny(repo, ran, name):
    res = ran(name in NINE_BANDS)
    cfg = merged_experiment(name)
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
