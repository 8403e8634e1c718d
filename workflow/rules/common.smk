# Config validation, derived names and input functions shared by the rules.
import glob
import re
import sys
from pathlib import Path

sys.path.insert(0, workflow.basedir)  # the pipeline package of this checkout, installed or not

from pipeline.core.config import ConfigError, detected_sources_path, section_config  # noqa: E402
from pipeline.core.mosaics import stack_argv  # noqa: E402
from pipeline.tools.check_config import check_config  # noqa: E402
from pipeline.tools.code_hash import code_hash  # noqa: E402

try:
    check_config(config, source="config")
except ConfigError as err:
    raise WorkflowError(str(err)) from None

R = config["results"]
SIMULATED = "simulation" in config
# cutouts made elsewhere, imported as the datacube instead of cut from mosaics and packed
IMPORTED = "cube" in config["survey"]
CUBE = config["survey"].get("cube")
DATACUBE = f"{R}/datacube/train.h5"
DATACUBE_CATALOG = f"{R}/datacube/train.parquet"
SURVEY_DIR = f"{R}/survey"
SOURCES = f"{SURVEY_DIR}/sources.parquet" if SIMULATED else config["survey"].get("sources")
# a survey of mosaics without a source catalog: rule detect makes it (survey.sources was derived to its output)
DETECT = not SIMULATED and not IMPORTED and SOURCES == detected_sources_path(config)
MODELS = list(config["models"])
FOLDS = list(range(config["folds"]["n"]))
SEEDS = list(config["training"]["seeds"])
PAIRS = [(p["baseline"], p["candidate"]) for p in config["evaluation"]["compare"]]
# models trained with modality dropout (paper Sec. 7.4): each gets the test-time drop of one modality at a time
DROP_MODELS = [m for m, spec in config["models"].items() if (spec.get("options") or {}).get("modality_dropout", 0) > 0]
STEP = f"{workflow.basedir}/workflow/scripts/run_step.py"


# cutouts and catalog-wide inference are scattered over sky shards: `cutouts.shards` by default, or
# `--set-scatter shards=N`; a job's {scatteritem} is "K-of-N" (K from 1)
scattergather:
    shards=config["cutouts"]["shards"],


wildcard_constraints:
    model="|".join(map(re.escape, MODELS)),
    baseline="|".join(map(re.escape, MODELS)),
    candidate="|".join(map(re.escape, MODELS)),
    fold=r"\d+",
    seed=r"\d+",


def survey_inputs(kind):
    """The simulated survey folder, or the user's files of one kind (sources, specz, mosaics)."""
    if SIMULATED:
        return [SURVEY_DIR]
    if kind == "sources":
        return [config["survey"]["sources"]]
    if kind == "specz":
        return [c["path"] for c in config["specz"]["catalogs"]]
    files = []
    for band in config["survey"]["bands"]:
        found = sorted(glob.glob(config["survey"]["mosaics"][band]))
        if not found:
            raise WorkflowError(f"survey.mosaics.{band}: glob {config['survey']['mosaics'][band]!r} matches no file")
        files += found
    return files


def run_folder(model, fold, seed):
    return f"{R}/models/{model}/fold{fold}/seed{seed}"


def model_runs(wildcards, name="test_pdf.h5"):
    return [f"{run_folder(wildcards.model, f, s)}/{name}" for f in FOLDS for s in SEEDS]


SECTIONS = {"simulation": ("simulation",), "match": ("survey", "specz", "selection", "folds"), "report": tuple(config)}


def write_section(path, cfg, log):
    import yaml
    from pipeline.core.io import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(cfg, sort_keys=False))
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    Path(log).write_text(f"wrote {path}\n")


def section_params(wildcards):
    """What a step's config file holds: its Snakemake params, so only a change of that part reruns the step."""
    name = wildcards.section
    if name.startswith("model-"):
        return section_config(config, ("training", "zgrid"), models=[name.removeprefix("model-")])
    return section_config(config, SECTIONS[name])


def cutout_argv(wildcards, output):
    c = config["cutouts"]
    k, n = map(int, wildcards.scatteritem.split("-of-"))
    argv = ["--sources", SOURCES, "--out", output[0], "--shard", f"{k - 1}/{n}"]
    for band in config["survey"]["bands"]:
        argv += ["--band", f"{band}={config['survey']['mosaics'][band]}"]
    argv += ["--size", c["size"], "--pixel-scale", c["pixel_scale_arcsec"]]
    argv += ["--interpolation", c["interpolation"], "--background", c["background"]]
    return argv + stack_argv(config)


def _detect_options():
    d = config["detect"]
    argv = []
    for band in d["bands"] or []:
        argv += ["--detect-band", band]
    argv += ["--threshold", d["threshold"], "--min-area", d["min_area"], "--deblend-contrast", d["deblend_contrast"]]
    return argv + ["--kernel-fwhm", d["kernel_fwhm_arcsec"], "--aperture-diameter", d["aperture_diameter_arcsec"]]


def detect_argv(wildcards, output):
    c = config["cutouts"]
    argv = ["--out", output.catalog, "--summary", output.summary, "--preview", output.preview]
    for band in config["survey"]["bands"]:
        argv += ["--band", f"{band}={config['survey']['mosaics'][band]}"]
    argv += ["--pixel-scale", c["pixel_scale_arcsec"], "--interpolation", c["interpolation"]]
    argv += ["--patch-px", config["detect"]["patch_px"]]
    return argv + _detect_options() + stack_argv(config)


def photometry_argv(wildcards, input, output):
    argv = ["--cutouts", input[0], "--out", output[0], "--zero-point", config["survey"]["zero_point"]]
    return argv + _detect_options()
