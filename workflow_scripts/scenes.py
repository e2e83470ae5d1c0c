from refine_iqa import stages
from refine_iqa.joblog import job_log

with job_log(snakemake.log[0]):
    stages.make_scenes(snakemake.config, snakemake.output[0])
