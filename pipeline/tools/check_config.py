"""Validate a workflow config (``photoz check-config``): the schema, the rules across keys, every model's
options against the network registry and the colour reference's options against its RAIL stages. The workflow runs
the same check at start (``workflow/rules/common.smk``).
"""

from __future__ import annotations

import argparse

import yaml

from pipeline.core.config import ConfigError, load_config, validate_config


def check_config(cfg: dict, source: str = "config") -> dict:
    """Validate ``cfg`` in place, defaults filled (:func:`pipeline.core.config.validate_config`), and build each
    model on the meta device (:func:`pipeline.nn.options.check_models`), and check the reference's RAIL options
    (:func:`pipeline.core.reference.check_reference`); raises :class:`ConfigError`."""
    from pipeline.core.reference import check_reference
    from pipeline.nn.options import check_models

    validate_config(cfg, source=source)
    problems = check_models(cfg) + check_reference(cfg)
    if problems:
        raise ConfigError(f"{source}: invalid config\n" + "\n".join(f"  {p}" for p in problems))
    return cfg


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="photoz check-config", description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--show", action="store_true", help="print the config with its defaults filled in")
    args = parser.parse_args(argv)
    cfg = check_config(load_config(args.config), args.config)
    print(yaml.safe_dump(cfg, sort_keys=False) if args.show else f"{args.config}: valid")


if __name__ == "__main__":
    main()
