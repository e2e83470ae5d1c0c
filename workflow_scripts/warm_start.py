from refine_iqa import stages
from refine_iqa.joblog import job_log

with job_log(snakemake.log[0]):
    stages.warm_start(snakemake.config, snakemake.input.model, snakemake.input.manifest, snakemake.input.scoring,
                      snakemake.output.model, snakemake.output.curve)
