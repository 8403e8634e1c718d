"""The workflow on a survey of mosaics without a source catalog: rule detect makes the sources, the catalog-wide
photo-z (``production``) and the photometry of every cutout follow."""

from __future__ import annotations

import copy
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from pipeline.sim.survey import simulate_survey
from pipeline.store import photometry as phot_store

SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def _snakemake(repo, workdir, *args):
    cmd = [*SNAKEMAKE, "-s", str(repo / "Snakefile"), "--directory", str(workdir), "--cores", "2", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1500)
    if proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


def mosaics_only_config(tiny: dict, survey) -> dict:
    """The tiny config on a survey given by its files: mosaics and spec-z catalogs, no source catalog."""
    cfg = copy.deepcopy(tiny)
    del cfg["simulation"]
    cfg["survey"]["mosaics"] = {b: f"{survey}/mosaics/{b}/*.fits" for b in cfg["survey"]["bands"]}
    for cat in cfg["specz"]["catalogs"]:
        cat["path"] = cat["path"].replace("{survey}", str(survey))
    cfg["models"] = {"baseline": cfg["models"]["baseline"]}
    cfg["evaluation"]["compare"] = []
    cfg["folds"]["n"] = 2
    cfg["detect"] = {"bands": ["g", "r", "i"]}
    # a real survey names its filters' extinction coefficients (SDSS, Schlafly & Finkbeiner 2011) for the reference
    cfg.setdefault("reference", {})["extinction"] = {"u": 4.239, "g": 3.303, "r": 2.285, "i": 1.698, "z": 1.263}
    return cfg


@pytest.mark.slow
def test_production_from_mosaics_alone(repo, tmp_path, tiny):
    survey = tmp_path / "survey"
    simulate_survey(tiny["simulation"], survey, workers=2)
    cfg = mosaics_only_config(tiny, survey)
    path = tmp_path / "mosaics-only.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    dry = _snakemake(repo, tmp_path, "-n", "production", "--configfile", str(path)).stdout
    assert "detect" in dry
    n = cfg["cutouts"]["shards"]
    photometry = [f"results/photometry/shard-{k}-of-{n}.parquet" for k in range(1, n + 1)]
    _snakemake(repo, tmp_path, "production", *photometry, "--configfile", str(path))
    res = tmp_path / "results"
    sources = pd.read_parquet(res / "detect" / "sources.parquet")
    truth = pd.read_parquet(survey / "sources.parquet")
    assert sources.object_id.is_unique and 0.7 * len(truth) < len(sources) < 1.5 * len(truth)
    photoz = pd.read_parquet(res / "photoz" / "baseline.parquet")
    assert sorted(photoz.object_id) == sorted(sources.object_id)
    tables = [phot_store.read(res / p.removeprefix("results/"))[0] for p in photometry]
    assert sum(map(len, tables)) == len(sources)
    assert set(phot_store.columns(cfg["survey"]["bands"])) <= set(tables[0].columns)
    assert (res / "detect" / "detections.png").exists() and (res / "detect" / "summary.json").exists()
