# The colour-only reference photo-z through RAIL: one job per test fold, trained on the other folds. Its fold
# PDFs are ensembled, evaluated, compared and reported like a model's (model_runs in common.smk).


rule reference:
    input:
        catalog=DATACUBE_CATALOG,
        photometry=reference_photometry,
        # the simulated survey's own extinction coefficients, unless the config gives them
        survey=[SURVEY_DIR] if SIMULATED and not config["reference"]["extinction"] else [],
        cfg=f"{R}/config/reference.yaml",
    output:
        f"{R}/reference/{{reference}}/fold{{fold}}/test_pdf.h5",
    log:
        "logs/reference/{reference}/fold{fold}.log",
    benchmark:
        "benchmarks/reference/{reference}/fold{fold}.tsv"
    wildcard_constraints:
        reference=re.escape(REFERENCE or "reference"),
    conda:
        "../../envs/photoz.yaml"
    # RAIL's kNN runs on one core; FlexZBoost fits its trees in parallel
    threads: 2 if config["reference"]["estimator"] == "flexzboost" else 1
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 60 * attempt,
        cpus_per_task=lambda wc, threads: threads,
    params:
        step="reference",
        argv=lambda wc, input, output, threads: [
            "--config",
            input.cfg,
            "--catalog",
            input.catalog,
            "--photometry",
            *(input.photometry if config["reference"]["magnitudes"] == "photometry" else [SOURCES]),
            *(["--survey-meta", f"{SURVEY_DIR}/survey.json"] if input.survey else []),
            "--fold",
            wc.fold,
            "--out",
            output[0],
            "--threads",
            threads,
        ],
        code=code_hash("reference"),
    script:
        STEP
