# Config validation, derived names and input functions shared by the rules.
import glob
import re
import sys
from pathlib import Path

sys.path.insert(0, workflow.basedir)  # the pipeline package of this checkout, installed or not

from pipeline.core.config import (  # noqa: E402
    ConfigError,
    detected_sources_path,
    reference_name,
    section_config,
    validate_config,
)
from pipeline.core.folds import evaluated_folds  # noqa: E402
from pipeline.core.mosaics import stack_argv  # noqa: E402
from pipeline.core.pdf import point_estimate_of  # noqa: E402
from pipeline.tools.check_config import check_config  # noqa: E402
from pipeline.tools.code_hash import code_hash  # noqa: E402

try:
    if workflow.remote_exec or workflow.subprocess_exec:
        # a job run as its own snakemake process (SLURM) parses this file again, with the config the main process
        # checked in full: the schema fills the same defaults, the models and the RAIL options need no second check
        # (it imports torch and RAIL: seconds per job)
        validate_config(config, source="config")
    else:
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
FOLDS = evaluated_folds(config["folds"])
SEEDS = list(config["training"]["seeds"])
# the colour-only RAIL reference (None when switched off): ensembled, evaluated and reported like a model
REFERENCE = reference_name(config)
ESTIMATORS = MODELS + ([REFERENCE] if REFERENCE else [])
PAIRS = [(p["baseline"], p["candidate"]) for p in config["evaluation"]["compare"]]
if REFERENCE and config["reference"]["compare"]:
    PAIRS += [(REFERENCE, m) for m in MODELS if (REFERENCE, m) not in PAIRS]
# models trained with modality dropout (paper Sec. 7.4): each gets the test-time drop of one modality at a time
DROP_MODELS = [m for m, spec in config["models"].items() if (spec.get("options") or {}).get("modality_dropout", 0) > 0]
STEP = f"{workflow.basedir}/workflow/scripts/run_step.py"


# cutouts and catalog-wide inference are scattered over sky shards: `cutouts.shards` by default, or
# `--set-scatter shards=N`; a job's {scatteritem} is "K-of-N" (K from 1)
scattergather:
    shards=config["cutouts"]["shards"],


wildcard_constraints:
    model="|".join(map(re.escape, ESTIMATORS)),
    baseline="|".join(map(re.escape, ESTIMATORS)),
    candidate="|".join(map(re.escape, ESTIMATORS)),
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


def estimate_of(name):
    """What z_phot of a model (or of the colour reference) is: the PDF median, or z_reg for a regression-only model."""
    return point_estimate_of(config["models"][name]["loss"]) if name in config["models"] else "median"


def mag_cut():
    """The evaluation-only magnitude cut of evaluate and compare (none by default)."""
    mag_max = config["evaluation"]["mag_max"]
    return [] if mag_max is None else ["--mag-max", mag_max]


def run_folder(model, fold, seed):
    return f"{R}/models/{model}/fold{fold}/seed{seed}"


def model_runs(wildcards, name="test_pdf.h5"):
    """The runs of a model (every fold and seed), or the reference's test folds (their PDFs only)."""
    if wildcards.model == REFERENCE:
        if name != "test_pdf.h5":
            raise WorkflowError(f"the reference {REFERENCE!r} has no {name}: it is no network")
        return [f"{R}/reference/{REFERENCE}/fold{f}/test_pdf.h5" for f in FOLDS]
    return [f"{run_folder(wildcards.model, f, s)}/{name}" for f in FOLDS for s in SEEDS]


def reference_photometry(wildcards):
    """The magnitudes of the reference: the pipeline's photometry shards, or the source catalog (the simulated
    survey's folder when simulating: the catalog is a file in it)."""
    if config["reference"]["magnitudes"] == "photometry":
        return gather.shards(f"{R}/photometry/shard-{{scatteritem}}.parquet")
    return survey_inputs("sources")


SECTIONS = {
    "simulation": ("simulation",),
    "match": ("survey", "specz", "selection", "folds"),
    "reference": ("reference", "survey", "zgrid"),
    "report": tuple(config),
}


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


def import_cube_argv(output):
    """The import-cube options from survey.cube, the bands, the training size and the folds."""
    cols = CUBE["columns"]
    argv = ["--cubes", CUBE["path"], "--out", output.cube, "--bands", *config["survey"]["bands"]]
    argv += ["--size", config["cutouts"]["size"], "--nan", CUBE["nan"], "--pixel-scale", CUBE["pixel_scale_arcsec"]]
    argv += ["--folds", config["folds"]["n"], "--seed", config["folds"]["seed"], "--z-field", cols["z"]]
    argv += ["--ebv-field", cols["ebv"] if cols["ebv"] else "none"]
    for flag, value in (("--preset", CUBE["preset"]), ("--key", CUBE["key"]), ("--catalog", CUBE["catalog"]),
                        ("--id-field", cols["id"]), ("--ra-field", cols["ra"]), ("--dec-field", cols["dec"])):
        if value:
            argv += [flag, value]
    if CUBE["bands_axis"] != "auto":
        argv += ["--bands-axis", CUBE["bands_axis"]]
    for band, col in cols["mags"].items():
        argv += ["--mag", f"{band}={col}"]
    return argv + (["--parquet-pixels"] if config["datacube"]["parquet_pixels"] else [])


def row_range(scatteritem):
    """Chunk "K-of-N" (K from 1) -> "K-1/N", the rows of the imported store one predict job takes."""
    k, n = map(int, scatteritem.split("-of-"))
    return f"{k - 1}/{n}"


# production.pdf as predict's options: how the catalogue's PDFs are stored
PDF_STORAGE = [f"--pdf-{k.replace('_', '-')}={v}" for k, v in config["production"]["pdf"].items() if v is not None]
