"""Real multi-process training on CPU: `accelerate launch --num_processes 2` (gloo) with the project's accelerate
config runs Stage-1 and Stage-2 through the CLI on the tiny model (tests/distributed_worker.py), plus a Stage-2
run whose rollout groups straddle the two processes. Checked from what each process recorded:

- both processes end with bit-identical parameters, they moved, and the saved checkpoint is exactly them;
- the gathered rewards put process k's rollouts at rows [k*n, (k+1)*n) and are the same on both processes;
- the advantages each process trained on are its slice of Eq. 6 (Stage-2) / TRL's group advantage (Stage-1)
  over the gathered groups of G, including groups split across processes;
- every PD reward equals the same quantity recomputed for that rollout alone, and every process made the
  same number of PD forward calls.

The launch takes about a minute on 2 cores; run with `pytest -m distributed tests/test_distributed.py`.
"""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from refine_iqa.io_utils import read_json, read_jsonl, save_image, write_jsonl

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("distributed_worker.py")
ACCELERATE_CONFIG = ROOT / "configs" / "accelerate" / "cpu.yaml"
NUM_PROCESSES = 2
STAGES = ("stage1", "stage2", "stage2_straddle")
# Pinned, not inherited from params.yaml's embedded levers: the hand-value tests need this run's exact random
# stream (balanced batches or the answer-field KL change which groups occur).
GRPO = dict(learning_rate=1e-3, lr_scheduler_type="constant", max_steps=2, per_device_train_batch_size=8,
            num_generations=4, max_completion_length=24, balanced_batches=False, answer_kl_coef=0.0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _manifest(out: Path) -> Path:
    """Four real Refine-Perception items: generated scenes with one localized distortion each."""
    from refine_iqa.data.scenes import generate_scene
    from refine_iqa.distortions import apply

    items = []
    for i, (name, level) in enumerate([("blur.gaussian", 5), ("noise.gaussian_rgb", 4), ("darken.shift_rgb", 3),
                                       ("pixelate.box", 5)]):
        image, objects = generate_scene(i, 112, 112)
        box = objects[0]["box"]
        save_image(out / f"ref{i}.png", image)
        save_image(out / f"dist{i}.png", apply(image, name, level, seed=i, box=box))
        items.append({"id": f"it{i}", "ref_path": str(out / f"ref{i}.png"), "dist_path": str(out / f"dist{i}.png"),
                      "objects": [o["name"] for o in objects], "object": objects[0]["name"], "box": box,
                      "family": name.split(".")[0], "type": name, "level": level, "split": "train",
                      "review": {"status": "accepted", "reason": None, "by": None, "rule": None}})
    write_jsonl(out / "manifest.jsonl", items)
    return out / "manifest.jsonl"


@pytest.fixture(scope="module")
def launched(tmp_path_factory, tiny_model_dir):
    """Prepare data, warm-start the tiny model (so rollouts parse and rewards vary), launch the worker."""
    from refine_iqa.stages.model import warm_start
    from refine_iqa.config import load_params
    from refine_iqa.data.scoring_set import build_brightness_set
    from refine_iqa.io_utils import atomic_write_json

    work = tmp_path_factory.mktemp("distributed")
    t0 = time.perf_counter()
    # answer_eps 2.5: a well-formed think answer is correct about half the time, so the PD path really runs.
    params = load_params(ROOT / "params.yaml", overrides={
        "tracking": {"enabled": False}, "compute": {"threads": 1},
        "warmstart": {"steps": 150, "batch_size": 8, "think_words": 2},
        "stage1": {"grpo": GRPO}, "stage2": {"answer_eps": 2.5, "grpo": GRPO}})
    atomic_write_json(work / "params.json", params)
    manifest = _manifest(work)
    build_brightness_set(work / "scoring", n_train=8, n_test=2, seed=0, size=112)
    scoring = work / "scoring" / "scoring_train.jsonl"
    warm_start(params, tiny_model_dir, manifest, scoring, work / "warm", work / "warm.jsonl")
    t1 = time.perf_counter()

    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ACCELERATE_CONFIG),
           "--num_processes", str(NUM_PROCESSES), "--main_process_port", str(_free_port()), str(WORKER),
           "--params", str(work / "params.json"), "--base", str(work / "warm"), "--manifest", str(manifest),
           "--scoring", str(scoring), "--out", str(work / "run"), "--num-processes", str(NUM_PROCESSES)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    t2 = time.perf_counter()
    if proc.returncode != 0:
        pytest.fail(f"accelerate launch failed (rc {proc.returncode}):\n{(proc.stdout + proc.stderr)[-6000:]}")
    print(f"\n[distributed] preparation {t1 - t0:.1f} s, accelerate launch (2 processes, 3 trainings) {t2 - t1:.1f} s")
    records = {}
    for k in range(NUM_PROCESSES):
        path = work / "run" / "records" / f"rank{k}.json"
        assert path.exists(), f"process {k} wrote no record: the launch ran {len(list(path.parent.glob('*.json')))} process(es)"
        records[k] = read_json(path)
    return {"records": records, "run": work / "run"}


