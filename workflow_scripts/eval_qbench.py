from refine_iqa import stages
from refine_iqa.joblog import job_log

with job_log(snakemake.log[0]):
    stages.eval_qbench(snakemake.config, snakemake.params.model, snakemake.input.qbench, snakemake.output[0],
                       snakemake.wildcards.model)
