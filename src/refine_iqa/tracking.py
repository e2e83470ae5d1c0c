"""MLflow tracking: the only module that imports mlflow.

Layout: one parent run per workflow run (grouped by the REFINE_IQA_RUN_GROUP environment variable, which
the Snakefile sets once per invocation), one child run per stage with its params, per-step curves, final
metrics and artifacts. With tracking disabled every call is a no-op, so library code never checks.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
from pathlib import Path
from typing import Any, Iterator

GROUP_ENV = "REFINE_IQA_RUN_GROUP"


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

    def __init__(self, mlflow_module=None, run=None):
        self._mlflow = mlflow_module
        self.run = run

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
        if clean:
            self._mlflow.log_metrics(clean, step=step, run_id=self.run_id)

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        if self._mlflow and Path(path).exists():
            self._mlflow.log_artifact(str(path), artifact_path=artifact_path, run_id=self.run_id)

    def set_tags(self, tags: dict[str, str]) -> None:
        if self._mlflow:
            for k, v in tags.items():
                self._mlflow.MlflowClient().set_tag(self.run_id, k, str(v))


def _metric_key(k: str) -> str:
    # MLflow keys allow alphanumerics, _ - . space / : only.
    return "".join(c if (c.isalnum() or c in "_-. /:") else "_" for c in k)


def _parent_run_id(mlflow, client, experiment_id: str, group: str, lock_dir: Path) -> str:
    """Find or create the parent run of this workflow invocation (file lock: jobs may start together)."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / ".mlflow-parent.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = client.search_runs(
            [experiment_id], filter_string=f"tags.`refine_iqa.group` = '{group}' and tags.`refine_iqa.parent` = 'true'",
            max_results=1,
        )
        if found:
            return found[0].info.run_id
        run = client.create_run(experiment_id, tags={"refine_iqa.group": group, "refine_iqa.parent": "true",
                                                     "mlflow.runName": f"workflow-{group}"})
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
    group = os.environ.get(GROUP_ENV)
    run_tags = {"refine_iqa.stage": stage, **(tags or {})}
    if group:
        parent = _parent_run_id(mlflow, client, experiment.experiment_id, group, Path(".snakemake"))
        run_tags.update({"mlflow.parentRunId": parent, "refine_iqa.group": group})
    run = client.create_run(experiment.experiment_id, run_name=stage, tags=run_tags)
    sr = StageRun(mlflow, run)
    if params:
        sr.log_params(params)
    try:
        yield sr
    except BaseException:
        client.set_terminated(run.info.run_id, "FAILED")
        raise
    client.set_terminated(run.info.run_id, "FINISHED")


def finish_parent(tracking: dict, status: str = "FINISHED") -> None:
    """Close the parent run of the current group (Snakefile onsuccess/onerror)."""
    group = os.environ.get(GROUP_ENV)
    if not (tracking.get("enabled") and group):
        return
    from mlflow.tracking import MlflowClient
    import mlflow

    mlflow.set_tracking_uri(tracking["tracking_uri"])
    exp = mlflow.get_experiment_by_name(tracking["experiment"])
    if exp is None:
        return
    client = MlflowClient(tracking["tracking_uri"])
    for r in client.search_runs([exp.experiment_id], filter_string=f"tags.`refine_iqa.group` = '{group}' and tags.`refine_iqa.parent` = 'true'"):
        client.set_terminated(r.info.run_id, status)
