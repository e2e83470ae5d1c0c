from refine_iqa import stages
from refine_iqa.joblog import job_log

with job_log(snakemake.log[0]):
    stages.eval_perception(snakemake.config, snakemake.params.model, snakemake.input.manifest,
                           snakemake.output.summary, snakemake.output.preds, snakemake.wildcards.model)
