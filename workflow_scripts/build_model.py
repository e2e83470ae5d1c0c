from refine_iqa.stages.model import build_model
from refine_iqa.joblog import job_log

with job_log(snakemake.log[0]):
    build_model(snakemake.config, snakemake.output.model)
