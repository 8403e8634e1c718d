"""The colour-only reference photo-z: the RAIL estimators the workflow offers, and the check of their options.

The reference is an established photometric estimator run through LSST DESC's RAIL (its informer and estimator
stages, used as they are), so that every CNN is compared with what a photo-z user would otherwise get from the
same objects' magnitudes. This module is what the config check and the ``reference`` step share: which RAIL
stages an estimator name means, which of their options the pipeline sets itself, and the check of the user's
``reference.options`` against the stages' own ``config_options`` (as :mod:`pipeline.nn.options` checks network
options against the networks).

RAIL's stages read magnitudes from columns named in their options; the pipeline feeds them ``mag_<band>`` and
``magerr_<band>`` (dereddened AB magnitudes) and ``redshift``, so option values that name columns (``ref_band``,
``mag_limits``) use those names.
"""

from __future__ import annotations

import importlib
import itertools
from dataclasses import dataclass

__all__ = ["ESTIMATORS", "FIXED", "check_reference", "option_specs", "ref_band_default", "stage_classes"]


@dataclass(frozen=True)
class RailEstimator:
    """A RAIL estimator: the module holding its informer and estimator stages, and the distribution shipping it."""

    module: str
    informer: str
    estimator: str
    distribution: str


ESTIMATORS = {
    "flexzboost": RailEstimator(
        "rail.estimation.algos.flexzboost", "FlexZBoostInformer", "FlexZBoostEstimator", "pz-rail-flexzboost"
    ),
    "knn": RailEstimator(
        "rail.estimation.algos.k_nearneigh", "KNearNeighInformer", "KNearNeighEstimator", "pz-rail-sklearn"
    ),
}

# options the pipeline sets itself, and from what: a value of the user's would break the layout or the inputs
FIXED = {
    "bands": "survey.bands (mag_<band> columns)",
    "err_bands": "survey.bands (magerr_<band> columns)",
    "zmin": "zgrid.z_min",
    "zmax": "zgrid.z_max",
    "nzbins": "zgrid.n_bins (RAIL's grid is a refinement of the project's)",
    "redshift_col": "the datacube's z_spec",
    "id_col": "the datacube's object_id",
    "hdf5_groupname": "the in-memory tables the step passes",
    "chunk_size": "the in-memory tables the step passes",
    "output_mode": "the step (nothing is written by RAIL; the step writes the PDF store)",
    "nondetect_val": "NaN magnitudes (no detection or no measurement) are the non-detections",
    "calculated_point_estimates": "the step (z_reg is RAIL's zmode)",
    "recompute_point_estimates": "the step",
    "calc_summary_stats": "the step",
    "use_weights": "the datacube (it has no weight column)",
    "weights_column": "the datacube (it has no weight column)",
}

_NAMES = (f"_reference_check_{i}" for i in itertools.count())


def stage_classes(estimator: str) -> tuple[type, type]:
    """The RAIL informer and estimator classes of ``estimator`` (a key of :data:`ESTIMATORS`).

    Raises a ``ValueError`` naming the distribution to install when RAIL or the estimator's package is absent.
    """
    spec = ESTIMATORS[estimator]
    try:
        module = importlib.import_module(spec.module)
    except ImportError as err:
        raise ValueError(
            f"reference.estimator: {estimator!r} needs RAIL's {spec.distribution} ({err}): "
            f"pip install {spec.distribution}, or set reference.enabled: false"
        ) from None
    return getattr(module, spec.informer), getattr(module, spec.estimator)


def option_specs(estimator: str) -> dict:
    """``{option: ceci StageParameter}`` of every option of the estimator's two stages that the user may set."""
    from ceci.config import StageParameter
    from rail.core.common_params import SHARED_PARAMS

    specs = {}
    for cls in stage_classes(estimator):
        for key, value in cls.config_options.items():
            # options shared between RAIL stages are declared as the whole SHARED_PARAMS config; look the key up
            param = value if isinstance(value, StageParameter) else SHARED_PARAMS.get(key)
            if key not in FIXED and isinstance(param, StageParameter):
                specs.setdefault(key, param)
    return specs


