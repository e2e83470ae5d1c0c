# Refine-Perception data engine (curation -> localized synthesis -> split) and the Stage-2 scoring data.

CURATE_SHARDS = range(config["data"]["perception"]["curate"]["shards"])
SYNTH_SHARDS = range(config["data"]["perception"]["synthesize"]["shards"])


if config["data"]["perception"]["source"] == "scenes":

    rule scenes:
        output:
            directory(f"{PERCEPTION}/scenes"),
        params:
            reads=step_reads("scenes"),
        log:
            f"{L}/scenes.log",
        threads: 1
        resources:
            runtime=10,
            mem_mb=1000,
        script:
            "../workflow_scripts/scenes.py"


rule curate_shard:
    input:
        scenes_input,
    output:
        curated=f"{PERCEPTION}/curated/shard-{{shard}}/curated.jsonl",
    params:
        reads=step_reads("curate_shard"),
        out=curate_shard_dir,
    log:
        f"{L}/curate/shard-{{shard}}.log",
    benchmark:
        f"{L}/benchmarks/curate-shard-{{shard}}.tsv"
    threads: 1
    resources:
        runtime=60,
        mem_mb=2000,
    script:
        "../workflow_scripts/curate_shard.py"


rule curate_merge:
    input:
        expand(f"{PERCEPTION}/curated/shard-{{shard}}/curated.jsonl", shard=CURATE_SHARDS),
    output:
        f"{PERCEPTION}/curated.jsonl",
    params:
        reads=step_reads("curate_merge"),
    log:
        f"{L}/curate/merge.log",
    threads: 1
    resources:
        runtime=10,
        mem_mb=1000,
    script:
        "../workflow_scripts/curate_merge.py"


rule synthesize_shard:
    input:
        f"{PERCEPTION}/curated.jsonl",
    output:
        f"{PERCEPTION}/synth/shards/shard-{{shard}}-of-{len(SYNTH_SHARDS):03d}.jsonl",
    params:
        reads=step_reads("synthesize_shard"),
        out=f"{PERCEPTION}/synth",
    log:
        f"{L}/synthesize/shard-{{shard}}.log",
    benchmark:
        f"{L}/benchmarks/synthesize-shard-{{shard}}.tsv"
    threads: 1
    resources:
        runtime=60,
        mem_mb=2000,
    script:
        "../workflow_scripts/synthesize_shard.py"


rule synthesize_merge:
    input:
        shards=expand(f"{PERCEPTION}/synth/shards/shard-{{shard}}-of-{len(SYNTH_SHARDS):03d}.jsonl",
                      shard=[f"{i:03d}" for i in SYNTH_SHARDS]),
        decisions=review_decisions,
    output:
        manifest=f"{PERCEPTION}/manifest.jsonl",
        stats=f"{R}/perception_data_stats.json",
        plots=directory(f"{REP}/figures/data"),
    params:
        reads=step_reads("synthesize_merge"),
    log:
        f"{L}/synthesize/merge.log",
    threads: 1
    resources:
        runtime=10,
        mem_mb=2000,
    script:
        "../workflow_scripts/synthesize_merge.py"


rule scoring_set:
    output:
        train=f"{SCORING}/scoring_train.jsonl",
        test=f"{SCORING}/scoring_test.jsonl",
    params:
        reads=step_reads("scoring_set"),
        out=SCORING,
    log:
        f"{L}/scoring_set.log",
    benchmark:
        f"{L}/benchmarks/scoring_set.tsv"
    threads: 1
    resources:
        runtime=30,
        mem_mb=4000,
    script:
        "../workflow_scripts/scoring_set.py"
