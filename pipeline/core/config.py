"""Load, validate and complete the workflow config (``workflow/schemas/config.schema.yaml``).

The same function serves the Snakefile (at workflow start) and the steps that read the config themselves, so a
wrong key or value is reported the same way everywhere: with the dotted path of the key.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """A config that does not satisfy the schema or the cross-key rules."""


def load_schema() -> dict:
    """The config schema (a fresh copy: callers may change it)."""
    return copy.deepcopy(_schema())


@functools.cache
def _schema() -> dict:
    if not SCHEMA_PATH.exists():
        raise FileNotFoundError(
            f"config schema not found at {SCHEMA_PATH}: install the project in editable mode (pip install -e .)"
        )
    return yaml.safe_load(SCHEMA_PATH.read_text())


def schema_default(key: str):
    """The schema's default of a dotted config key (``evaluation.outlier_threshold``): the one place defaults live,
    for the steps' command-line options too."""
    node = _schema()
    for part in key.split("."):
        node = node["properties"][part]
    value = copy.deepcopy(node["default"])
    _fill_defaults(value, node)
    return value


def load_config(path, sections=None) -> dict:
    """Read a YAML config, validate it and fill in the defaults; raises :class:`ConfigError`.

    ``sections`` names the top-level keys a step needs: a file holding only those (as the workflow writes for each
    step, see :func:`section_config`) is then validated against that part of the schema alone; a file with more
    (a whole config, given to a step by hand) is validated whole.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    cfg = yaml.safe_load(path.read_text()) or {}
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path}: the config must be a mapping of keys, got {type(cfg).__name__}")
    if sections is not None and not set(cfg) <= set(sections):
        sections = None
    return validate_config(cfg, source=str(path), sections=sections)


def validate_config(cfg: dict, source: str = "config", sections=None) -> dict:
    """Validate ``cfg`` in place against the schema, fill defaults, derive paths; return it."""
    import jsonschema

    schema = load_schema()
    if sections is not None:
        schema = _sub_schema(schema, sections)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(cfg), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = [f"  {_where(e)}: {e.message}" for e in errors]
        raise ConfigError(f"{source}: invalid config\n" + "\n".join(lines))
    _fill_defaults(cfg, schema)
    if sections is None:
        _derive(cfg)
        _resolve(cfg)
        _check_cross_keys(cfg, source)
    return cfg


def _sub_schema(schema: dict, sections) -> dict:
    unknown = set(sections) - set(schema["properties"])
    if unknown:
        raise ValueError(f"unknown config sections {sorted(unknown)}")
    sub = dict(schema)
    sub["properties"] = {k: v for k, v in schema["properties"].items() if k in sections}
    sub["required"] = [k for k in schema.get("required", []) if k in sections]
    return sub


def section_config(cfg: dict, sections, models=None) -> dict:
    """The part of a validated config that a step reads; ``models`` keeps only those entries of ``models``."""
    out = {k: copy.deepcopy(cfg[k]) for k in sections if k in cfg}
    if models is not None:
        out["models"] = {m: copy.deepcopy(cfg["models"][m]) for m in models}
    return out


def _where(error) -> str:
    path = ".".join(str(p) for p in error.absolute_path)
    return path or "(top level)"


def _fill_defaults(instance, schema: dict) -> None:
    if isinstance(instance, dict):
        for key, sub in schema.get("properties", {}).items():
            if key not in instance and "default" in sub:
                instance[key] = copy.deepcopy(sub["default"])
            if key in instance:
                _fill_defaults(instance[key], sub)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key, value in instance.items():
                if key not in schema.get("properties", {}):
                    _fill_defaults(value, extra)
    elif isinstance(instance, list) and isinstance(schema.get("items"), dict):
        for item in instance:
            _fill_defaults(item, schema["items"])


def simulation_dir(cfg: dict) -> str:
    return f"{cfg['results']}/survey"


def reference_name(cfg: dict) -> str | None:
    """The name of the colour reference's predictions (``reference.name``, default ``rail-<estimator>``), or None
    when it is switched off."""
    ref = cfg.get("reference") or {}
    if not ref.get("enabled"):
        return None
    return ref.get("name") or f"rail-{ref['estimator']}"


def detected_sources_path(cfg: dict) -> str:
    """Where rule ``detect`` writes the source catalog of a survey that has none."""
    return f"{cfg['results']}/detect/sources.parquet"


def _derive(cfg: dict) -> None:
    """Point the survey at the simulated files when the config simulates it (with the header keywords of a
    multi-epoch simulation), or at the detected sources when it has no catalog; expand ``{survey}`` in spec-z
    paths."""
    if cfg.get("reference", {}).get("enabled"):
        cfg["reference"]["name"] = reference_name(cfg)
    if "simulation" not in cfg:
        if "cube" not in cfg["survey"] and "sources" not in cfg["survey"]:
            cfg["survey"]["sources"] = detected_sources_path(cfg)
        return
    if cfg["simulation"].get("epochs", 1) > 1:
        # each epoch is written in its own units (MAGZERO) and cut into tiles of one exposure (EPOCH)
        cfg["survey"]["zero_point_keys"] = cfg["survey"].get("zero_point_keys") or ["MAGZERO"]
        cfg["cutouts"]["exposure_keys"] = cfg["cutouts"].get("exposure_keys") or ["EPOCH"]
    sim = simulation_dir(cfg)
    for cat in cfg.get("specz", {}).get("catalogs", []):
        cat["path"] = cat["path"].replace("{survey}", sim)
    survey = cfg["survey"]
    survey.setdefault("mosaics", {b: f"{sim}/mosaics/{b}/*.fits" for b in survey["bands"]})
    survey.setdefault("sources", f"{sim}/sources.parquet")


def _resolve(cfg: dict) -> None:
    """Complete what other keys imply: the survey's name, the paper's seeds, each model's options (over
    ``model_defaults``) and loss (over ``training.loss``), so that a model's own section file holds all of it."""
    survey = cfg["survey"]
    survey.setdefault("name", cfg["simulation"]["preset"] if "simulation" in cfg else "survey")
    if cfg["training"]["seeds"] == "paper":  # Sec. 3.4: five seeds for SDSS, three for CFHTLS and HSC
        cfg["training"]["seeds"] = list(range(5 if survey["name"] == "sdss" else 3))
    defaults = cfg["model_defaults"]["options"]
    for spec in cfg["models"].values():
        spec["options"] = {**defaults, **(spec.get("options") or {})}
        spec["loss"] = {**cfg["training"]["loss"], **(spec.get("loss") or {})}


