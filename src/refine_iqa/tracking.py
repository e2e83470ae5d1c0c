"""MLflow tracking: the only module that imports mlflow.

Layout: one parent run per workflow run (grouped by the REFINE_IQA_RUN_GROUP environment variable, which
the Snakefile sets once per invocation), one child run per stage with its params, per-step curves, final
metrics and artifacts. With tracking disabled every call is a no-op, so library code never checks.

Lineage (docs/provenance.md): every run is tagged with the git commit, whether the tree was dirty, the hash of
the resolved params and the DVC hashes (md5; `<md5>.dir` for folders, as in dvc.lock) of the job's inputs and
outputs (the workflow hands their paths over in REFINE_IQA_INPUTS / REFINE_IQA_OUTPUTS). The experiment is
tagged as a model-training experiment; final models can be registered with their DVC hash.

Crashes: every run records the pid and host that run it; a RUNNING run whose process is gone (same host) is
closed as KILLED when the next run starts. A training that resumes from a checkpoint continues its own run
(the run id is kept in the checkpoint folder, see StageRun.attach_checkpoints).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import socket
import subprocess
from pathlib import Path
from typing import Any, Iterator

GROUP_ENV = "REFINE_IQA_RUN_GROUP"
OWNER_ENV = "REFINE_IQA_RUN_OWNER_PID"  # the process that owns the parent run (run_workflow.py / Snakemake)
INPUTS_ENV, OUTPUTS_ENV = "REFINE_IQA_INPUTS", "REFINE_IQA_OUTPUTS"
PARAMS_ENV = "REFINE_IQA_PARAMS_JSON"
# The experiment type MLflow 3's UI reads (mlflow/server/js: CUSTOM_MODEL_DEVELOPMENT): the model-training view.
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
RUN_ID_FILE = "mlflow_run.json"  # in a training's checkpoint folder: the run a resumed training continues
LOCK_DIR = Path(".snakemake")
PARENTS_DIR = "mlflow-parents"  # under LOCK_DIR: one file per group whose parent run was created (see finish_parent)
# Snakemake's marker in folder outputs, added after the job: bookkeeping, not content (.dvcignore lists it too)
DVC_IGNORED = frozenset({".snakemake_timestamp"})


def set_job_files(inputs, outputs) -> None:
    """Tell the runs this job opens which files it reads and writes (workflow scripts call this)."""
    os.environ[INPUTS_ENV] = " ".join(str(p) for p in inputs)
    os.environ[OUTPUTS_ENV] = " ".join(str(p) for p in outputs)


# --- lineage ----------------------------------------------------------------------------------------------

def _md5_file(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def dvc_hash(path: str | os.PathLike) -> str | None:
    """DVC 3's md5 of a file, or of a folder (md5 of the sorted [{"md5", "relpath"}] JSON, plus ".dir"),
    equal to the hash dvc.lock records for the same output."""
    path = Path(path)
    if path.is_file():
        return _md5_file(path)
    if not path.is_dir():
        return None
    entries = sorted(({"md5": _md5_file(p), "relpath": p.relative_to(path).as_posix()}
                      for p in path.rglob("*") if p.is_file() and p.name not in DVC_IGNORED),
                     key=lambda e: e["relpath"])
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode()).hexdigest() + ".dir"


def _git(*args: str) -> str | None:
    try:
        proc = subprocess.run(["git", *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def lineage_tags() -> dict[str, str]:
    """git commit, dirty flag (tracked files other than dvc.lock, which every run rewrites) and params hash."""
    tags = {}
    commit = _git("rev-parse", "HEAD")
    if commit:
        tags["refine_iqa.git_commit"] = commit
        dirty = _git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)dvc.lock")
        tags["refine_iqa.git_dirty"] = "true" if dirty else "false"
    params_json = os.environ.get(PARAMS_ENV)
    if params_json and Path(params_json).is_file():
        tags["refine_iqa.params_hash"] = hashlib.sha256(Path(params_json).read_bytes()).hexdigest()[:16]
    return tags


def _file_tags(prefix: str, env: str) -> dict[str, str]:
    out = {}
    for p in os.environ.get(env, "").split():
        h = dvc_hash(p)
        if h:
            out[f"refine_iqa.{prefix}.{Path(p).as_posix()}"[:250]] = h
    return out


# --- crashed runs -----------------------------------------------------------------------------------------

def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed process nobody has reaped yet (a zombie) is dead too
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return True


def _process_tags(pid: int | None = None) -> dict[str, str]:
    return {"refine_iqa.pid": str(pid or os.getpid()), "refine_iqa.host": socket.gethostname()}


def close_dead_runs(client, experiment_id: str) -> list[str]:
    """End as KILLED every RUNNING run of this host whose process is gone (killed job, crashed machine)."""
    host, closed = socket.gethostname(), []
    for r in client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=1000):
        t = r.data.tags
        pid = t.get("refine_iqa.pid")
        if t.get("refine_iqa.host") == host and pid and pid.isdigit() and not _alive(int(pid)):
            client.set_terminated(r.info.run_id, "KILLED")
            client.set_tag(r.info.run_id, "refine_iqa.closed_by", f"pid {os.getpid()}: its process {pid} was gone")
            closed.append(r.info.run_id)
    return closed


@contextlib.contextmanager
def _locked(lock_dir: Path = LOCK_DIR) -> Iterator[None]:
    """Jobs of one workflow start together: the parent lookup, the dead-run sweep and resumption are serial."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / ".mlflow-parent.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