def _tensor(rows) -> torch.Tensor:
    return torch.tensor([[math.nan if v is None else v for v in row] for row in rows], dtype=torch.float32)


def _same(a, b, tol: float = 0.0) -> bool:
    """Equal lists of floats where None (NaN) must match None."""
    return len(a) == len(b) and all((x is None and y is None) or (x is not None and y is not None and abs(x - y) <= tol)
                                    for x, y in zip(a, b))


def _steps(launched, stage):
    r0, r1 = launched["records"][0][stage], launched["records"][1][stage]
    assert len(r0["steps"]) == len(r1["steps"]) == GRPO["max_steps"]
    return list(zip(r0["steps"], r1["steps"]))


@pytest.mark.distributed
@pytest.mark.parametrize("stage", STAGES)
def test_processes_end_with_identical_parameters_and_save_them(launched, stage):
    from distributed_worker import param_hash

    from refine_iqa.model.loading import load_model

    recs = [launched["records"][k][stage] for k in range(NUM_PROCESSES)]
    assert [r["process_index"] for r in recs] == [0, 1]
    assert all(r["num_processes"] == NUM_PROCESSES for r in recs), "accelerate launch did not start 2 processes"
    assert all(r["model_class"] == "DistributedDataParallel" for r in recs)
    assert recs[0]["param_hash_init"] == recs[1]["param_hash_init"]
    assert recs[0]["param_hash_final"] == recs[1]["param_hash_final"], "the processes' parameters diverged"
    assert recs[0]["param_hash_final"] != recs[0]["param_hash_init"], "training did not change the parameters"
    # Exactly one complete checkpoint, holding the trained parameters (several writers would corrupt it).
    saved = launched["run"] / stage
    assert not saved.with_name(stage + ".tmp").exists()
    assert param_hash(load_model(saved)) == recs[0]["param_hash_final"]
    curve = read_jsonl(launched["run"] / f"{stage}.jsonl")
    assert [r["step"] for r in curve if "loss" in r] == [1, 2]  # one writer: one line per step


@pytest.mark.distributed
@pytest.mark.parametrize("stage", STAGES)
def test_gathered_rewards_hold_each_process_rows_in_order(launched, stage):
    r0, r1 = launched["records"][0][stage], launched["records"][1][stage]
    for step, (s0, s1) in enumerate(_steps(launched, stage)):
        assert s0["rewards_per_func"] == s1["rewards_per_func"], "processes disagree on the gathered rewards"
        n = len(s0["item_ids"])
        rows = s0["rewards_per_func"]
        assert len(rows) == NUM_PROCESSES * n
        for k, rec in enumerate((r0, r1)):
            local = rec["local_rewards"][step]
            for j, name in enumerate(s0["reward_names"]):
                column = [row[j] for row in rows[k * n : (k + 1) * n]]
                mine = local[name] if local[name] is not None else rec["pd"][step]["rewards"]
                assert _same(column, mine, tol=1e-6), f"{stage} step {step}: {name} rows of process {k} misplaced"


def _expected_advantages(step: dict) -> torch.Tensor:
    from refine_iqa.rl.advantages import grpo_advantages, modified_advantages

    G = step["num_generations"]
    rpf = _tensor(step["rewards_per_func"])
    total = (rpf * torch.tensor(step["reward_weights"]).unsqueeze(0)).nansum(dim=1)
    total[torch.isnan(rpf).all(dim=1)] = math.nan  # unscorable rollout (TRL): no statistics, advantage 0
    if step["pm"] is None:
        return grpo_advantages(total.view(-1, G), eps=1e-4).view(-1)
    names = step["reward_names"]
    correct = (rpf[:, names.index("answer_reward")] == 1) & (rpf[:, names.index("format_reward")] == 1)
    return modified_advantages(total.view(-1, G), correct.view(-1, G), **step["pm"]).view(-1)


@pytest.mark.distributed
@pytest.mark.parametrize("stage", STAGES)
def test_each_process_trains_on_its_slice_of_the_group_advantages(launched, stage):
    straddling = 0
    for s0, s1 in _steps(launched, stage):
        G = s0["num_generations"]
        ids = s0["item_ids"] + s1["item_ids"]  # the gathered order: process 0's rollouts, then process 1's
        groups = [ids[i : i + G] for i in range(0, len(ids), G)]
        assert all(len(set(g)) == 1 for g in groups), f"a group of {G} mixes prompts: {groups}"
        n = len(s0["item_ids"])
        straddling += sum(1 for g in range(len(groups)) if g * G < n < (g + 1) * G)
        used = torch.tensor(s0["advantages"] + s1["advantages"])
        assert torch.allclose(used, _expected_advantages(s0), atol=1e-5), f"{stage}: advantages differ from the formula"
    if stage == "stage2_straddle":
        assert straddling == GRPO["max_steps"], "every step of this run should have one group split across processes"


