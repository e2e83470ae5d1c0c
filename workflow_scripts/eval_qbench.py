from refine_iqa import stages, tracking
from refine_iqa.joblog import job_log

tracking.set_job_files(snakemake.input, snakemake.output)  # lineage: the runs tag their DVC hashes

with job_log(snakemake.log[0]):
    stages.eval_qbench(snakemake.config, snakemake.params.model, snakemake.input.qbench, snakemake.output[0],
                       snakemake.wildcards.model)
