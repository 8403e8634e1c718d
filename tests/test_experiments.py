"""The paper's experiment configs layer onto the demo config, validate, and plan one training job per fold."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import yaml
from snakemake.utils import update_config

from pipeline.config import validate_config

EXPERIMENTS = ["fusion", "size", "order"]


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_config_is_valid(repo, demo_config, name):
    cfg = copy.deepcopy(demo_config)
    update_config(cfg, yaml.safe_load((repo / "config" / "experiments" / f"{name}.yaml").read_text()))
    cfg = validate_config(cfg)
    assert cfg["results"] == f"results/experiments/{name}"
    assert cfg["specz"]["catalogs"][0]["path"].startswith(f"results/experiments/{name}/survey/")
    candidates = {pair["candidate"] for pair in cfg["evaluation"]["compare"]}
    assert candidates == set(cfg["models"]) - {"baseline"}


def test_fusion_experiment_dry_run(repo, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "--directory", str(tmp_path),
         "--cores", "2", "-n", "all", "--configfile", str(repo / "config" / "config.yaml"),
         str(repo / "config" / "experiments" / "fusion.yaml")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = (line.split() for line in proc.stdout.splitlines())
    counts = {r[0]: int(r[1]) for r in rows if len(r) == 2 and r[1].isdigit()}
    assert counts["train"] == 7 * 5 and counts["compare"] == 6 and counts["report"] == 1
