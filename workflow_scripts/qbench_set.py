from refine_iqa.stages.evaluate import qbench_set
from refine_iqa.joblog import job_log

with job_log(snakemake.log[0]):
    qbench_set(snakemake.config, snakemake.input.test, snakemake.input.manifest, snakemake.output[0])
