# results/metrics.json gathers every number; the report is rendered from it alone.


def measured_seed_spread(wildcards):
    """Stage-2-main's measured training-seed spread (benchmarks/stage2_seed_spread.py), when one is committed:
    the metrics step reads it, so a new measurement re-renders the report. (Here, not in common.smk: every
    DVC stage depends on common.smk, so an edit there re-runs the whole workflow.)"""
    from refine_iqa.eval.seed_spread import MEASURED  # the repository's file, wherever --directory points
    return [str(MEASURED)] if MEASURED.is_file() else []


rule metrics:
    input:
        perception=expand(f"{R}/perception/{{model}}.json", model=["base", "stage1", "stage2-main"]),
        scoring=expand(f"{R}/scoring/{{model}}.json", model=evaluated_models()),
        curves=[f"{R}/curves/stage1.jsonl"] + expand(f"{R}/curves/stage2-{{v}}.jsonl", v=stage2_variants()),
        data_stats=f"{R}/perception_data_stats.json",
        qbench=expand(f"{R}/qbench/{{model}}.json", model=["base", "stage1", "stage2-main"]),
        baselines=f"{R}/baselines.json",
        seed_spread=measured_seed_spread,
    output:
        f"{R}/metrics.json",
    params:
        variants=stage2_variants(),
        reads=step_reads("metrics"),
    log:
        f"{L}/metrics.log",
    threads: 1
    resources:
        runtime=10,
        mem_mb=1000,
    script:
        "../workflow_scripts/metrics.py"


rule report:
    input:
        metrics=f"{R}/metrics.json",
        data_plots=f"{REP}/figures/data",
    output:
        report=f"{REP}/report.md",
        figures=directory(f"{REP}/figures/training"),
        cards=directory(f"{REP}/model_cards"),  # evaluation model cards (model folders stay as trained)
    params:
        reads=step_reads("report"),
    log:
        f"{L}/report.log",
    threads: 1
    resources:
        runtime=10,
        mem_mb=1000,
    script:
        "../workflow_scripts/report.py"
