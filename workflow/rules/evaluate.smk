# Metrics per model, the paired bootstrap per pair, the test-time modality drop of dropout-trained models, and the
# report.


rule evaluate:
    input:
        predictions=rules.ensemble.output.predictions,
        pdf=rules.ensemble.output.pdf,
    output:
        f"{R}/metrics/{{model}}.json",
    log:
        "logs/evaluate/{model}.log",
    conda:
        "../../envs/photoz.yaml"
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 30 * attempt,
    params:
        step="evaluate",
        argv=lambda wc, input, output: [
            "--predictions",
            input.predictions,
            "--pdf",
            input.pdf,
            "--out",
            output[0],
            "--outlier-threshold",
            config["evaluation"]["outlier_threshold"],
            "--mag-column",
            config["survey"]["mag_column"],
            *mag_cut(),
        ],
        code=code_hash("evaluate"),
    script:
        STEP


rule compare:
    input:
        baseline=f"{R}/predictions/{{baseline}}.parquet",
        candidate=f"{R}/predictions/{{candidate}}.parquet",
    output:
        f"{R}/metrics/compare/{{baseline}}--{{candidate}}.json",
    log:
        "logs/compare/{baseline}--{candidate}.log",
    conda:
        "../../envs/photoz.yaml"
    threads: 2
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
        runtime=lambda wc, attempt: 30 * attempt,
        cpus_per_task=lambda wc, threads: threads,
    params:
        step="compare",
        argv=lambda wc, input, output, threads: [
            "--baseline",
            input.baseline,
            "--candidate",
            input.candidate,
            "--out",
            output[0],
            "--n-boot",
            config["evaluation"]["n_boot"],
            "--seed",
            config["evaluation"]["seed"],
            "--outlier-threshold",
            config["evaluation"]["outlier_threshold"],
            "--mag-column",
            config["survey"]["mag_column"],
            *mag_cut(),
            "--threads",
            threads,
        ],
        code=code_hash("compare"),
    script:
        STEP


rule drop_modalities:
    input:
        runs=lambda wc: model_runs(wc, "model.pt"),
        cube=DATACUBE,
    output:
        f"{R}/metrics/dropout/{{model}}.parquet",
    log:
        "logs/drop_modalities/{model}.log",
    conda:
        "../../envs/photoz.yaml"
    threads: 2
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
        runtime=lambda wc, attempt: 60 * attempt,
        cpus_per_task=lambda wc, threads: threads,
    params:
        step="drop-modalities",
        argv=lambda wc, input, output, threads: [
            "--runs",
            *input.runs,
            "--datacube",
            input.cube,
            "--out",
            output[0],
            "--threads",
            threads,
        ],
        code=code_hash("drop_modalities"),
    script:
        STEP


rule report:
    input:
        predictions=expand(rules.ensemble.output.predictions, model=ESTIMATORS),
        metrics=expand(rules.evaluate.output[0], model=ESTIMATORS),
        compare=[f"{R}/metrics/compare/{a}--{b}.json" for a, b in PAIRS],
        dropout=expand(rules.drop_modalities.output[0], model=DROP_MODELS),
        cfg=f"{R}/config/report.yaml",
    output:
        f"{R}/report/index.html",
    log:
        "logs/report/report.log",
    conda:
        "../../envs/photoz.yaml"
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 30 * attempt,
    params:
        step="report",
        argv=lambda wc, input, output: [
            "--predictions",
            *input.predictions,
            "--metrics",
            *input.metrics,
            "--compare",
            *input.compare,
            "--dropout",
            *input.dropout,
            "--config",
            input.cfg,
            "--out",
            output[0],
        ],
        code=code_hash("report"),
    script:
        STEP
