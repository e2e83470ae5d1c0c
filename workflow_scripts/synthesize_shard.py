from refine_iqa import stages
from refine_iqa.joblog import job_log

with job_log(snakemake.log[0]):
    stages.synthesize_shard(snakemake.config, snakemake.input[0], snakemake.params.out, int(snakemake.wildcards.shard))
