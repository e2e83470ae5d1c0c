# The base model: the embedded tiny Qwen2.5-VL is built here; a local 7B folder is used as it is.

if config["model"]["source"] == "embedded":

    rule build_model:
        output:
            model=directory(model_dir()),
        params:
            reads=step_reads("build_model"),
        log:
            f"{L}/build_model.log",
        benchmark:
            f"{L}/benchmarks/build_model.tsv"
        threads: 1
        resources:
            runtime=10,
            mem_mb=2000,
        script:
            "../workflow_scripts/build_model.py"


if config["warmstart"]["enabled"]:

    rule warm_start:
        input:
            model=model_input(),
            manifest=f"{PERCEPTION}/manifest.jsonl",
            scoring=f"{SCORING}/scoring_train.jsonl",
        output:
            model=directory(f"{M}/base"),
            curve=f"{R}/curves/warmstart.jsonl",
        params:
            reads=step_reads("warm_start"),
        log:
            f"{L}/warm_start.log",
        benchmark:
            f"{L}/benchmarks/warm_start.tsv"
        threads: 1
        resources:
            runtime=30,
            mem_mb=4000,
        script:
            "../workflow_scripts/warm_start.py"
