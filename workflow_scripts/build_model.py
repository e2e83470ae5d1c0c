from refine_iqa import stages
from refine_iqa.joblog import job_log

with job_log(snakemake.log[0]):
    stages.build_model(snakemake.config, snakemake.output.model)
