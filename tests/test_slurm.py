"""The SLURM profile: which settings win over the workflow profile, `photoz slurm-setup`, and the tiny workflow
through a real single-node SLURM cluster (tests/slurm_cluster.py) with `snakemake --profile`, a GPU rule included."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import yaml
from slurm_cluster import slurm_cluster  # noqa: F401 - the fixture

from pipeline.tools import slurm_setup

# a guard against the plugin hanging, not a speed limit: a loaded 2-core machine takes minutes for the tiny chain
HANG_S = 900

pytest.importorskip("snakemake_executor_plugin_slurm", reason="pip install snakemake-executor-plugin-slurm")

SNAKEMAKE = [sys.executable, "-m", "snakemake"]
TARGET = "results/models/baseline/fold0/seed0/model.pt"


def _parse(repo, monkeypatch, *argv):
    """Snakemake's own reading of the command line and profiles, from the repository root."""
    from snakemake.cli import parse_args

    monkeypatch.chdir(repo)
    return parse_args(list(argv))[1]


def test_slurm_profile_survives_the_workflow_profile(repo, monkeypatch):
    args = _parse(repo, monkeypatch, "--profile", "profiles/slurm", "-n", "all")
    template = yaml.safe_load((repo / "profiles" / "slurm" / "config.yaml").read_text())
    assert args.executor == "slurm"
    assert args.latency_wait == template["latency-wait"] and args.keep_going is True
    assert args.retries == template["retries"] and args.jobs == template["jobs"]
    assert args.slurm_requeue is True
    assert args.set_resources["train"]["gpu"].value == 1 and args.set_resources["predict"]["gpu"].value == 1
    assert args.set_threads["train"].value == template["set-threads"]["train"]
    assert args.default_resources["mem_mb"].value == template["default-resources"]["mem_mb"]
    assert args.printshellcmds is True  # the workflow profile (profiles/default) is read as well
    default = yaml.safe_load((repo / "profiles" / "default" / "config.yaml").read_text())
    assert not set(default) & set(template), "profiles/default would override these keys of profiles/slurm"


def test_slurm_setup_writes_a_profile_the_dry_run_uses(repo, tmp_path, tiny):
    out = tmp_path / "profile"
    subprocess.run(
        ["photoz", "slurm-setup", "--account", "astro", "--partition", "cpu", "--gpu-partition", "gpu", "--out", out],
        check=True,
        capture_output=True,
    )
    profile = yaml.safe_load((out / "config.yaml").read_text())
    assert profile["default-resources"]["slurm_account"] == "astro"
    assert profile["default-resources"]["slurm_partition"] == "cpu"
    assert profile["set-resources"]["train"] == {"gpu": 1, "slurm_partition": "gpu"}
    gres = slurm_setup.make_profile(profile, partition="cpu", gres=True)
    assert gres["set-resources"]["train"] == {"gres": "gpu:1", "slurm_partition": "cpu"}

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(tiny, sort_keys=False))
    cmd = [*SNAKEMAKE, "-s", repo / "Snakefile", "--directory", tmp_path, TARGET, "production", "-n"]
    cmd += ["--profile", out, "--set-scatter", "shards=3", "--configfile", cfg]
    proc = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, timeout=120, cwd=repo)
    assert proc.returncode == 0, proc.stderr[-3000:]
    resources = {}
    for block in proc.stdout.split("rule ")[1:]:
        rule = block.split(":", 1)[0]
        lines = [line.strip() for line in block.splitlines() if line.strip().startswith("resources:")]
        resources.setdefault(rule, set()).update(lines)
    (train,) = resources["train"]
    assert "gpu=1" in train and "slurm_partition=gpu" in train and "slurm_account=astro" in train
    assert "mem_mb=8000" in train and "runtime=120" in train  # the rule's own, attempt 1
    assert all("gpu=1" not in r and "slurm_partition=cpu" in r for r in resources["cutouts"])
    assert proc.stdout.count("output: results/cutouts/shard-") == 3  # --set-scatter beats cutouts.shards (2)


@pytest.mark.slow
def test_tiny_workflow_runs_on_slurm(repo, tmp_path, tiny, slurm_cluster):  # noqa: F811
    out = tmp_path / "profile"
    subprocess.run(["photoz", "slurm-setup", "--partition", slurm_cluster.partition, "--out", out], check=True)
    profile = yaml.safe_load((out / "config.yaml").read_text())
    # test-only keys: no slurmdbd here, so follow jobs with squeue (MinJobAge is long); poll quickly; keep logs
    profile.update(
        {
            "slurm-status-command": "squeue",
            "slurm-init-seconds-before-status-checks": 2,
            "slurm-keep-successful-logs": True,
            "latency-wait": 10,
        }
    )
    (out / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(tiny, sort_keys=False))
    cmd = [*SNAKEMAKE, "-s", repo / "Snakefile", "--directory", tmp_path, TARGET, "--profile", out]
    cmd += ["--configfile", cfg]

    start = time.monotonic()
    # the plugin ignores SIGTERM when it never sees a job end: a hard timeout on the whole process group
    proc = subprocess.Popen(
        list(map(str, cmd)),
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, _ = proc.communicate(timeout=HANG_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, _ = proc.communicate()
        pytest.fail(f"snakemake on SLURM did not finish in {HANG_S} s:\n{stdout[-4000:]}\n{slurm_cluster.logs()}")
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, f"{stdout[-6000:]}\n{slurm_cluster.logs()}"

    run = tmp_path / "results" / "models" / "baseline" / "fold0" / "seed0"
    assert (run / "model.pt").exists()
    assert len(pd.read_csv(run / "history.csv")) == tiny["training"]["epochs"]

    # every job went through slurmctld: 1 simulate, 2 cutouts shards, match, pack and train, which got the GPU
    jobs = {}
    for job in slurm_cluster.jobs():
        jobs.setdefault(job["Comment"].removeprefix("rule_").split("_wildcards_")[0], []).append(job)
    assert {rule: len(js) for rule, js in jobs.items()} == {
        "simulate": 1,
        "cutouts": 2,
        "match": 1,
        "pack": 1,
        "train": 1,
    }, stdout[-3000:]
    assert all(j["JobState"] == "COMPLETED" for js in jobs.values() for j in js)
    (train,) = jobs["train"]
    assert "gpu:1" in train.get("TresPerJob", "") + train.get("TresPerNode", "")
    assert all("gpu" not in j.get("TresPerJob", "") for j in jobs["cutouts"])
    assert int(train["MinMemoryNode"].removesuffix("M")) == 8000  # the rule's memory for attempt 1
    assert (tmp_path / ".snakemake" / "slurm_logs" / "rule_train").is_dir()
    print(f"tiny workflow on SLURM: {elapsed:.0f} s")
