from refine_iqa import report
from refine_iqa.joblog import job_log

with job_log(snakemake.log[0]):
    report.collect_metrics(snakemake.config, snakemake.output[0], variants=snakemake.params.variants)
