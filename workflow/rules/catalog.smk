# Spec-z compilation and matching, then the datacube of the training objects.


rule match:
    input:
        survey_inputs("sources") + survey_inputs("specz") if not SIMULATED else [SURVEY_DIR],
        cfg=f"{R}/config/match.yaml",
    output:
        training=f"{R}/catalog/training.parquet",
        summary=f"{R}/catalog/specz_summary.csv",
        conflicts=f"{R}/catalog/specz_conflicts.csv",
    log:
        "logs/match/match.log",
    benchmark:
        "benchmarks/match/match.tsv"
    conda:
        "../../envs/photoz.yaml"
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 30 * attempt,
    params:
        step="match",
        argv=lambda wc, input, output: [
            "--config",
            input.cfg,
            "--out",
            output.training,
            "--summary",
            output.summary,
            "--conflicts",
            output.conflicts,
        ],
        code=code_hash("specz", "sky", "io"),
    script:
        STEP


rule pack:
    input:
        training=rules.match.output.training,
        shards=gather.shards(f"{R}/cutouts/shard-{{scatteritem}}.h5"),
    output:
        cube=f"{R}/datacube/train.h5",
        catalog=f"{R}/datacube/train.parquet",
    log:
        "logs/pack/pack.log",
    benchmark:
        "benchmarks/pack/pack.tsv"
    conda:
        "../../envs/photoz.yaml"
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
        runtime=lambda wc, attempt: 60 * attempt,
    params:
        step="pack",
        argv=lambda wc, input, output: [
            "--training",
            input.training,
            "--cutouts",
            *input.shards,
            "--out",
            output.cube,
            "--min-coverage",
            config["selection"]["min_coverage"],
            "--folds",
            config["folds"]["n"],
            *(["--allow-missing-bands"] if config["selection"]["allow_missing_bands"] else []),
        ],
        code=code_hash("datacube", "preprocess", "io"),
    script:
        STEP
