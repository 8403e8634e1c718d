# Catalog-wide photo-z: every (fold, seed) model of a model predicts each cutout shard (a chunk, scattered like the
# cutouts); the chunks are merged. With imported cutouts (survey.cube) the imported store is the one cutout file, its
# rows scattered over the chunks. PDFs are stored as production.pdf says.


rule predict:
    input:
        cutouts=DATACUBE if IMPORTED else f"{R}/cutouts/shard-{{scatteritem}}.h5",
        models=lambda wc: model_runs(wc, "model.pt"),
        sources=DATACUBE_CATALOG if IMPORTED else survey_inputs("sources"),
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
            DATACUBE_CATALOG if IMPORTED else SOURCES,
            *(["--rows", row_range(wc.scatteritem)] if IMPORTED else []),
            *PDF_STORAGE,
        ],
        code=code_hash("predict"),
    script:
        STEP


rule merge:
    input:
        gather.shards(f"{R}/photoz/{{{{model}}}}/chunk-{{scatteritem}}.parquet"),
    output:
        catalog=f"{R}/photoz/{{model}}.parquet",
        pdf=f"{R}/photoz/{{model}}.pdf.hdf5",
        fits=f"{R}/photoz/{{model}}.fits",
    log:
        "logs/merge/{model}.log",
    conda:
        "../../envs/photoz.yaml"
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
        runtime=lambda wc, attempt: 30 * attempt,
    params:
        step="merge",
        argv=lambda wc, input, output: [*input, "--out", output.catalog],
        code=code_hash("merge"),
    script:
        STEP


rule production:
    input:
        expand(rules.merge.output.catalog, model=MODELS),
