# Image-based photometric redshifts: survey mosaics + spec-z catalogs -> cutouts -> datacube -> CNN ensembles ->
# calibrated PDFs, metrics and a report. The default config runs the whole chain on a small simulated survey.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/survey.smk"
include: "workflow/rules/catalog.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/reference.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/production.smk"


rule all:
    default_target: True
    input:
        f"{R}/report/index.html",
