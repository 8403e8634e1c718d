# The datacube of the training objects: spec-z compilation and matching, then packing of their cutouts; or the
# import of cutouts made elsewhere (survey.cube).


if not IMPORTED:

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
            code=code_hash("match"),
        script:
            STEP


    rule pack:
        input:
            training=rules.match.output.training,
            shards=gather.shards(f"{R}/cutouts/shard-{{scatteritem}}.h5"),
        output:
            cube=DATACUBE,
            catalog=DATACUBE_CATALOG,
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
                *(["--parquet-pixels"] if config["datacube"]["parquet_pixels"] else []),
            ],
            code=code_hash("pack"),
        script:
            STEP

else:

    rule import_cube:
        input:
            [CUBE["path"]] + ([CUBE["catalog"]] if CUBE["catalog"] else []),
        output:
            cube=DATACUBE,
            catalog=DATACUBE_CATALOG,
        log:
            "logs/import_cube/import_cube.log",
        benchmark:
            "benchmarks/import_cube/import_cube.tsv"
        conda:
            "../../envs/photoz.yaml"
        resources:
            mem_mb=lambda wc, attempt: 8000 * attempt,
            runtime=lambda wc, attempt: 60 * attempt,
        params:
            step="import-cube",
            argv=lambda wc, input, output: import_cube_argv(output),
            code=code_hash("import_cube"),
        script:
            STEP