def _check_cross_keys(cfg: dict, source: str) -> None:
    from pipeline.core.bands import sort_bands

    problems = []
    survey_bands = list(cfg["survey"]["bands"])
    try:
        survey_bands = sort_bands(survey_bands)
    except ValueError as err:
        problems.append(f"survey.bands: {err}")
    for name, spec in cfg["models"].items():
        if "bands" not in spec:
            continue
        unknown = [b for b in spec["bands"] if b not in survey_bands]
        if unknown:
            problems.append(
                f"models.{name}.bands: {', '.join(map(repr, unknown))} not in survey.bands: valid are {survey_bands}"
            )
        else:  # the datacube's channel order, whatever order they are written in
            spec["bands"] = [b for b in survey_bands if b in spec["bands"]]
    imported = "cube" in cfg["survey"]
    if imported and "simulation" in cfg:
        problems.append("survey.cube: imported cutouts and a simulation block exclude each other: remove one")
    mosaics = cfg["survey"].get("mosaics")
    if imported:  # the datacube comes whole from the imported cutouts
        problems += _cube_problems(cfg["survey"]["cube"], survey_bands)
    elif mosaics is None:
        problems.append("survey.mosaics: required when there is no simulation block (or survey.cube)")
    else:
        missing = [b for b in cfg["survey"]["bands"] if b not in mosaics]
        if missing:
            problems.append(f"survey.mosaics: no glob for band(s) {', '.join(missing)}")
    detect_bands = cfg.get("detect", {}).get("bands") or []
    unknown = [b for b in detect_bands if b not in survey_bands]
    if unknown:
        problems.append(f"detect.bands: {', '.join(map(repr, unknown))} not in survey.bands: valid are {survey_bands}")
    if "specz" not in cfg:
        if not imported:
            problems.append("specz: required unless the survey is imported cutouts (survey.cube)")
    catalogs = cfg["specz"]["catalogs"] if "specz" in cfg else []  # none with imported cutouts
    for i, cat in enumerate(catalogs):
        if "{survey}" in cat["path"]:
            problems.append(f"specz.catalogs.{i}.path: {{survey}} stands for the simulated survey, and there is none")
    names = [c["name"] for c in catalogs]
    if len(set(names)) != len(names):
        problems.append(f"specz.catalogs: duplicate names in {names}")
    for i, cat in enumerate(catalogs):
        lo, hi = cat["z_range"]
        if not lo < hi:
            problems.append(f"specz.catalogs.{i}.z_range: lower bound {lo} must be below upper bound {hi}")
    bad = [f for f in cfg["folds"]["test"] or [] if f >= cfg["folds"]["n"]]
    if bad:
        problems.append(
            f"folds.test: fold(s) {bad} do not exist: there are {cfg['folds']['n']} folds, 0 to {cfg['folds']['n'] - 1}"
        )
    tr = cfg["training"]
    if tr["early_stopping_patience"] and tr["val_fraction"] == 0:
        problems.append("training.early_stopping_patience: early stopping needs a validation set, val_fraction is 0")
    for name, spec in cfg["models"].items():
        loss = spec.get("loss") or tr["loss"]
        if loss["classification"] == 0 and loss["regression"] == 0:
            problems.append(f"models.{name}.loss: the classification and regression weights are both 0")
    zg = cfg["zgrid"]
    if not zg["z_max"] > zg["z_min"]:
        problems.append(f"zgrid.z_max: {zg['z_max']} must exceed zgrid.z_min {zg['z_min']}")
    reference = reference_name(cfg)
    problems += _reference_problems(cfg, reference, imported)
    estimators = [*cfg["models"], *([reference] if reference else [])]
    for i, pair in enumerate(cfg["evaluation"]["compare"]):
        for role in ("baseline", "candidate"):
            if pair[role] not in estimators:
                problems.append(f"evaluation.compare.{i}.{role}: {pair[role]!r} is not one of models {estimators}")
    if problems:
        raise ConfigError(f"{source}: invalid config\n" + "\n".join(f"  {p}" for p in problems))


