from refine_iqa.stages.data import curate_shard
from refine_iqa.joblog import job_log

with job_log(snakemake.log[0]):
    scenes = snakemake.input[0] if len(snakemake.input) else None
    curate_shard(snakemake.config, scenes, snakemake.params.out, int(snakemake.wildcards.shard))
