# Metrics per model, the paired bootstrap per pair, and the report.


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
        ],
        code=code_hash("metrics", "pdf_metrics", "pdf"),
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
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
        runtime=lambda wc, attempt: 30 * attempt,
    params:
        step="compare",
        argv=lambda wc, input, output: [
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
        ],
        code=code_hash("bootstrap"),
    script:
        STEP


rule report:
    input:
        predictions=expand(rules.ensemble.output.predictions, model=MODELS),
        metrics=expand(rules.evaluate.output[0], model=MODELS),
        compare=[f"{R}/metrics/compare/{a}--{b}.json" for a, b in PAIRS],
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
            "--config",
            input.cfg,
            "--out",
            output[0],
        ],
        code=code_hash("report", "report_figures"),
    script:
        STEP
