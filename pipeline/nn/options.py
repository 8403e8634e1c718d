"""Checking a model's config entry (``arch`` and ``options``) before anything runs, against the registry itself.

The workflow validates its config at start: a misspelt option, a value of the wrong type or an invalid value must
stop ``snakemake -n`` naming the model and the key, not the first training job hours later. The options are those
of the network's constructor (the registry is the one list), and a value is good when the network builds with
it: each model is built on PyTorch's ``meta`` device, which allocates no memory and runs no computation.
"""

from __future__ import annotations

import inspect

import torch

from .registry import build_model, list_models, model_class

_FIXED = ("self", "bands", "n_bins", "image_size")


def option_defaults(arch: str) -> dict:
    """The options of network ``arch`` and their defaults (``inspect.Parameter.empty`` where there is none)."""
    params = inspect.signature(model_class(arch).__init__).parameters
    return {k: p.default for k, p in params.items() if k not in _FIXED}


def _build(arch, bands, n_bins, image_size, options) -> str | None:
    """None when the network builds with ``options``, else the error's message."""
    try:
        with torch.device("meta"):
            build_model(arch, bands, n_bins, image_size, **options)
    except (TypeError, ValueError, KeyError, IndexError, RuntimeError) as err:
        return str(err) or type(err).__name__
    return None


def check_model_entry(where: str, arch: str, options: dict, bands, n_bins: int, image_size: int) -> list[str]:
    """Problems of one model entry, each naming its dotted key (``where`` is e.g. ``models.baseline``)."""
    if arch not in list_models():
        return [f"{where}.arch: {arch!r} is not a network: valid are {', '.join(list_models())}"]
    options = dict(options or {})
    defaults = option_defaults(arch)
    problems = [
        f"{where}.options.{key}: unknown option of arch {arch!r}: valid are {', '.join(defaults)}"
        for key in options
        if key not in defaults
    ]
    for key, value in options.items():
        default = defaults.get(key)
        if isinstance(default, bool) and not isinstance(value, bool):
            problems.append(f"{where}.options.{key}: {value!r} must be true or false")
        elif isinstance(default, float) and (isinstance(value, bool) or not isinstance(value, int | float)):
            problems.append(f"{where}.options.{key}: {value!r} must be a number")
    if problems:
        return problems
    error = _build(arch, bands, n_bins, image_size, options)
    if error is None:
        return []
    # name the option(s) that break the build on their own; else the options together
    culprits = [key for key in options if _build(arch, bands, n_bins, image_size, {key: options[key]}) is not None]
    if culprits:
        return [
            f"{where}.options.{key}: {options[key]!r} is not valid for arch {arch!r}: "
            f"{_build(arch, bands, n_bins, image_size, {key: options[key]})}"
            for key in culprits
        ]
    return [f"{where}.options: these options do not build a {arch!r} network: {error}"]


def check_models(cfg: dict) -> list[str]:
    """Every model entry of a validated workflow config, its bands and sizes as the run will build it."""
    from pipeline.core.bands import sort_bands

    survey_bands = sort_bands(cfg["survey"]["bands"])
    problems = []
    for name, spec in cfg["models"].items():
        problems += check_model_entry(
            f"models.{name}", spec["arch"], spec.get("options"), spec.get("bands") or survey_bands,
            cfg["zgrid"]["n_bins"], cfg["cutouts"]["size"],
        )  # fmt: skip
    return problems
