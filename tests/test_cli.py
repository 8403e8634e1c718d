"""The ``photoz`` console command: one subcommand per step, clear errors."""

from __future__ import annotations

import subprocess
import sys

from pipeline.cli import STEPS, main

EXPECTED = {"simulate", "cutouts", "match", "pack", "train", "predict", "ensemble", "evaluate", "compare", "report"}


def test_every_step_has_a_subcommand_with_help(capsys):
    assert EXPECTED <= set(STEPS)
    assert main(["--help"]) == 0
    listed = capsys.readouterr().out
    assert all(step in listed for step in EXPECTED)
    for step in EXPECTED:
        proc = subprocess.run(
            [sys.executable, "-m", "pipeline.cli", step, "--help"], capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0 and f"photoz {step}" in proc.stdout, (step, proc.stderr[-2000:])


def test_unknown_step_is_refused(capsys):
    assert main(["fly"]) == 2
    assert "unknown step 'fly'" in capsys.readouterr().err


def test_check_config(repo, capsys):
    main(["check-config", str(repo / "config" / "config.yaml")])
    assert "valid" in capsys.readouterr().out
