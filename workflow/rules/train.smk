# One job per (model, fold, seed), then the ensemble of each model.

TRAIN_CODE = code_hash("train")


rule train:
    input:
        cube=DATACUBE,
        cfg=f"{R}/config/model-{{model}}.yaml",
    output:
        model=f"{R}/models/{{model}}/fold{{fold}}/seed{{seed}}/model.pt",
        pdf=f"{R}/models/{{model}}/fold{{fold}}/seed{{seed}}/test_pdf.h5",
        history=f"{R}/models/{{model}}/fold{{fold}}/seed{{seed}}/history.csv",
    log:
        "logs/train/{model}/fold{fold}/seed{seed}.log",
    benchmark:
        "benchmarks/train/{model}/fold{fold}/seed{seed}.tsv"
    retries: 1
    conda:
        "../../envs/photoz.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
        runtime=lambda wc, attempt: 120 * attempt,
        cpus_per_task=lambda wc, threads: threads,
    params:
        step="train",
        argv=lambda wc, input, output, threads: [
            "--config",
            input.cfg,
            "--datacube",
            input.cube,
            "--model",
            wc.model,
            "--fold",
            wc.fold,
            "--seed",
            wc.seed,
            "--out-dir",
            Path(output.model).parent,
            "--threads",
            threads,
            "--tag",
            TRAIN_CODE,
        ],
        code=TRAIN_CODE,
    script:
        STEP


rule ensemble:
    input:
        runs=model_runs,
        catalog=DATACUBE_CATALOG,
    output:
        predictions=f"{R}/predictions/{{model}}.parquet",
        pdf=f"{R}/predictions/{{model}}.pdf.hdf5",
    log:
        "logs/ensemble/{model}.log",
    conda:
        "../../envs/photoz.yaml"
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 30 * attempt,
    params:
        step="ensemble",
        argv=lambda wc, input, output: [
            "--runs",
            *input.runs,
            "--catalog",
            input.catalog,
            "--out",
            output.predictions,
            "--estimate",
            estimate_of(wc.model),
        ],
        code=code_hash("ensemble"),
    script:
        STEP
