from refine_iqa.stages.evaluate import eval_baselines
from refine_iqa.joblog import job_log

with job_log(snakemake.log[0]):
    eval_baselines(snakemake.config, snakemake.input.test, snakemake.output[0])
