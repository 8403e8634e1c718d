"""The ``photoz`` console command: one subcommand per pipeline step, each a thin call of that step's ``main``."""

from __future__ import annotations

import importlib
import sys

# subcommand -> module whose main(argv) runs it; modules are imported lazily so that `photoz --help` is instant
STEPS = {
    "simulate": ("pipeline.simulate", "simulate a survey: mosaics, source list and spec-z catalogs"),
    "cutouts": ("pipeline.cutouts", "resample mosaics onto a common grid per source"),
    "match": ("pipeline.specz", "compile spec-z catalogs, match them to sources, cut and assign folds"),
    "pack": ("pipeline.datacube", "pack cutouts and the training catalog into the datacube store"),
    "import-cube": ("pipeline.import_cube", "import a P19-format .npz datacube (e.g. the SDSS cube) as a store"),
    "train": ("pipeline.train", "train one model on one fold with one seed"),
    "predict": ("pipeline.predict", "photo-z PDFs for a catalog of cutouts with every trained model"),
    "ensemble": ("pipeline.ensemble", "average seeds' PDFs and assemble the folds into predictions"),
    "evaluate": ("pipeline.metrics", "point and PDF metrics of a predictions file"),
    "drop-test": ("pipeline.drop_test", "photo-z of each test fold with one modality dropped at a time (Sec. 7.4)"),
    "compare": ("pipeline.bootstrap", "paired bootstrap test between two predictions files"),
    "report": ("pipeline.report", "self-contained HTML report"),
    "check-config": ("pipeline.config", "validate a config file against the schema"),
    "slurm-setup": ("pipeline.slurm_setup", "write your SLURM profile (account, partitions) for --profile slurm"),
}


def _usage() -> str:
    width = max(map(len, STEPS))
    lines = ["usage: photoz <step> [options]   (photoz <step> --help for a step's options)", "", "steps:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in STEPS.items()]
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] == "--version":
        from pipeline import __version__

        print(__version__)
        return 0
    step, rest = argv[0], argv[1:]
    if step not in STEPS:
        print(f"photoz: unknown step {step!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(STEPS[step][0])
    module.main(rest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
