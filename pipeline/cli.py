"""The ``photoz`` console command: one verb per workflow rule, each a thin call of ``pipeline.steps.<rule>.main``.

A rule, its verb and its step module share one name (``drop_modalities`` -> ``photoz drop-modalities`` ->
:mod:`pipeline.steps.drop_modalities`). Errors are reported as one line, ``photoz <verb>: error: <message>``, with
exit status 1; ``--debug`` (anywhere on the command line) or ``PHOTOZ_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import importlib
import os
import sys

# verb -> what it does; the module is pipeline.steps.<verb with "_"> (imported lazily: `photoz --help` is instant)
STEPS = {
    "simulate": "simulate a survey: mosaics, source list and spec-z catalogs",
    "cutouts": "resample mosaics onto a common grid per source",
    "detect": "detect the sources of mosaics (photutils) when the survey has no catalog",
    "photometry": "photutils photometry of every object of a cutout shard",
    "match": "compile spec-z catalogs, match them to sources, cut and assign folds",
    "pack": "pack cutouts and the training catalog into the datacube",
    "import-cube": "import cutouts made elsewhere (a P19-format .npz) as a datacube",
    "train": "train one model on one fold with one seed",
    "reference": "colour-only reference photo-z of one test fold through RAIL (FlexZBoost or kNN)",
    "ensemble": "average seeds' PDFs and assemble the folds into predictions",
    "evaluate": "point and PDF metrics of a predictions file",
    "compare": "paired bootstrap test between two predictions files",
    "drop-modalities": "photo-z of each test fold with one modality dropped at a time (Sec. 7.4)",
    "report": "self-contained HTML report",
    "predict": "photo-z PDFs for a catalog of cutouts with every trained model",
    "merge": "join the chunks of a catalog-wide photo-z run into one catalog",
}
# verbs that are no workflow rule
TOOLS = {
    "check-config": ("pipeline.tools.check_config", "validate a config file against the schema"),
    "slurm-setup": ("pipeline.tools.slurm_setup", "write your SLURM profile (account, partitions) for --profile slurm"),
}
# errors of the input (files, values, config): reported by their message alone
INPUT_ERRORS = (ValueError, LookupError, OSError)


def step_module(verb: str) -> str:
    """The module whose ``main(argv)`` runs ``verb``."""
    if verb in TOOLS:
        return TOOLS[verb][0]
    return f"pipeline.steps.{verb.replace('-', '_')}"


def _usage() -> str:
    rows = {**STEPS, **{verb: text for verb, (_, text) in TOOLS.items()}}
    width = max(map(len, rows))
    lines = ["usage: photoz [--debug] <verb> [options]   (photoz <verb> --help for its options)", "", "verbs:"]
    lines += [f"  {name:<{width}}  {text}" for name, text in rows.items()]
    return "\n".join(lines)


def describe(err: BaseException) -> str:
    """The message of an error as a user reads it: its text, prefixed by its type unless it is an input error."""
    text = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    if isinstance(err, INPUT_ERRORS) and text:
        return str(text)
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get("PHOTOZ_DEBUG", "") not in ("", "0") or "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] == "--version":
        from pipeline import __version__

        print(__version__)
        return 0
    verb, rest = argv[0], argv[1:]
    if verb not in STEPS and verb not in TOOLS:
        print(f"photoz: unknown verb {verb!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    try:
        importlib.import_module(step_module(verb)).main(rest)
    except KeyboardInterrupt:
        print(f"photoz {verb}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if debug:
            raise
        print(f"photoz {verb}: error: {describe(err)}  (--debug shows the traceback)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
