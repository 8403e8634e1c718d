# The survey (simulated or the user's), the config sections each step reads, and the cutouts.

SECTIONS = {"simulation": ("simulation",), "match": ("survey", "specz", "selection", "folds"), "report": tuple(config)}


def section_params(wildcards):
    """What a step's config file holds: its Snakemake params, so only a change of that part reruns the step."""
    name = wildcards.section
    if name.startswith("model-"):
        return section_config(config, ("training", "zgrid"), models=[name.removeprefix("model-")])
    return section_config(config, SECTIONS[name])


rule section_config:
    output:
        f"{R}/config/{{section}}.yaml",
    wildcard_constraints:
        section="|".join([*SECTIONS, *(f"model-{m}" for m in MODELS)]),
    params:
        cfg=section_params,
    localrule: True
    run:
        import yaml
        from pipeline.io import atomic_path

        with atomic_path(output[0]) as tmp:
            tmp.write_text(yaml.safe_dump(params.cfg, sort_keys=False))


rule simulate:
    input:
        cfg=f"{R}/config/simulation.yaml",
    output:
        directory(SURVEY_DIR),
    params:
        step="simulate",
        argv=lambda wc, input, output: ["--config", input.cfg, "--out", output[0]],
        code=code_hash("simulate", "sim"),
    log:
        "logs/simulate/simulate.log",
    benchmark:
        "benchmarks/simulate/simulate.tsv"
    conda:
        "../../envs/photoz.yaml"
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 30 * attempt,
    script:
        STEP


def cutout_argv(wildcards, output):
    sources = f"{SURVEY_DIR}/sources.parquet" if SIMULATED else config["survey"]["sources"]
    c = config["cutouts"]
    argv = ["--sources", sources, "--out", output[0], "--shard", f"{wildcards.shard}/{len(SHARDS)}"]
    for band in config["survey"]["bands"]:
        argv += ["--band", f"{band}={config['survey']['mosaics'][band]}"]
    argv += ["--size", c["size"], "--pixel-scale", c["pixel_scale_arcsec"]]
    return argv + ["--interpolation", c["interpolation"], "--background", c["background"]]


rule cutouts:
    input:
        survey_inputs("sources") + survey_inputs("mosaics") if not SIMULATED else [SURVEY_DIR],
    output:
        f"{R}/cutouts/shard-{{shard}}.h5",
    params:
        step="cutouts",
        argv=cutout_argv,
        code=code_hash("cutouts", "resample", "bands", "io"),
    log:
        "logs/cutouts/shard-{shard}.log",
    benchmark:
        "benchmarks/cutouts/shard-{shard}.tsv"
    conda:
        "../../envs/photoz.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 60 * attempt,
        cpus_per_task=1,
    script:
        STEP
