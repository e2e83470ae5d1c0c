from refine_iqa import report
from refine_iqa.joblog import job_log

with job_log(snakemake.log[0]):
    report.render_report(snakemake.config, snakemake.input.metrics, snakemake.output.report, snakemake.output.figures,
                         snakemake.output.cards)
