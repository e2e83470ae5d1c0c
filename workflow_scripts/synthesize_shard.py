from refine_iqa.stages.data import synthesize_shard
from refine_iqa.joblog import job_log

with job_log(snakemake.log[0]):
    synthesize_shard(snakemake.config, snakemake.input[0], snakemake.params.out, int(snakemake.wildcards.shard))
