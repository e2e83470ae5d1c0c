from refine_iqa.stages.data import make_scenes
from refine_iqa.joblog import job_log

with job_log(snakemake.log[0]):
    make_scenes(snakemake.config, snakemake.output[0])