class StageRun:
    """A child run. Methods are safe to call when tracking is off (self._mlflow is None)."""

    def __init__(self, mlflow_module=None, run=None, client=None):
        self._mlflow = mlflow_module
        self.run = run
        self._client = client
        # After a resume: {key: {step: value}} the killed attempt logged past its last checkpoint (see
        # attach_checkpoints); the largest gap between those values and the replayed ones so far.
        self._logged_past_checkpoint: dict[str, dict[int, float]] = {}
        self._replay_max_diff = 0.0

    @property
    def run_id(self) -> str | None:
        return self.run.info.run_id if self.run else None

    def log_params(self, params: dict) -> None:
        if not self._mlflow:
            return
        flat = {k: str(v)[:500] for k, v in _flatten(params).items()}
        items = list(flat.items())
        for i in range(0, len(items), 100):
            self._mlflow.log_params(dict(items[i : i + 100]), run_id=self.run_id)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if not self._mlflow:
            return
        clean = {}
        for k, v in _flatten(metrics).items():
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            if math.isfinite(float(v)):
                clean[_metric_key(k)] = float(v)
        if step is not None and self._logged_past_checkpoint:
            clean = self._drop_replayed(clean, step)
        if clean:
            self._mlflow.log_metrics(clean, step=step, run_id=self.run_id)

    def _drop_replayed(self, clean: dict[str, float], step: int) -> dict[str, float]:
        """A step the killed attempt logged after its last checkpoint is trained again on resume (same RNG state
        and data order). MLflow cannot delete metric points, so the replay is not logged a second time (one
        curve, each step once); how far the replayed values are from the logged ones is kept as a tag."""
        keep = {}
        for k, v in clean.items():
            old = self._logged_past_checkpoint.get(k, {}).get(step)
            if old is None:
                keep[k] = v
            else:
                diff = abs(v - old)
                self._replay_max_diff = max(self._replay_max_diff, diff)
        if len(keep) < len(clean):
            self._client.set_tag(self.run_id, "refine_iqa.replay_max_abs_diff", f"{self._replay_max_diff:.3g}")
        return keep

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        if self._mlflow and Path(path).exists():
            self._mlflow.log_artifact(str(path), artifact_path=artifact_path, run_id=self.run_id)

    def set_tags(self, tags: dict[str, str]) -> None:
        if self._mlflow:
            for k, v in tags.items():
                self._mlflow.MlflowClient().set_tag(self.run_id, k, str(v))

    def attach_checkpoints(self, checkpoint_dir: str | os.PathLike, resumed: bool, from_step: int | None = None) -> None:
        """Called by the training once it knows whether it resumes (rl.grpo.run_grpo `on_checkpoints`).
        Resumed: continue the run whose id the checkpoint folder keeps (this fresh run is deleted), so one
        training has one run and one curve; `from_step` is the checkpoint's global step: the steps the run
        logged after it are replayed and not logged twice. Fresh start: keep this run's id there for a later
        resume."""
        if not self._mlflow:
            return
        id_file = Path(checkpoint_dir) / RUN_ID_FILE
        client = self._client
        if resumed and id_file.is_file():
            old_id = json.loads(id_file.read_text()).get("run_id")
            try:
                old = client.get_run(old_id)
            except Exception:  # deleted, or another tracking store: keep the fresh run
                old = None
            if old is not None and old_id != self.run_id:
                with _locked():
                    tags = {k: v for k, v in self.run.data.tags.items()
                            if k.startswith("refine_iqa.") or k == "mlflow.parentRunId"}
                    client.update_run(old_id, status="RUNNING")
                    for k, v in {**tags, **_process_tags(), "refine_iqa.resumed": "true"}.items():
                        client.set_tag(old_id, k, v)
                    client.set_terminated(self.run_id, "FINISHED")
                    client.delete_run(self.run_id)
                    self.run = client.get_run(old_id)
                    self._remember_steps_past(from_step)
                print(f"[tracking] resumed training continues MLflow run {old_id}", flush=True)
                return
        if os.environ.get("RANK", "0") == "0":
            Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
            from refine_iqa.io_utils import atomic_write_json

            atomic_write_json(id_file, {"run_id": self.run_id})

    def _remember_steps_past(self, from_step: int | None) -> None:
        if from_step is None:
            return
        replayed = set()
        for key in self.run.data.metrics:
            past = {m.step: m.value for m in self._client.get_metric_history(self.run_id, key) if m.step > from_step}
            if past:
                self._logged_past_checkpoint[key] = past
                replayed.update(past)
        if replayed:
            self._client.set_tag(self.run_id, "refine_iqa.resumed_from_step", str(from_step))
            self._client.set_tag(self.run_id, "refine_iqa.replayed_steps",
                                 f"{min(replayed)}-{max(replayed)}" if len(replayed) > 1 else str(min(replayed)))

    def register_model(self, name: str, model_dir: str | os.PathLike) -> None:
        """A registry version of `model_dir` (source: the folder DVC versions), tagged with its DVC hash."""
        if not self._mlflow:
            return
        client = self._client
        if not client.search_registered_models(filter_string=f"name = '{name}'"):
            client.create_registered_model(name, tags={"refine_iqa.dvc_output": str(model_dir)})
        client.create_model_version(name, source=str(Path(model_dir).resolve()), run_id=self.run_id,
                                    tags={"dvc.md5": dvc_hash(model_dir) or "", "dvc.path": str(model_dir),
                                          **lineage_tags()}, await_creation_for=0)


