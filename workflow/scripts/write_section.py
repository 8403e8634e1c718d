"""Write the part of the config one step reads (rule section_config's ``params.cfg``) as YAML, atomically."""

import sys
from pathlib import Path

import yaml

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive
sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1]))

from pipeline.core.io import atomic_path  # noqa: E402

with atomic_path(snakemake.output[0]) as tmp:
    tmp.write_text(yaml.safe_dump(snakemake.params.cfg, sort_keys=False))
log = Path(snakemake.log[0])
log.parent.mkdir(parents=True, exist_ok=True)
log.write_text(f"wrote {snakemake.output[0]}\n")
