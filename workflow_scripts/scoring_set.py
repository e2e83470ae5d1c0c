from refine_iqa.stages.data import scoring_set
from refine_iqa.joblog import job_log

with job_log(snakemake.log[0]):
    scoring_set(snakemake.config, snakemake.params.out)
