"""Write a user's SLURM profile: the repository's ``profiles/slurm`` template with an account and partitions.

Snakemake looks a profile name up in the current directory, then in the user's config directory
(``~/.config/snakemake/`` on Linux), then the site's. ``photoz slurm-setup`` writes
``~/.config/snakemake/slurm/config.yaml`` by default, after which ``snakemake --profile slurm all`` works from the
repository root. Rerun it after the template (``profiles/slurm/config.yaml``) changes.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import yaml

TEMPLATE = Path(__file__).resolve().parents[2] / "profiles" / "slurm" / "config.yaml"
GPU_RULES = ("train", "predict")  # the rules that ask for one GPU


def user_profile_dir(name: str = "slurm") -> Path:
    """The folder Snakemake searches for ``--profile <name>`` after the current directory (the user's)."""
    from snakemake.cli import get_appdirs

    return Path(get_appdirs().user_config_dir) / name


def make_profile(
    template: dict,
    *,
    account: str | None = None,
    partition: str | None = None,
    gpu_partition: str | None = None,
    gres: bool = False,
) -> dict:
    """The template profile with the account, the default partition and the GPU rules' partition filled in.

    Parameters
    ----------
    template
        The parsed ``profiles/slurm/config.yaml``.
    account, partition
        ``slurm_account`` and ``slurm_partition`` of every job (``None``: the cluster's default).
    gpu_partition
        ``slurm_partition`` of the GPU rules (``None``: ``partition``).
    gres
        Ask for the GPU with ``--gres=gpu:1`` instead of ``--gpus=1``, for clusters that accept only ``--gres``.
    """
    profile = copy.deepcopy(template)
    defaults = dict(profile.get("default-resources") or {})
    if account:
        defaults["slurm_account"] = account
    if partition:
        defaults["slurm_partition"] = partition
    profile["default-resources"] = defaults
    rules = {name: dict(res or {}) for name, res in (profile.get("set-resources") or {}).items()}
    for name in GPU_RULES:
        res = rules.setdefault(name, {})
        if gres:
            res.pop("gpu", None)
            res["gres"] = "gpu:1"
        else:
            res.pop("gres", None)
            res["gpu"] = 1
        if gpu_partition or partition:
            res["slurm_partition"] = gpu_partition or partition
    profile["set-resources"] = rules
    return profile


def write_profile(profile: dict, out: Path, template: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "config.yaml"
    header = (
        f"# Written by `photoz slurm-setup` from {template}; rerun it after that template changes.\n"
        "# profiles/default (the workflow profile) is read on top of this one and wins per top-level key.\n"
    )
    path.write_text(header + yaml.safe_dump(profile, sort_keys=False))
    return path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="photoz slurm-setup", description=__doc__.splitlines()[0])
    parser.add_argument("--account", help="SLURM account of every job (default: the cluster's default account)")
    parser.add_argument("--partition", help="partition of every job (default: the cluster's default partition)")
    parser.add_argument("--gpu-partition", help="partition of the GPU rules (train, predict); default --partition")
    parser.add_argument("--gres", action="store_true", help="ask for GPUs with --gres=gpu:1 instead of --gpus=1")
    parser.add_argument("--out", type=Path, help="profile folder to write (default: ~/.config/snakemake/slurm)")
    parser.add_argument("--template", type=Path, default=TEMPLATE, help="template profile (default: %(default)s)")
    args = parser.parse_args(argv)
    if not args.template.is_file():
        parser.error(f"template {args.template} not found: run from a checkout of the repository or pass --template")
    template = yaml.safe_load(args.template.read_text())
    profile = make_profile(
        template, account=args.account, partition=args.partition, gpu_partition=args.gpu_partition, gres=args.gres
    )
    default = user_profile_dir()
    out = args.out or default
    path = write_profile(profile, out, args.template)
    print(f"wrote {path}")
    print(f"run from the repository root: snakemake --profile {'slurm' if out == default else out} all")
