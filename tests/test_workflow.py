"""The whole workflow: dry-run of the demo, the tiny chain end to end, reruns, and config errors."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import qp
import yaml

from pipeline.store import pdfs

SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def _snakemake(repo, workdir, *args, check=True):
    cmd = [*SNAKEMAKE, "-s", str(repo / "Snakefile"), "--directory", str(workdir), "--cores", "2", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)  # a hang guard, not a speed limit
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


def _write(cfg, path):
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def test_demo_dry_run_lists_the_jobs(repo, tmp_path):
    proc = _snakemake(repo, tmp_path, "-n", "--configfile", str(repo / "config" / "config.yaml"))
    counts = _job_counts(proc.stdout)
    assert counts["train"] == 2  # 2 models x 1 test fold (the demo tests fold 0 of 5) x 1 seed
    assert counts["reference"] == 1  # the colour reference through RAIL: one job per test fold
    assert counts["ensemble"] == counts["evaluate"] == 3  # 2 models and the reference
    assert counts["report"] == 1
    assert counts["compare"] == 3  # the config's pair, and the reference against each model


def test_wrong_config_names_the_key(repo, tmp_path, tiny):
    tiny["training"]["epoch"] = 3
    tiny["cutouts"]["interpolation"] = "cubic"
    proc = _snakemake(repo, tmp_path, "-n", "--configfile", str(_write(tiny, tmp_path / "bad.yaml")), check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "'epoch' was unexpected" in out
    assert "cutouts.interpolation" in out


def scratch_repo(repo, dest):
    """A copy of the workflow and the package, so that a test may edit the code it runs."""
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    dest.mkdir(parents=True)
    for part in ("Snakefile", "workflow", "pipeline", "config", "profiles", "envs"):
        src = repo / part
        (shutil.copytree(src, dest / part, ignore=ignore) if src.is_dir() else shutil.copy2(src, dest / part))
    return dest


def _params_changed(stdout: str) -> set[str]:
    """The rules of a dry run with a job planned because its params (the code hash among them) changed; a job
    planned because an upstream job reruns is listed under that reason only, whatever its params."""
    rules, rule = set(), None
    for line in stdout.splitlines():
        m = re.match(r"\s*(?:local)?rule (\w+):", line)
        if m:
            rule = m.group(1)
        elif rule and line.strip().startswith("reason:") and "Params have changed" in line:
            rules.add(rule)
    return rules


@pytest.mark.slow
def test_tiny_chain_end_to_end_then_reruns(repo, tmp_path, tiny):
    repo = scratch_repo(repo, tmp_path / "repo")
    cfg = _write(tiny, tmp_path / "tiny.yaml")
    _snakemake(repo, tmp_path, "all", "production", "--configfile", str(cfg))
    res = tmp_path / "results"
    html = (res / "report" / "index.html").read_text()
    assert html.count("data:image/png;base64,") >= 4
    for model in tiny["models"]:
        assert model in html
        pred = pd.read_parquet(res / "predictions" / f"{model}.parquet")
        training = pd.read_parquet(res / "datacube" / "train.parquet")
        assert sorted(pred.object_id) == sorted(training.object_id)  # every object predicted once, by its test fold
        assert set(pred.fold) == set(range(tiny["folds"]["n"]))
        store = pdfs.read_pdfs(res / "predictions" / f"{model}.pdf.hdf5")
        assert store["pdf"].shape == (len(pred), 40)
        metrics = json.loads((res / "metrics" / f"{model}.json").read_text())
        assert metrics["n"] == len(pred) and 0 <= metrics["outlier_fraction"] <= 1
        photoz = pd.read_parquet(res / "photoz" / f"{model}.parquet")
        sources = pd.read_parquet(res / "survey" / "sources.parquet")
        assert len(photoz) == len(sources)
        assert (res / "photoz" / f"{model}.fits").exists()
    comparison = json.loads((res / "metrics" / "compare" / "baseline--multimodal.json").read_text())
    assert 0 <= comparison["metrics"]["sigma_mad"]["p_value"] <= 1
    # the colour reference through RAIL: predicted once per object, evaluated, compared with every model, reported
    ref = pd.read_parquet(res / "predictions" / "rail-knn.parquet")
    assert sorted(ref.object_id) == sorted(training.object_id) and set(ref.fold) == set(range(tiny["folds"]["n"]))
    assert qp.read(str(res / "predictions" / "rail-knn.pdf.hdf5")).npdf == len(ref)
    assert json.loads((res / "metrics" / "rail-knn.json").read_text())["n"] == len(ref)
    for model in tiny["models"]:
        assert (res / "metrics" / "compare" / f"rail-knn--{model}.json").exists()
    assert "rail-knn" in html
    assert "p-value" in html or "p_value" in html

    # nothing to do when nothing changed
    targets = ("all", "production", "--configfile", str(cfg))
    assert "Nothing to be done" in _snakemake(repo, tmp_path, "-n", *targets).stdout

    # an edit deep in the code reruns exactly the steps whose imports reach it (compare -> core.bootstrap; report ->
    # report.html -> store.dropouts; pack -> core.preprocess), and what depends on them, nothing upstream
    for module, importers, untouched in (
        ("core/bootstrap.py", {"compare"}, {"ensemble", "evaluate", "train", "merge"}),
        ("store/dropouts.py", {"report"}, {"compare", "evaluate", "ensemble"}),
        ("core/preprocess.py", {"pack"}, {"simulate", "cutouts", "match"}),
    ):
        path = repo / "pipeline" / module
        original = path.read_text()
        path.write_text(original + "\n# an edit\n")
        proc = _snakemake(repo, tmp_path, "-n", *targets)
        assert _params_changed(proc.stdout) == importers, (module, proc.stdout[-3000:])
        assert not untouched & set(_job_counts(proc.stdout)), module
        path.write_text(original)
    assert "Nothing to be done" in _snakemake(repo, tmp_path, "-n", *targets).stdout

    # changing one model's options reruns that model's jobs and what depends on them, nothing else
    tiny["models"]["multimodal"]["options"]["fusion"] = "middle"
    proc = _snakemake(repo, tmp_path, "-n", "all", "--configfile", str(_write(tiny, cfg)))
    jobs = _job_counts(proc.stdout)
    assert jobs["train"] == tiny["folds"]["n"] and jobs["ensemble"] == 1 and jobs["evaluate"] == 1
    assert "simulate" not in jobs and "cutouts" not in jobs and "pack" not in jobs


def _job_counts(stdout: str) -> dict:
    """The job-stats table of a dry run: rule name -> number of jobs."""
    rows = (line.split() for line in stdout.splitlines())
    return {r[0]: int(r[1]) for r in rows if len(r) == 2 and r[1].isdigit() and r[0] != "total"}
