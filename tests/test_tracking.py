"""tracking: DVC-compatible hashes, lineage tags, closing runs of dead processes, a resumed training continuing
its own run, and registering a model with its DVC hash (a throwaway sqlite store)."""

import hashlib
import json
import os
import subprocess
import sys

import pytest

from refine_iqa import tracking


def test_dvc_hash_of_a_file_and_a_folder(tmp_path):
    (tmp_path / "m" / "sub").mkdir(parents=True)
    (tmp_path / "m" / "b.txt").write_bytes(b"bb")
    (tmp_path / "m" / "sub" / "a.txt").write_bytes(b"a")
    assert tracking.dvc_hash(tmp_path / "m" / "b.txt") == hashlib.md5(b"bb").hexdigest()
    # DVC 3: md5 of json.dumps(sorted [{"md5", "relpath"}], sort_keys=True) + ".dir" (hand-built here)
    listing = [{"md5": hashlib.md5(b"bb").hexdigest(), "relpath": "b.txt"},
               {"md5": hashlib.md5(b"a").hexdigest(), "relpath": "sub/a.txt"}]
    want = hashlib.md5(json.dumps(listing, sort_keys=True).encode()).hexdigest() + ".dir"
    assert tracking.dvc_hash(tmp_path / "m") == want
    assert tracking.dvc_hash(tmp_path / "missing") is None


@pytest.fixture(scope="module")
def _db(tmp_path_factory):
    return tmp_path_factory.mktemp("mlflow") / "mlflow.db"  # one store (creating one costs seconds)


@pytest.fixture
def store(_db, tmp_path, monkeypatch, request):
    monkeypatch.chdir(tmp_path)
    for k in (tracking.GROUP_ENV, tracking.OWNER_ENV, tracking.INPUTS_ENV, tracking.OUTPUTS_ENV, tracking.PARAMS_ENV):
        monkeypatch.delenv(k, raising=False)
    return {"enabled": True, "tracking_uri": f"sqlite:///{_db}", "experiment": request.node.name}


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_runs_of_dead_processes_are_closed_as_killed_and_live_ones_kept(store):
    from mlflow.tracking import MlflowClient

    with tracking.stage_run("a", store):
        pass
    client = MlflowClient(store["tracking_uri"])
    exp = client.get_experiment_by_name(store["experiment"])
    assert exp.tags[tracking.EXPERIMENT_KIND_TAG] == "custom_model_development"
    host = tracking.socket.gethostname()
    dead = client.create_run(exp.experiment_id, tags={"refine_iqa.pid": str(_dead_pid()), "refine_iqa.host": host})
    live = client.create_run(exp.experiment_id, tags={"refine_iqa.pid": str(os.getpid()), "refine_iqa.host": host})
    other = client.create_run(exp.experiment_id, tags={"refine_iqa.pid": str(_dead_pid()), "refine_iqa.host": "x"})
    with tracking.stage_run("b", store):
        pass
    status = {r: client.get_run(r).info.status for r in (dead.info.run_id, live.info.run_id, other.info.run_id)}
    assert status == {dead.info.run_id: "KILLED", live.info.run_id: "RUNNING", other.info.run_id: "RUNNING"}


