# The survey (simulated or the user's), the config sections each step reads, and the cutouts.


rule section_config:
    output:
        f"{R}/config/{{section}}.yaml",
    log:
        "logs/section_config/{section}.log",
    wildcard_constraints:
        section="|".join([*SECTIONS, *(f"model-{m}" for m in MODELS)]),
    localrule: True
    conda:
        "../../envs/photoz.yaml"
    params:
        cfg=section_params,
    script:
        # not `run:`, which Snakemake executes in a new process that parses the whole workflow again
        "../scripts/write_section.py"


rule simulate:
    input:
        cfg=f"{R}/config/simulation.yaml",
    output:
        directory(SURVEY_DIR),
    log:
        "logs/simulate/simulate.log",
    benchmark:
        "benchmarks/simulate/simulate.tsv"
    conda:
        "../../envs/photoz.yaml"
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 30 * attempt,
    params:
        step="simulate",
        argv=lambda wc, input, output: ["--config", input.cfg, "--out", output[0]],
        code=code_hash("simulate"),
    script:
        STEP


# cutouts need mosaics: none with a survey of imported cutouts (survey.cube)
if not IMPORTED:

    rule cutouts:
        input:
            survey_inputs("sources") + survey_inputs("mosaics") if not SIMULATED else [SURVEY_DIR],
        output:
            f"{R}/cutouts/shard-{{scatteritem}}.h5",
        log:
            "logs/cutouts/shard-{scatteritem}.log",
        benchmark:
            "benchmarks/cutouts/shard-{scatteritem}.tsv"
        conda:
            "../../envs/photoz.yaml"
        threads: 1
        resources:
            mem_mb=lambda wc, attempt: 4000 * attempt,
            runtime=lambda wc, attempt: 60 * attempt,
            cpus_per_task=lambda wc, threads: threads,
        params:
            step="cutouts",
            argv=cutout_argv,
            code=code_hash("cutouts"),
        script:
            STEP


# the sources of a survey of mosaics without a catalog (photutils); the cutouts, spec-z matching and the
# catalog-wide photo-z then use them
if DETECT:

    rule detect:
        input:
            survey_inputs("mosaics"),
        output:
            catalog=SOURCES,
            summary=f"{R}/detect/summary.json",
            preview=f"{R}/detect/detections.png",
        log:
            "logs/detect/detect.log",
        benchmark:
            "benchmarks/detect/detect.tsv"
        conda:
            "../../envs/photoz.yaml"
        threads: 1
        resources:
            mem_mb=lambda wc, attempt: 8000 * attempt,
            runtime=lambda wc, attempt: 120 * attempt,
            cpus_per_task=lambda wc, threads: threads,
        params:
            step="detect",
            argv=detect_argv,
            code=code_hash("detect"),
        script:
            STEP


# photutils photometry of every object of a cutout shard (Kron and aperture fluxes in every band), for the
# colour-only reference photo-z
if not IMPORTED:

    rule photometry:
        input:
            f"{R}/cutouts/shard-{{scatteritem}}.h5",
        output:
            f"{R}/photometry/shard-{{scatteritem}}.parquet",
        log:
            "logs/photometry/shard-{scatteritem}.log",
        benchmark:
            "benchmarks/photometry/shard-{scatteritem}.tsv"
        conda:
            "../../envs/photoz.yaml"
        threads: 1
        resources:
            mem_mb=lambda wc, attempt: 4000 * attempt,
            runtime=lambda wc, attempt: 120 * attempt,
            cpus_per_task=lambda wc, threads: threads,
        params:
            step="photometry",
            argv=photometry_argv,
            code=code_hash("photometry"),
        script:
            STEP
