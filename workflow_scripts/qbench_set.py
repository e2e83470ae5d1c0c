from refine_iqa import stages
from refine_iqa.joblog import job_log

with job_log(snakemake.log[0]):
    stages.qbench_set(snakemake.config, snakemake.input.test, snakemake.input.manifest, snakemake.output[0])
