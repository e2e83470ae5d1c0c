# Refine-IQA workflow: data curation -> localized distortion synthesis -> Stage-1 GRPO -> Stage-2 GRPO
# -> evaluation -> ablations -> report. Settings: params.yaml (validated before any job starts).
import os
import uuid

from snakemake.exceptions import WorkflowError

from refine_iqa.config import ConfigError, check_paths, load_params

# Always the repository's params.yaml (so `--directory` works); --configfile files merge over it.
configfile: os.path.join(workflow.basedir, "params.yaml")

# Malformed settings stop every invocation, dry-runs included.
# params.yaml, then its overlay, then --configfile/--config on top (see config.load_params).
try:
    _resolved = load_params(os.path.join(workflow.basedir, "params.yaml"),
                            overrides=dict(workflow.config_settings.overwrite_config))
except ConfigError as err:
    raise WorkflowError(f"configuration error: {err}")
config.clear()
config.update(_resolved)

# One MLflow parent run groups every job of this invocation (jobs inherit the variable).
os.environ.setdefault("REFINE_IQA_RUN_GROUP", uuid.uuid4().hex[:12])
# The process that owns the parent run (run_workflow.py when `make run` runs one Snakemake per DVC stage) closes
# it; if it dies, the next invocation closes that run as KILLED.
os.environ.setdefault("REFINE_IQA_RUN_OWNER_PID", str(os.getpid()))


include: "rules/common.smk"
include: "rules/model.smk"
include: "rules/data.smk"
include: "rules/stage1.smk"
include: "rules/stage2.smk"
include: "rules/evaluate.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        f"{R}/metrics.json",
        f"{REP}/report.md",


onstart:
    # A real run (not a dry-run) stops before any job if a model or dataset folder it names is missing.
    try:
        check_paths(config)
    except ConfigError as err:
        raise WorkflowError(f"configuration error: {err}")


onsuccess:
    from refine_iqa import tracking
    tracking.finish_parent(config["tracking"], "FINISHED")


onerror:
    from refine_iqa import tracking
    tracking.finish_parent(config["tracking"], "FAILED")