@pytest.mark.distributed
def test_modified_advantage_hand_values_in_the_distributed_run(launched):
    """A group without a correct rollout and with equal rewards gets -delta / sigma_min = -0.02 / 0.1 = -0.2 on
    every one of its rollouts, wherever they were trained."""
    seen = 0
    for stage in ("stage2", "stage2_straddle"):
        for s0, s1 in _steps(launched, stage):
            G = s0["num_generations"]
            adv = s0["advantages"] + s1["advantages"]
            rows = s0["rewards_per_func"]
            for g in range(len(rows) // G):
                group = rows[g * G : (g + 1) * G]
                totals = {round(sum(v for v in row if v is not None), 9) for row in group}
                if len(totals) == 1 and not any(row[0] == 1 and row[1] == 1 for row in group):
                    assert adv[g * G : (g + 1) * G] == pytest.approx([-0.2] * G, abs=1e-6)
                    seen += 1
    assert seen > 0


@pytest.mark.distributed
@pytest.mark.parametrize("stage", ("stage2", "stage2_straddle"))
def test_pd_reward_equals_the_one_by_one_value_on_every_process(launched, stage):
    recs = [launched["records"][k][stage] for k in range(NUM_PROCESSES)]
    correct_seen = 0
    for step, steps in enumerate(_steps(launched, stage)):
        rows = steps[0]["rewards_per_func"]
        names = steps[0]["reward_names"]
        ans, fmt = names.index("answer_reward"), names.index("format_reward")
        calls = [r["pd"][step] for r in recs]
        for k, call in enumerate(calls):
            n = len(call["rewards"])
            for i, (got, exp) in enumerate(zip(call["rewards"], call["expected"])):
                row = rows[k * n + i]
                if row[ans] == 1 and row[fmt] == 1:  # Eq. 5: r_pd only for correct think rollouts
                    correct_seen += 1
                    assert exp is not None
                    assert got == pytest.approx(exp["pd"], abs=1e-5), f"process {k} rollout {i}: {exp}"
                    assert 0.0 <= got <= 1.0
                else:
                    assert got == 0.0
        # Every process makes as many PD forward calls as the busiest one needs (ZeRO-3 gathers collectively).
        needed = max(math.ceil(c["items"] / c["chunk_size"]) for c in calls)
        assert [c["forward_calls"] for c in calls] == [needed] * NUM_PROCESSES
    assert correct_seen > 0, "no correct think rollout: the PD comparison was never exercised"


def test_pd_reward_gives_neighbouring_groups_of_one_image_their_own_reference(tiny):
    """Two groups with the same prompt but different labels side by side (the same image twice in a dataset,
    or the two halves of groups split across processes): each gets the reference of its own label."""
    from PIL import Image

    from conftest import rgb
    from refine_iqa import prompts
    from refine_iqa.rl.pd import PDReward

    model, processor = tiny

    class Trainer:  # one process: no accelerator
        accelerator = None

    Trainer.model = model
    messages = prompts.build_messages(prompts.score_prompt(think=True), 1)
    messages[0]["content"][0]["image"] = Image.fromarray(rgb(5))
    completions = ["[think]bright[/think][answer]Score: 3.5[/answer]", "[think]dark[/think][answer]Score: 3.6[/answer]",
                   "[think]dull[/think][answer]Score: 1.1[/answer]", "[think]dim[/think][answer]Score: 1.3[/answer]"]
    mos = [3.7, 3.7, 1.2, 1.2]  # every completion is correct (within 0.5 of its label)

    def run(comps, labels):
        logged = {}
        rewards = PDReward(processor).bind(Trainer())([messages] * len(comps), comps, mos_scaled=labels,
                                                      log_metric=logged.__setitem__)
        return rewards, logged["pd/r_ref"]

    batched, ref_mean = run(completions, mos)
    alone = [run([c], [s]) for c, s in zip(completions, mos)]
    assert batched == pytest.approx([r[0][0] for r in alone], abs=1e-6)
    ref_high, ref_low = alone[0][1], alone[2][1]
    assert ref_high != pytest.approx(ref_low, abs=1e-6)  # so a shared reference would show
    assert ref_mean == pytest.approx((ref_high + ref_low) / 2, abs=1e-6)  # one reference per group, each its own
