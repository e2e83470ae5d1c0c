# Stage-2: think-mode scoring GRPO with the PD reward and the modified advantage. Variants are the main run
# and the ablations (Tables 5-6): no_stage1, no_pd, no_pm, no_pd_no_pm, no_think.

rule stage2:
    input:
        init=stage2_init_input,
        train=f"{SCORING}/scoring_train.jsonl",
    output:
        model=directory(f"{M}/stage2-{{variant}}"),
        curve=f"{R}/curves/stage2-{{variant}}.jsonl",
    params:
        launch=launcher(),
        init=stage2_init,
        reads=step_reads("stage2"),
    wildcard_constraints:
        variant="[a-z0-9_]+",
    log:
        f"{L}/stage2-{{variant}}.log",
    benchmark:
        f"{L}/benchmarks/stage2-{{variant}}.tsv"
    threads: config["compute"]["threads"]
    resources:
        runtime=1440,
        mem_mb=8000,
    shell:
        # the job's files for the MLflow lineage tags (refine_iqa.tracking)
        "REFINE_IQA_INPUTS='{input}' REFINE_IQA_OUTPUTS='{output}' "
        "{params.launch} -m refine_iqa.cli train-stage2 --params \"$REFINE_IQA_PARAMS_JSON\" --init {params.init} "
        "--train {input.train} --variant {wildcards.variant} --out {output.model} --curve {output.curve} > {log} 2>&1"


rule stage2_all:
    input:
        expand(f"{M}/stage2-{{variant}}", variant=stage2_variants()),
