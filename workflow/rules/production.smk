# Catalog-wide photo-z: every (fold, seed) model of a model predicts each cutout shard (a chunk, scattered like the
# cutouts); the chunks are merged.


rule predict_chunk:
    input:
        cutouts=rules.cutouts.output[0],
        models=lambda wc: model_runs(wc, "model.pt"),
        sources=survey_inputs("sources"),
    output:
        predictions=f"{R}/photoz/{{model}}/chunk-{{scatteritem}}.parquet",
        pdf=f"{R}/photoz/{{model}}/chunk-{{scatteritem}}.pdf.hdf5",
    log:
        "logs/predict/{model}/chunk-{scatteritem}.log",
    benchmark:
        "benchmarks/predict/{model}/chunk-{scatteritem}.tsv"
    conda:
        "../../envs/photoz.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
        runtime=lambda wc, attempt: 60 * attempt,
        cpus_per_task=lambda wc, threads: threads,
    params:
        step="predict",
        argv=lambda wc, input, output: [
            "--cutouts",
            input.cutouts,
            "--models",
            *input.models,
            "--out",
            output.predictions,
            "--sources",
            SOURCES,
        ],
        code=code_hash("predict", "inference", "nn", "preprocess", "pdf", "ensemble"),
    script:
        STEP


rule merge_photoz:
    input:
        gather.shards(f"{R}/photoz/{{{{model}}}}/chunk-{{scatteritem}}.parquet"),
    output:
        catalog=f"{R}/photoz/{{model}}.parquet",
        pdf=f"{R}/photoz/{{model}}.pdf.hdf5",
        fits=f"{R}/photoz/{{model}}.fits",
    log:
        "logs/predict/{model}/merge.log",
    conda:
        "../../envs/photoz.yaml"
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
        runtime=lambda wc, attempt: 30 * attempt,
    params:
        step="predict",
        argv=lambda wc, input, output: ["--merge", *input, "--out", output.catalog],
        code=code_hash("predict", "ensemble", "pdf"),
    script:
        STEP


rule production:
    input:
        expand(rules.merge_photoz.output.catalog, model=MODELS),
