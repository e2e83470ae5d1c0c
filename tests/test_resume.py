"""Training resumes from its last checkpoint after the process is killed (SIGKILL), and the checkpoint
bookkeeping (complete vs half-written checkpoints, checkpoints of another run) is right."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from refine_iqa.rl.grpo import (_NoFinalSave, checkpoint_dir_for, checkpoint_step, is_complete_checkpoint,
                                latest_checkpoint, prepare_checkpoints, run_key)

REPO = Path(__file__).resolve().parents[1]


def _checkpoint(root: Path, step: int, *, state_step: int | None = None, state: bool = True) -> Path:
    d = root / f"checkpoint-{step}"
    d.mkdir(parents=True)
    (d / "model.safetensors").write_bytes(b"x")
    if state:
        (d / "trainer_state.json").write_text(json.dumps({"global_step": step if state_step is None else state_step}))
    return d


# --- bookkeeping ----------------------------------------------------------------------------------------------

def test_checkpoint_folder_sits_next_to_the_output():
    assert checkpoint_dir_for("models/stage1") == Path("models/stage1.checkpoints")
    assert checkpoint_dir_for("/x/models/stage2-main/") == Path("/x/models/stage2-main.checkpoints")
    assert checkpoint_step("checkpoint-150") == 150
    assert checkpoint_step("checkpoint-15a") is None
    assert checkpoint_step("run_key.json") is None


def test_a_checkpoint_is_complete_only_with_its_trainer_state(tmp_path):
    assert is_complete_checkpoint(_checkpoint(tmp_path, 4))
    assert not is_complete_checkpoint(_checkpoint(tmp_path, 6, state=False))      # killed while saving
    assert not is_complete_checkpoint(_checkpoint(tmp_path, 8, state_step=7))     # state of another step
    bad = _checkpoint(tmp_path, 10, state=False)
    (bad / "trainer_state.json").write_text('{"global_step": 1')                  # truncated JSON
    assert not is_complete_checkpoint(bad)
    assert not is_complete_checkpoint(tmp_path / "checkpoint-99")                 # absent


def test_latest_checkpoint_skips_incomplete_ones(tmp_path):
    assert latest_checkpoint(tmp_path / "absent") is None
    assert latest_checkpoint(tmp_path) is None
    _checkpoint(tmp_path, 2)
    _checkpoint(tmp_path, 10)        # 10 > 9 numerically (not as text)
    _checkpoint(tmp_path, 9)
    _checkpoint(tmp_path, 12, state=False)
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoint-10"


def test_prepare_keeps_checkpoints_of_the_same_run_and_removes_half_written_ones(tmp_path):
    d = tmp_path / "m.checkpoints"
    assert prepare_checkpoints(d, "key-a") is None                     # first run: nothing to resume
    _checkpoint(d, 2)
    _checkpoint(d, 4, state=False)
    assert prepare_checkpoints(d, "key-a") == d / "checkpoint-2"
    assert not (d / "checkpoint-4").exists()
    assert json.loads((d / "run_key.json").read_text()) == {"key": "key-a"}


def test_prepare_discards_checkpoints_of_a_different_run(tmp_path, capsys):
    d = tmp_path / "m.checkpoints"
    prepare_checkpoints(d, "key-a")
    _checkpoint(d, 2)
    assert prepare_checkpoints(d, "key-b") is None
    assert "different run" in capsys.readouterr().out
    assert not (d / "checkpoint-2").exists()
    assert json.loads((d / "run_key.json").read_text()) == {"key": "key-b"}
    # a folder without a key file (unknown origin) is not trusted either
    (d / "run_key.json").unlink()
    _checkpoint(d, 2)
    assert prepare_checkpoints(d, "key-b") is None


def test_run_key_changes_with_anything_that_decides_the_training():
    img = Image.new("RGB", (32, 24))
    samples = [{"prompt": [{"role": "user", "content": "q"}], "images": [img], "mos_scaled": 3.1}]
    base = run_key({"max_steps": 10}, samples, seed=0, extra={"start_model": [["a", 1, 2]]})
    assert base == run_key({"max_steps": 10}, [dict(samples[0])], seed=0, extra={"start_model": [["a", 1, 2]]})
    assert base != run_key({"max_steps": 11}, samples, seed=0, extra={"start_model": [["a", 1, 2]]})
    assert base != run_key({"max_steps": 10}, samples, seed=1, extra={"start_model": [["a", 1, 2]]})
    assert base != run_key({"max_steps": 10}, [{**samples[0], "mos_scaled": 3.2}], seed=0,
                           extra={"start_model": [["a", 1, 2]]})
    assert base != run_key({"max_steps": 10}, [{**samples[0], "images": [Image.new("RGB", (24, 32))]}], seed=0,
                           extra={"start_model": [["a", 1, 2]]})
    assert base != run_key({"max_steps": 10}, samples, seed=0, extra={"start_model": [["a", 1, 3]]})


class _Ctl:
    should_save = True


class _State:
    def __init__(self, step, max_steps):
        self.global_step, self.max_steps = step, max_steps


def test_no_checkpoint_at_the_last_step():
    cb = _NoFinalSave()
    assert cb.on_step_end(None, _State(10, 10), _Ctl()).should_save is False   # the final model follows
    assert cb.on_step_end(None, _State(8, 8), _Ctl()).should_save is False     # even on a regular step
    assert cb.on_step_end(None, _State(4, 10), _Ctl()).should_save is True     # mid-run: untouched


# --- kill and resume a real training process ----------------------------------------------------------------

DRIVER = """
import json, sys
from refine_iqa.stages.stage2 import train_stage2
params = json.load(open(sys.argv[1]))
train_stage2(params, sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], variant="main")
"""

MAX_STEPS, EVERY = 12, 2


@pytest.fixture(scope="module")
def stage2_inputs(tmp_path_factory, tiny_model_dir):
    from refine_iqa.config import load_params
    from refine_iqa.data.scoring_set import build_brightness_set

    root = tmp_path_factory.mktemp("resume")
    build_brightness_set(root / "scoring", n_train=8, n_test=2, seed=0, size=56)
    params = load_params(REPO / "params.yaml", overrides={
        "tracking": {"enabled": False},
        "stage2": {"grpo": {"max_steps": MAX_STEPS, "per_device_train_batch_size": 4, "num_generations": 4,
                            "max_completion_length": 8, "num_train_epochs": 100}},
    })
    params["stage2"]["grpo"]["checkpoint_steps"] = EVERY  # set after validation: independent of the schema's state
    (root / "params.json").write_text(json.dumps(params))
    return root, tiny_model_dir


def _start(root: Path, model: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(REPO / "src")}
    return subprocess.Popen([sys.executable, "-c", DRIVER, str(root / "params.json"), str(model),
                             str(root / "scoring" / "scoring_train.jsonl"), str(out), str(_curve(root, out))],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=root)


def _curve(root: Path, out: Path) -> Path:
    return root / f"{out.parent.name}-curve.jsonl"


def _curve_steps(path: Path) -> list[int]:
    return [r["step"] for r in map(json.loads, path.read_text().splitlines()) if "loss" in r]


def _weights(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


def test_a_killed_training_resumes_from_its_last_checkpoint(stage2_inputs):
    root, model = stage2_inputs
    out = root / "killed" / "stage2-main"
    ckpts = checkpoint_dir_for(out)
    ref = root / "straight" / "stage2-main"
    straight = _start(root, model, ref)  # the uninterrupted run, for comparison (runs alongside)
    proc = _start(root, model, out)
    deadline = time.monotonic() + 240
    while latest_checkpoint(ckpts) is None and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    killed_at = latest_checkpoint(ckpts)
    proc.send_signal(signal.SIGKILL)
    first_log = proc.communicate()[0]
    assert proc.returncode == -signal.SIGKILL, f"training ended before it could be killed:\n{first_log[-3000:]}"
    assert killed_at is not None, first_log[-3000:]
    k = checkpoint_step(killed_at)
    assert 0 < k < MAX_STEPS and k % EVERY == 0
    assert not out.exists()  # no final model from the killed run

    proc = _start(root, model, out)
    second_log = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, second_log[-3000:]
    resumed = [line for line in second_log.splitlines() if line.startswith("[grpo] resuming from checkpoint")]
    assert len(resumed) == 1, second_log[-3000:]
    step = int(resumed[0].rsplit("global step ", 1)[1].rstrip(")"))
    assert step >= k and step % EVERY == 0      # at least where it was killed (a later one may have completed)
    # The curve holds each step once: 1..step restored from the checkpoint, step+1..MAX_STEPS trained now.
    assert _curve_steps(_curve(root, out)) == list(range(1, MAX_STEPS + 1))
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    assert not ckpts.exists()  # removed once the final model is saved

    # Resuming restores weights, optimizer, scheduler, RNG and data order: the result is the uninterrupted run's.
    third_log = straight.communicate(timeout=300)[0]
    assert straight.returncode == 0, third_log[-3000:]
    assert "[grpo] no checkpoint to resume" in third_log
    import torch

    a, b, start = _weights(out), _weights(ref), _weights(model)
    assert a.keys() == b.keys()
    assert any(not torch.equal(a[n], start[n]) for n in a)  # training moved the weights at all
    mismatched = [n for n in a if not torch.equal(a[n], b[n])]
    assert not mismatched, f"resumed run differs from the uninterrupted one in {mismatched[:5]}"
