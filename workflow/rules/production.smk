# Catalog-wide photo-z: every (fold, seed) model of a model predicts each cutout shard; the chunks are merged.


rule predict_chunk:
    input:
        cutouts=f"{R}/cutouts/shard-{{shard}}.h5",
        models=lambda wc: model_runs(wc, "model.pt"),
        sources=survey_inputs("sources"),
    output:
        predictions=f"{R}/photoz/{{model}}/chunk-{{shard}}.parquet",
        pdf=f"{R}/photoz/{{model}}/chunk-{{shard}}.pdf.hdf5",
    params:
        step="predict",
        argv=lambda wc, input, output: [
            "--cutouts", input.cutouts, "--models", *input.models, "--out", output.predictions,
            "--sources", f"{SURVEY_DIR}/sources.parquet" if SIMULATED else config["survey"]["sources"],
        ],
        code=code_hash("predict", "inference", "nn", "preprocess", "pdf", "ensemble"),
    log:
        "logs/predict/{model}/chunk-{shard}.log",
    conda:
        "../../envs/photoz.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
        runtime=lambda wc, attempt: 60 * attempt,
        cpus_per_task=1,
    script:
        STEP


rule merge_photoz:
    input:
        expand(f"{R}/photoz/{{{{model}}}}/chunk-{{shard}}.parquet", shard=SHARDS),
    output:
        catalog=f"{R}/photoz/{{model}}.parquet",
        pdf=f"{R}/photoz/{{model}}.pdf.hdf5",
        fits=f"{R}/photoz/{{model}}.fits",
    params:
        step="predict",
        argv=lambda wc, input, output: ["--merge", *input, "--out", output.catalog],
        code=code_hash("predict", "ensemble", "pdf"),
    log:
        "logs/predict/{model}/merge.log",
    conda:
        "../../envs/photoz.yaml"
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
        runtime=lambda wc, attempt: 30 * attempt,
    script:
        STEP


rule production:
    input:
        expand(rules.merge_photoz.output.catalog, model=MODELS),
