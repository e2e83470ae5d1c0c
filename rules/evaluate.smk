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
        evaluate=config["evaluate"],
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
        evaluate=config["evaluate"],
        datasets=config["data"]["scoring"],
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
