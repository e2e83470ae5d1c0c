from refine_iqa import tracking
from refine_iqa.stages.data import synthesize_merge
from refine_iqa.joblog import job_log

tracking.set_job_files(snakemake.input, snakemake.output)  # lineage: the runs tag their DVC hashes

with job_log(snakemake.log[0]):
    synthesize_merge(snakemake.config, list(snakemake.input.shards), snakemake.output.manifest,
                     snakemake.output.stats, snakemake.output.plots)