def _metric_key(k: str) -> str:
    # MLflow keys allow alphanumerics, _ - . space / : only.
    return "".join(c if (c.isalnum() or c in "_-. /:") else "_" for c in k)


def _parent_run_id(mlflow, client, experiment_id: str, group: str, lock_dir: Path) -> str:
    """Find or create the parent run of this workflow invocation (file lock: jobs may start together)."""
    with _locked(lock_dir):
        close_dead_runs(client, experiment_id)
        found = client.search_runs(
            [experiment_id], filter_string=f"tags.`refine_iqa.group` = '{group}' and tags.`refine_iqa.parent` = 'true'",
            max_results=1,
        )
        if found:
            return found[0].info.run_id
        owner = os.environ.get(OWNER_ENV, "")
        run = client.create_run(experiment_id, tags={"refine_iqa.group": group, "refine_iqa.parent": "true",
                                                     "mlflow.runName": f"workflow-{group}", **lineage_tags(),
                                                     **_process_tags(int(owner) if owner.isdigit() else None)})
        from refine_iqa.io_utils import atomic_write_text

        atomic_write_text(lock_dir / PARENTS_DIR / group, run.info.run_id)
        return run.info.run_id


@contextlib.contextmanager
def stage_run(stage: str, tracking: dict, params: dict | None = None, tags: dict | None = None) -> Iterator[StageRun]:
    """Open a child run for `stage` under the workflow's parent run; closes it FINISHED or FAILED."""
    # Under `accelerate launch` every process runs the stage; only the main one (RANK 0) logs.
    if not tracking.get("enabled", False) or os.environ.get("RANK", "0") != "0":
        yield StageRun()
        return
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = tracking["tracking_uri"]
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.set_experiment(tracking["experiment"])
    client = MlflowClient(uri)
    if experiment.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
        client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    group = os.environ.get(GROUP_ENV)
    run_tags = {"refine_iqa.stage": stage, **lineage_tags(), **_file_tags("in", INPUTS_ENV), **_process_tags(),
                **(tags or {})}
    if group:
        parent = _parent_run_id(mlflow, client, experiment.experiment_id, group, LOCK_DIR)
        run_tags.update({"mlflow.parentRunId": parent, "refine_iqa.group": group})
    else:
        with _locked():
            close_dead_runs(client, experiment.experiment_id)
    run = client.create_run(experiment.experiment_id, run_name=stage, tags=run_tags)
    sr = StageRun(mlflow, run, client)
    if params:
        sr.log_params(params)
    try:
        yield sr
    except BaseException:
        client.set_terminated(sr.run_id, "FAILED")
        raise
    # the outputs exist now: their DVC hashes lead from this run to the exact artifacts
    for k, v in _file_tags("out", OUTPUTS_ENV).items():
        client.set_tag(sr.run_id, k, v)
    client.set_terminated(sr.run_id, "FINISHED")


def owns_parent() -> bool:
    """Whether this process owns the current group's parent run (REFINE_IQA_RUN_OWNER_PID names it)."""
    return os.environ.get(OWNER_ENV, str(os.getpid())) == str(os.getpid())


def finish_parent(tracking: dict, status: str = "FINISHED") -> None:
    """Close the parent run of the current group, when this process owns it (Snakefile onsuccess/onerror,
    run_workflow.py after `dvc repro`). `make run` starts one Snakemake per DVC stage, all in one group owned by
    run_workflow.py: a Snakemake that closed the shared parent would leave it FINISHED while later stages still
    run under it, and a kill -9 then could not be seen (close_dead_runs closes RUNNING runs only)."""
    group = os.environ.get(GROUP_ENV)
    if not (tracking.get("enabled") and group and owns_parent()):
        return
    marker = LOCK_DIR / PARENTS_DIR / group  # written by the job that created the parent
    if not marker.is_file():  # no job opened one: nothing to close, and no mlflow import (seconds)
        return
    from mlflow.tracking import MlflowClient

    MlflowClient(tracking["tracking_uri"]).set_terminated(marker.read_text().strip(), status)
    marker.unlink(missing_ok=True)
