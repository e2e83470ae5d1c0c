# Paths and small helpers shared by the rules (no work happens here).
import json
from pathlib import Path

from refine_iqa import steps as _steps
from refine_iqa.io_utils import atomic_write_text

W = config["paths"]["work"]
M = config["paths"]["models"]
R = config["paths"]["results"]
REP = config["paths"]["reports"]
L = config["paths"]["logs"]

PERCEPTION = f"{W}/perception"
SCORING = f"{W}/scoring"


def resolved_params_file():
    """The validated settings as JSON for the shell-launched training jobs. Named by content, so two
    invocations with different settings never overwrite each other's; handed to jobs through the
    environment (not a rule param: which file holds them must not trigger re-runs, the settings do)."""
    import hashlib

    text = json.dumps(config, indent=1, sort_keys=True)
    path = Path(f".snakemake/refine_iqa/params-{hashlib.sha256(text.encode()).hexdigest()[:16]}.json")
    if not path.exists():
        atomic_write_text(path, text)
    return str(path.resolve())


os.environ["REFINE_IQA_PARAMS_JSON"] = resolved_params_file()


# Code versions are digests of the files refine_iqa.steps finds next to the imported package: it must be this
# workflow's own src/ (an installed copy of another checkout would hash the wrong code).
if Path(_steps.REPO_DIR).resolve() != Path(workflow.basedir).resolve():
    from snakemake.exceptions import WorkflowError

    raise WorkflowError(f"refine_iqa is imported from {_steps.PACKAGE_DIR}, not from this workflow's "
                        f"{workflow.basedir}/src; set PYTHONPATH={workflow.basedir}/src or reinstall (make setup)")


def step_reads(step):
    """What a step reads, as one rule param (the params trigger re-runs the step when it changes): its
    settings (the params keys its code reads) and a digest of its code (the package modules it imports and
    its workflow script). Both are derived from the source by refine_iqa.steps; dvc.yaml lists the same."""
    return {"config": _steps.config_values(config, step), "code": _steps.code_version(step)}


def model_dir():
    """The base model folder: built here (embedded) or yours (model.path, source local)."""
    if config["model"]["source"] == "embedded":
        return f"{M}/tiny-qwen2.5-vl"
    return config["model"]["path"] or "<model.path is not set>"


def model_input():
    """The base model as a rule input; a missing local folder is reported at start (onstart), so that
    dry-runs of the paper configuration work on a machine without the 7B model."""
    path = model_dir()
    if config["model"]["source"] == "embedded" or Path(path).exists():
        return path
    return []


def base_model_dir():
    """The model Stage-1 starts from: the format-warm-started tiny model (embedded) or the model itself."""
    return f"{M}/base" if config["warmstart"]["enabled"] else model_dir()


def base_model_input():
    return f"{M}/base" if config["warmstart"]["enabled"] else model_input()


def launcher():
    """python for one process; accelerate launch (config from configs/) for several processes or GPUs."""
    c = config["compute"]
    if c["num_processes"] == 1 and c["device"] == "cpu":
        return "python"
    # Inside a SLURM allocation the job's GPU count wins, so the profile's `gpu` request and the process
    # count cannot disagree.
    n = "${SLURM_GPUS_ON_NODE:-%d}" % c["num_processes"]
    return f"accelerate launch --config_file {c['accelerate_config']} --num_processes {n}"


def stage2_variants():
    """Every Stage-2 run: main, the ablation variants and their training-seed replicates (`no_pd_seed1`)."""
    from refine_iqa.variants import stage2_runs

    return stage2_runs(config)


def stage2_init(wildcards):
    from refine_iqa.stages.stage2 import stage2_settings

    init = stage2_settings(config, wildcards.variant)["init"]
    return f"{M}/stage1" if init == "stage1" else base_model_dir()


def stage2_init_input(wildcards):
    path = stage2_init(wildcards)
    return base_model_input() if path == base_model_dir() else path


def evaluated_models():
    """Models evaluated in Tables 1-6: base, Stage-1, and every Stage-2 variant."""
    return ["base", "stage1"] + [f"stage2-{v}" for v in stage2_variants()]


def model_path_for(wildcards):
    return base_model_dir() if wildcards.model == "base" else f"{M}/{wildcards.model}"


def model_input_for(wildcards):
    return base_model_input() if wildcards.model == "base" else f"{M}/{wildcards.model}"


def curate_shard_dir(wildcards):
    return f"{PERCEPTION}/curated/shard-{wildcards.shard}"


def scenes_input(wildcards):
    return f"{PERCEPTION}/scenes" if config["data"]["perception"]["source"] == "scenes" else []


def review_decisions(wildcards):
    """The decisions file in manual review mode (a missing one is reported at start, like the model)."""
    r = config["data"]["perception"]["review"]
    return r["decisions"] if r["mode"] == "manual" and Path(r["decisions"]).exists() else []


def qbench_root():
    """The real Q-Bench folder when configured, else the synthetic one built from this run's data."""
    return config["data"]["scoring"]["qbench_root"] or f"{W}/qbench"