def _cube_problems(cube: dict, bands) -> list[str]:
    """Cross-key checks of survey.cube (the imported cutouts)."""
    problems = []
    if cube.get("catalog") is None and not str(cube["path"]).lower().endswith(".npz"):
        problems.append("survey.cube.catalog: required unless survey.cube.path is an .npz holding its 'labels'")
    columns = cube["columns"]
    unknown = [b for b in columns.get("mags", {}) if b not in bands]
    if unknown:
        problems.append(f"survey.cube.columns.mags: band(s) {unknown} not in survey.bands {list(bands)}")
    if columns.get("ebv") is None and not (columns.get("ra") and columns.get("dec")):
        problems.append("survey.cube.columns.ebv: null reads E(B-V) from the SFD map, which needs columns.ra and .dec")
    return problems


def _reference_problems(cfg: dict, name: str | None, imported: bool) -> list[str]:
    """Where the colour reference gets its magnitudes and extinction coefficients, and its name."""
    if name is None:
        return []
    ref, problems = cfg["reference"], []
    if name in cfg["models"]:
        problems.append(f"reference.name: {name!r} is also the name of a model: give the reference another name")
    if ref["magnitudes"] == "photometry" and imported:
        problems.append(
            "reference.magnitudes: 'photometry' is measured on the survey's images, and an imported cube "
            "(survey.cube) has none: use 'catalog' with survey.sources, or set reference.enabled: false"
        )
    if ref["magnitudes"] == "catalog" and "sources" not in cfg["survey"]:
        problems.append("reference.magnitudes: 'catalog' reads survey.sources, and there is none")
    if ref["extinction"] is None:
        if "simulation" not in cfg:
            problems.append(
                "reference.extinction: required for a real survey (band -> A_band/E(B-V) of your filters, e.g. "
                "SDSS u: 4.239, g: 3.303, r: 2.285, i: 1.698, z: 1.263 from Schlafly & Finkbeiner 2011)"
            )
    else:
        missing = [b for b in cfg["survey"]["bands"] if b not in ref["extinction"]]
        if missing:
            problems.append(f"reference.extinction: no coefficient for band(s) {', '.join(missing)}")
    return problems
