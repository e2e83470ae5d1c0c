# Evaluation: Tables 1-2 (perception) for base / Stage-1 / Stage-2, scoring (Tables 3, 5, 6) for every model.

rule eval_perception:
    input:
        model=model_input_for,
        manifest=f"{PERCEPTION}/manifest.jsonl",
    output:
        summary=f"{R}/perception/{{model}}.json",
        preds=f"{W}/predictions/perception-{{model}}.jsonl",
    params:
        model=model_path_for,
        reads=step_reads("eval_perception"),
    wildcard_constraints:
        model="base|stage1|stage2-main",
    log:
        f"{L}/eval/perception-{{model}}.log",
    benchmark:
        f"{L}/benchmarks/eval-perception-{{model}}.tsv"
    threads: config["compute"]["threads"]
    resources:
        runtime=120,
        mem_mb=4000,
    script:
        "../workflow_scripts/eval_perception.py"


rule eval_scoring:
    input:
        model=model_input_for,
        test=f"{SCORING}/scoring_test.jsonl",
    output:
        summary=f"{R}/scoring/{{model}}.json",
        preds=f"{W}/predictions/scoring-{{model}}.jsonl",
    params:
        model=model_path_for,
        reads=step_reads("eval_scoring"),
    wildcard_constraints:
        model="base|stage1|stage2-[a-z0-9_]+",
    log:
        f"{L}/eval/scoring-{{model}}.log",
    benchmark:
        f"{L}/benchmarks/eval-scoring-{{model}}.tsv"
    threads: config["compute"]["threads"]
    resources:
        runtime=240,
        mem_mb=4000,
    script:
        "../workflow_scripts/eval_scoring.py"


if not config["data"]["scoring"]["qbench_root"]:

    rule qbench_set:
        input:
            test=f"{SCORING}/scoring_test.jsonl",
            manifest=f"{PERCEPTION}/manifest.jsonl",
        output:
            directory(f"{W}/qbench"),
        params:
            reads=step_reads("qbench_set"),
        log:
            f"{L}/qbench_set.log",
        threads: 1
        resources:
            runtime=10,
            mem_mb=1000,
        script:
            "../workflow_scripts/qbench_set.py"


rule eval_qbench:
    input:
        model=model_input_for,
        qbench=qbench_root(),
    output:
        f"{R}/qbench/{{model}}.json",
    params:
        model=model_path_for,
        reads=step_reads("eval_qbench"),
    wildcard_constraints:
        model="base|stage1|stage2-main",
    log:
        f"{L}/eval/qbench-{{model}}.log",
    benchmark:
        f"{L}/benchmarks/eval-qbench-{{model}}.tsv"
    threads: config["compute"]["threads"]
    resources:
        runtime=120,
        mem_mb=4000,
    script:
        "../workflow_scripts/eval_qbench.py"


rule eval_baselines:
    input:
        test=f"{SCORING}/scoring_test.jsonl",
    output:
        f"{R}/baselines.json",
    params:
        reads=step_reads("eval_baselines"),
    log:
        f"{L}/eval/baselines.log",
    threads: 1
    resources:
        runtime=60,
        mem_mb=4000,
    script:
        "../workflow_scripts/eval_baselines.py"
