from refine_iqa import tracking
from refine_iqa.stages.evaluate import eval_scoring
from refine_iqa.joblog import job_log

tracking.set_job_files(snakemake.input, snakemake.output)  # lineage: the runs tag their DVC hashes

with job_log(snakemake.log[0]):
    eval_scoring(snakemake.config, snakemake.params.model, snakemake.input.test,
                 snakemake.output.summary, snakemake.output.preds, snakemake.wildcards.model)
