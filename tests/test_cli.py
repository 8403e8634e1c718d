"""The ``photoz`` console command: one verb per rule, named like it; one-line errors; the package's import graph."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from pipeline.cli import STEPS, TOOLS, main, step_module
from pipeline.tools.code_hash import ROOT, import_closure, imports_of, module_file, module_name


def workflow_steps(repo) -> dict[str, str]:
    """Rule name -> the verb its ``params.step`` runs, for every rule of the workflow that runs a step."""
    out = {}
    for smk in sorted((repo / "workflow" / "rules").glob("*.smk")):
        parts = re.split(r"^[ \t]*rule (\w+):", smk.read_text(), flags=re.M)
        for rule, body in zip(parts[1::2], parts[2::2], strict=True):
            step = re.search(r'step="([\w-]+)"', body)
            if step:
                out[rule] = step.group(1)
    return out


def test_rule_verb_and_module_share_one_name(repo):
    steps = workflow_steps(repo)
    assert {"simulate", "cutouts", "match", "pack", "train", "ensemble", "evaluate", "compare", "report"} <= set(steps)
    for rule, verb in steps.items():
        assert verb == rule.replace("_", "-"), (rule, verb)
        assert verb in STEPS, verb
        assert module_file(step_module(verb)) == ROOT / "steps" / f"{rule}.py"
    # every verb of a step is some rule's (no orphan step modules)
    assert set(STEPS) == set(steps.values())
    assert {p.stem for p in (ROOT / "steps").glob("*.py")} - {"__init__"} == {v.replace("-", "_") for v in STEPS}


def test_every_verb_has_help(capsys):
    assert main(["--help"]) == 0
    listed = capsys.readouterr().out
    for verb in [*STEPS, *TOOLS]:
        assert verb in listed
        with pytest.raises(SystemExit) as exit_:
            main([verb, "--help"])
        assert exit_.value.code == 0 and f"photoz {verb}" in capsys.readouterr().out


def test_unknown_verb_is_refused(capsys):
    assert main(["fly"]) == 2
    assert "unknown verb 'fly'" in capsys.readouterr().err


def test_bad_input_is_one_line_and_debug_gives_the_traceback(tmp_path, capsys):
    missing = tmp_path / "nowhere.parquet"
    argv = ["evaluate", "--predictions", str(missing), "--outlier-threshold", "0.05", "--out", str(tmp_path / "m.json")]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("photoz evaluate: error: predictions not found: ")
    assert "Traceback" not in err[0]
    with pytest.raises(FileNotFoundError, match="predictions not found"):
        main(["--debug", *argv])
    # the console script: same line, exit status 1
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", *argv], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "predictions not found" in proc.stderr


def test_check_config(repo, tmp_path, capsys):
    assert main(["check-config", str(repo / "config" / "config.yaml")]) == 0
    assert "valid" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text((repo / "config" / "config.yaml").read_text().replace("n_bins: 180", "n_bins: many"))
    assert main(["check-config", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("photoz check-config: error: ") and "zgrid.n_bins: 'many' is not of type 'integer'" in err


def test_no_import_cycle_and_no_step_imports_another_step():
    modules = {module_name(f): f for f in ROOT.rglob("*.py")}
    edges = {m: imports_of(f, m, parents=False) - {m} for m, f in modules.items()}
    steps = {m for m in modules if m.startswith("pipeline.steps.")}
    crossing = sorted((a, b) for a in steps for b in edges[a] if b in steps)
    assert not crossing, crossing
    # depth-first search for a cycle of direct imports
    state: dict[str, int] = {}

    def visit(m, path):
        state[m] = 1
        for n in sorted(edges.get(m, ())):
            assert state.get(n) != 1, "import cycle: " + " -> ".join([*path, m, n])
            if n not in state:
                visit(n, [*path, m])
        state[m] = 2

    for m in sorted(modules):
        if m not in state:
            visit(m, [])


def test_code_hash_closure_holds_every_module_a_step_imports():
    # each step imported alone (the package's modules dropped from sys.modules in between): what Python loads is in
    # the static closure the rule's code hash covers
    script = (
        "import importlib, json, sys\n"
        "out = {}\n"
        f"for verb in {sorted(STEPS)!r}:\n"
        "    for name in [m for m in sys.modules if m == 'pipeline' or m.startswith('pipeline.')]:\n"
        "        del sys.modules[name]\n"
        "    importlib.import_module('pipeline.steps.' + verb.replace('-', '_'))\n"
        "    out[verb] = sorted(m for m in sys.modules if m.startswith('pipeline'))\n"
        "print(json.dumps(out))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded = json.loads(proc.stdout)
    for verb, modules in loaded.items():
        closure = {module_name(f) for f in import_closure(step_module(verb))}
        assert set(modules) <= closure, (verb, sorted(set(modules) - closure))
    # and the closures are the steps' own: the simulator is no part of training, the networks none of matching
    assert not any(m.startswith("pipeline.sim") for m in loaded["train"])
    assert {"pipeline.nn", "pipeline.core.preprocess"} <= {module_name(f) for f in import_closure(step_module("train"))}
    assert not any(module_name(f).startswith("pipeline.nn") for f in import_closure(step_module("match")))