def ref_band_default(bands, mag_column: str) -> str:
    """The magnitude column RAIL uses beside the colours: ``survey.mag_column`` when it is one of the bands'
    ``mag_<band>``, else the middle band's."""
    columns = [f"mag_{b}" for b in bands]
    return mag_column if mag_column in columns else columns[len(columns) // 2]


def _type_problem(value, dtype) -> str | None:
    """Why ``value`` is not of the option's type, or None. Stricter than ceci, which casts ("no" -> True)."""
    if dtype is None:
        return None
    if dtype is bool:
        ok = isinstance(value, bool)
    elif dtype is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif dtype is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    else:
        ok = isinstance(value, dtype)
    return None if ok else f"{value!r} must be of type {dtype.__name__}"


def _build(estimator: str, options: dict) -> str | None:
    """None when both RAIL stages accept ``options``, else the error's message."""
    for cls in stage_classes(estimator):
        accepted = {k: v for k, v in options.items() if k in cls.config_options}
        try:
            cls.make_stage(name=next(_NAMES), **accepted)
        except (TypeError, ValueError, KeyError) as err:
            return str(err) or type(err).__name__
    return None


def check_reference(cfg: dict) -> list[str]:
    """Problems of the ``reference`` section of a validated config, each naming its dotted key.

    Every key of ``reference.options`` must be an option of the RAIL stages of ``reference.estimator`` that the
    pipeline does not set itself (:data:`FIXED`), of the option's type; ``ref_band`` and ``mag_limits`` must name
    the ``mag_<band>`` columns of ``survey.bands``; and both stages must build with the options (RAIL's own checks).
    """
    ref = cfg.get("reference") or {}
    if not ref.get("enabled"):
        return []
    estimator = ref["estimator"]
    try:
        specs = option_specs(estimator)
    except ValueError as err:
        return [str(err)]
    options = dict(ref.get("options") or {})
    where = "reference.options"
    problems = []
    for key, value in options.items():
        if key in FIXED:
            problems.append(f"{where}.{key}: set by the pipeline from {FIXED[key]}; remove it")
        elif key not in specs:
            problems.append(
                f"{where}.{key}: unknown option of RAIL's {estimator}: valid are {', '.join(sorted(specs))}"
            )
        else:
            problem = _type_problem(value, specs[key].dtype)
            if problem:
                problems.append(f"{where}.{key}: {problem}")
    columns = [f"mag_{b}" for b in cfg["survey"]["bands"]]
    if isinstance(options.get("ref_band"), str) and options["ref_band"] not in columns:
        problems.append(f"{where}.ref_band: {options['ref_band']!r} is not one of {columns}")
    if isinstance(options.get("mag_limits"), dict):
        limits = options["mag_limits"]
        if set(limits) != set(columns):
            problems.append(f"{where}.mag_limits: give one limit per band, keys {columns}; got {sorted(limits)}")
        problems += [
            f"{where}.mag_limits.{k}: {v!r} must be a number"
            for k, v in limits.items()
            if isinstance(v, bool) or not isinstance(v, int | float)
        ]
    if problems:
        return problems
    full = {
        "bands": columns,
        "err_bands": [f"magerr_{b}" for b in cfg["survey"]["bands"]],
        "ref_band": ref_band_default(cfg["survey"]["bands"], cfg["survey"]["mag_column"]),
        "hdf5_groupname": "",
        "output_mode": "return",
        **options,
    }
    error = _build(estimator, full)
    if error is None:
        return []
    # name the option(s) that break a stage on their own; else the options together
    base = {k: v for k, v in full.items() if k not in options}
    culprits = [key for key in options if _build(estimator, {**base, key: options[key]}) is not None]
    if culprits:
        return [
            f"{where}.{key}: {options[key]!r} is not valid for RAIL's {estimator}: "
            f"{_build(estimator, {**base, key: options[key]})}"
            for key in culprits
        ]
    return [f"{where}: these options do not build RAIL's {estimator} stages: {error}"]