def test_a_killed_invocations_parent_is_closed_as_killed_not_finished_by_its_stages(store, monkeypatch):
    """`make run` is one parent run owned by run_workflow.py and one Snakemake per DVC stage. A stage's Snakemake
    ending (onsuccess) must leave the shared parent RUNNING: were it FINISHED, a later kill -9 of the owner would
    leave nothing for the next invocation to close (the defect seen in tests/test_dvc.py's kill test)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store["tracking_uri"])
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])  # run_workflow.py
    try:
        monkeypatch.setenv(tracking.GROUP_ENV, "killed-invocation")
        monkeypatch.setenv(tracking.OWNER_ENV, str(owner.pid))
        with tracking.stage_run("stage1", store) as s1:
            parent = s1.run.data.tags["mlflow.parentRunId"]
        assert client.get_run(parent).data.tags["refine_iqa.pid"] == str(owner.pid)
        tracking.finish_parent(store)  # the stage1 DVC stage's Snakemake ends: it does not own the parent
        assert client.get_run(parent).info.status == "RUNNING"
        with tracking.stage_run("stage2", store) as s2:  # the next DVC stage joins the same parent
            assert s2.run.data.tags["mlflow.parentRunId"] == parent
            owner.kill()  # kill -9 of the whole invocation
            owner.wait()
    finally:
        owner.kill()
        owner.wait()
    # the next invocation, owned by this process: its first job closes the dead owner's parent as KILLED
    monkeypatch.setenv(tracking.GROUP_ENV, "next-invocation")
    monkeypatch.setenv(tracking.OWNER_ENV, str(os.getpid()))
    with tracking.stage_run("stage2", store) as again:
        new_parent = again.run.data.tags["mlflow.parentRunId"]
    assert new_parent != parent and client.get_run(parent).info.status == "KILLED"
    assert f"its process {owner.pid} was gone" in client.get_run(parent).data.tags["refine_iqa.closed_by"]
    assert client.get_run(new_parent).info.status == "RUNNING"
    tracking.finish_parent(store, "FINISHED")  # the owner closes its own parent, and only that one
    assert client.get_run(new_parent).info.status == "FINISHED" and client.get_run(parent).info.status == "KILLED"
    assert not (tracking.LOCK_DIR / tracking.PARENTS_DIR / "next-invocation").exists()


def test_a_resumed_training_continues_its_run_and_models_are_registered(store, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    ckpt, model = tmp_path / "m.checkpoints", tmp_path / "m"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"w")
    monkeypatch.setenv(tracking.OUTPUTS_ENV, str(model))
    with tracking.stage_run("train", store) as first:
        first.attach_checkpoints(ckpt, resumed=False)  # fresh start: its id is kept with the checkpoints
        for step in (1, 2, 3):  # killed after step 3; its last checkpoint is step 2
            first.log_metrics({"loss": 1.0 / step}, step=step)
        first_id = first.run_id
    with tracking.stage_run("train", store) as again:
        again.attach_checkpoints(ckpt, resumed=True, from_step=2)
        assert again.run_id == first_id
        again.log_metrics({"loss": 0.3, "kl": 0.1}, step=3)  # step 3 is trained again: not logged twice
        again.log_metrics({"loss": 0.25}, step=4)
        again.register_model("refine-iqa-test", model)
    client = MlflowClient(store["tracking_uri"])
    hist = client.get_metric_history(first_id, "loss")
    assert [m.step for m in hist] == [1, 2, 3, 4] and client.get_run(first_id).info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(first_id, "kl")] == [3]  # a key the first attempt never logged
    tags = client.get_run(first_id).data.tags
    assert tags["refine_iqa.resumed_from_step"] == "2" and tags["refine_iqa.replayed_steps"] == "3"
    assert float(tags["refine_iqa.replay_max_abs_diff"]) == pytest.approx(abs(0.3 - 1 / 3), rel=1e-3)
    assert client.get_run(first_id).data.tags[f"refine_iqa.out.{model.as_posix()}"] == tracking.dvc_hash(model)
    v = client.search_model_versions("name = 'refine-iqa-test'")[0]
    assert v.source == str(model.resolve()) and v.tags["dvc.md5"] == tracking.dvc_hash(model) and v.run_id == first_id
    # the superseded fresh run is deleted, not left behind
    active = client.search_runs([client.get_experiment_by_name(store["experiment"]).experiment_id])
    assert [r.info.run_id for r in active] == [first_id]


def test_snakemake_folder_marker_is_not_content(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "w").write_bytes(b"w")
    before = tracking.dvc_hash(tmp_path / "m")
    (tmp_path / "m" / ".snakemake_timestamp").write_bytes(b"")  # Snakemake adds it after the job
    assert tracking.dvc_hash(tmp_path / "m") == before
    assert ".snakemake_timestamp" in (tracking.Path(__file__).parents[1] / ".dvcignore").read_text()
