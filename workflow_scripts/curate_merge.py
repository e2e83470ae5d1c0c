from refine_iqa.data.curate import merge_curated
from refine_iqa.joblog import job_log

with job_log(snakemake.log[0]):
    n = merge_curated(list(snakemake.input), snakemake.output[0])
    print(f"merged {n} curated records")
