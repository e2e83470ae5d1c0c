from refine_iqa import stages
from refine_iqa.joblog import job_log

with job_log(snakemake.log[0]):
    stages.synthesize_merge(snakemake.config, list(snakemake.input.shards), snakemake.output.manifest,
                            snakemake.output.stats, snakemake.output.plots)
