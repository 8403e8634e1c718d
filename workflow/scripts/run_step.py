"""Run one ``photoz`` step for a Snakemake rule: argv as a list (never a shell string), output into the log."""

import os
import sys
from pathlib import Path

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive
threads = str(snakemake.threads)
for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[var] = threads  # before numpy or torch load, so parallel jobs do not oversubscribe the cores

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1]))

log = Path(snakemake.log[0])
log.parent.mkdir(parents=True, exist_ok=True)
with open(log, "w") as fh:
    os.dup2(fh.fileno(), 1)
    os.dup2(fh.fileno(), 2)
sys.stdout = os.fdopen(1, "w", buffering=1)
sys.stderr = os.fdopen(2, "w", buffering=1)

from pipeline.cli import main  # noqa: E402

sys.exit(main([snakemake.params.step, *map(str, snakemake.params.argv)]))
