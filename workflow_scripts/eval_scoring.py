from refine_iqa import stages
from refine_iqa.joblog import job_log

with job_log(snakemake.log[0]):
    stages.eval_scoring(snakemake.config, snakemake.params.model, snakemake.input.test,
                        snakemake.output.summary, snakemake.output.preds, snakemake.wildcards.model)
