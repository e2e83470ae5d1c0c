# Stage-1: multi-task perception GRPO (no-think). A shell rule: on SLURM it is an `accelerate launch` job.

rule stage1:
    input:
        base=base_model_input(),
        manifest=f"{PERCEPTION}/manifest.jsonl",
    output:
        model=directory(f"{M}/stage1"),
        curve=f"{R}/curves/stage1.jsonl",
    params:
        launch=launcher(),
        base=base_model_dir(),
        reads=step_reads("stage1"),
    log:
        f"{L}/stage1.log",
    benchmark:
        f"{L}/benchmarks/stage1.tsv"
    threads: config["compute"]["threads"]
    resources:
        runtime=600,
        mem_mb=8000,
    shell:
        # the job's files for the MLflow lineage tags (refine_iqa.tracking)
        "REFINE_IQA_INPUTS='{input}' REFINE_IQA_OUTPUTS='{output}' "
        "{params.launch} -m refine_iqa.cli train-stage1 --params \"$REFINE_IQA_PARAMS_JSON\" --base {params.base} "
        "--manifest {input.manifest} --out {output.model} --curve {output.curve} > {log} 2>&1"
