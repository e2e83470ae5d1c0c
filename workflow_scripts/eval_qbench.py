from refine_iqa import tracking
from refine_iqa.stages.evaluate import eval_qbench
from refine_iqa.joblog import job_log

tracking.set_job_files(snakemake.input, snakemake.output)  # lineage: the runs tag their DVC hashes

with job_log(snakemake.log[0]):
    eval_qbench(snakemake.config, snakemake.params.model, snakemake.input.qbench, snakemake.output[0],
                snakemake.wildcards.model)
