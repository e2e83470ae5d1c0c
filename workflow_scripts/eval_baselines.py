from refine_iqa import stages
from refine_iqa.joblog import job_log

with job_log(snakemake.log[0]):
    stages.eval_baselines(snakemake.config, snakemake.input.test, snakemake.output[0])
