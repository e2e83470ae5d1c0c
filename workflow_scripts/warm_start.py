from refine_iqa import tracking
from refine_iqa.stages.model import warm_start
from refine_iqa.joblog import job_log

tracking.set_job_files(snakemake.input, snakemake.output)  # lineage: the runs tag their DVC hashes

with job_log(snakemake.log[0]):
    warm_start(snakemake.config, snakemake.input.model, snakemake.input.manifest, snakemake.input.scoring,
               snakemake.output.model, snakemake.output.curve)
