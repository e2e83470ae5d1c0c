"""Run under `accelerate launch --num_processes N`: Stage-1 and Stage-2 through the real CLI, then a Stage-2
run whose prompt groups straddle two processes, recording on every process what the distributed test checks.

Per process it writes `<out>/records/rank<k>.json`:
  {stage: {"param_hash_init", "param_hash_final",          # sha256 of every parameter, before/after training
           "steps": [{"item_ids", "rewards_per_func", ...    # what `_generate_and_score_completions` saw and used
                      "advantages"}],                         # this process's slice (what the loss used)
           "pd": [{"item_ids", "rewards", "expected", ...}]}} # PD reward calls: returned vs recomputed one by one

The recorders only observe (they wrap methods and call the originals; the one change is PD's batch size of one
in the straddle run, which must not change any value); the training itself is the project's code. `expected`
recomputes every rollout's PD reward on its own (batch of one, its own prompt and score), so it does not depend
on how PDReward groups or batches rollouts; the test compares the two.

Usage (tests/test_distributed.py runs it):
  accelerate launch --config_file configs/accelerate/cpu.yaml --num_processes 2 tests/distributed_worker.py \
      --params P.json --base MODEL --manifest manifest.jsonl --scoring scoring_train.jsonl --out DIR --num-processes 2
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import math
import os
from pathlib import Path

import torch

# A group of G = 4 rollouts with 6 per process: process 0 holds [a a a a b b], process 1 holds [b b c c c c].
STRADDLE_BATCH = 6


def param_hash(model) -> str:
    """sha256 over every parameter's name, shape and float32 bytes, in name order."""
    h = hashlib.sha256()
    for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
        t = p.detach().to("cpu", torch.float32).contiguous()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def _clean(values):
    """Floats for JSON, NaN (an unscored rollout) as None."""
    if isinstance(values, (list, tuple)):
        return [_clean(v) for v in values]
    v = float(values)
    return None if math.isnan(v) else v


class Recorder:
    def __init__(self):
        self.stages: dict[str, dict] = {}
        self.current: dict | None = None

    def start(self, stage: str) -> None:
        self.current = self.stages.setdefault(stage, {"steps": [], "pd": [], "local_rewards": []})


def _one_by_one_pd(pd, prompts, texts, mos_scaled) -> list[dict | None]:
    """Each rollout's r_think, r_ref and r_pd from its own prompt and score, in batches of one."""
    from refine_iqa import parsing
    from refine_iqa import prompts as P
    from refine_iqa.rewards import digit_prob_reward, pd_reward
    from refine_iqa.rl.pd import TeacherForcer, _with_text, substitute_score

    forcer = TeacherForcer(pd.forcer.processor, chunk_size=1)
    model = pd.trainer.model
    out = []
    for messages, text, s in zip(prompts, texts, mos_scaled):
        sub = substitute_score(text, float(s), pd.tags)
        if sub is None:
            out.append(None)  # no score to substitute: PD can only be 0 here
            continue
        think = forcer.digit_probs(model, [forcer.item(messages, *sub)])[0]
        ref_messages = _with_text(messages, pd.no_think_text)
        ref_text = P.no_think_reference_completion(float(s), pd.tags)
        ref_span = parsing.score_span(ref_text, pd.tags)
        ref = forcer.digit_probs(model, [forcer.item(ref_messages, ref_text, ref_span)])[0]
        out.append({"r_think": digit_prob_reward(think, pd.weights), "r_ref": digit_prob_reward(ref, pd.weights),
                    "pd": pd_reward(think, ref, pd.weights)})
    return out


def install(rec: Recorder) -> None:
    from refine_iqa.rewards import completion_text
    from refine_iqa.rl.pd import PDReward
    from refine_iqa.rl.trainer import RefineGRPOTrainer

    orig_train = RefineGRPOTrainer.train
    orig_generate = RefineGRPOTrainer._generate_and_score_completions
    orig_pd = PDReward.__call__

    def train(self, *args, **kwargs):
        model = self.accelerator.unwrap_model(self.model)
        rec.current["param_hash_init"] = param_hash(model)
        result = orig_train(self, *args, **kwargs)
        rec.current["param_hash_final"] = param_hash(model)
        rec.current["process_index"] = self.accelerator.process_index
        rec.current["num_processes"] = self.accelerator.num_processes
        rec.current["model_class"] = type(self.model_wrapped).__name__  # DistributedDataParallel when distributed
        return result

    def generate(self, inputs):
        output = orig_generate(self, inputs)
        rec.current["steps"].append({
            "item_ids": [f"{x['item_id']}/{x.get('task', 'score')}" for x in inputs],
            "completions": [completion_text(c) for c in self._recorded_completions],
            "reward_names": list(self.reward_func_names),
            "reward_weights": _clean(self.reward_weights.tolist()),
            "rewards_per_func": _clean(self._last_rewards_per_func.tolist()),
            "advantages": _clean(output["advantages"].tolist()),
            "num_generations": self.num_generations,
            "pm": self.pm,
        })
        return output

    orig_calc = RefineGRPOTrainer._calculate_rewards

    def calculate(self, inputs, prompts, completions, completion_ids_list):
        self._recorded_completions = completions
        gathered = orig_calc(self, inputs, prompts, completions, completion_ids_list)
        # This process's own rewards from the cheap reward functions (PD is recorded by its own call), to check
        # that the gathered matrix puts process k's rows at [k * n, (k + 1) * n).
        columns = {k: [x[k] for x in inputs] for k in inputs[0] if k not in ("prompt", "completion", "completion_ids")}
        rec.current["local_rewards"].append({
            name: None if isinstance(f, PDReward) else _clean([math.nan if r is None else r for r in
                                                              f(prompts=prompts, completions=completions, **columns)])
            for name, f in zip(self.reward_func_names, self.reward_funcs)})
        return gathered

    def pd_call(self, prompts, completions, mos_scaled, log_metric=None, **kwargs):
        if rec.current.get("pd_chunk_size"):
            self.forcer.chunk_size = rec.current["pd_chunk_size"]
        calls = {"forward": 0, "items": 0, "n_calls_arg": None}
        forward, digit_probs = self.forcer._forward, self.forcer.digit_probs

        def counted_forward(model, chunk, device):
            calls["forward"] += 1
            return forward(model, chunk, device)

        def counted_digit_probs(model, items, n_calls=None, device=None):
            calls["items"] += len(items)
            calls["n_calls_arg"] = n_calls
            return digit_probs(model, items, n_calls=n_calls, device=device)

        self.forcer._forward, self.forcer.digit_probs = counted_forward, counted_digit_probs
        try:
            rewards = orig_pd(self, prompts, completions, mos_scaled, log_metric=log_metric, **kwargs)
        finally:
            del self.forcer._forward, self.forcer.digit_probs
        texts = [completion_text(c) for c in completions]
        rec.current["pd"].append({
            "item_ids": list(kwargs["item_id"]),
            "mos_scaled": [float(s) for s in mos_scaled],
            "completions": texts,
            "rewards": [float(r) for r in rewards],
            "expected": _one_by_one_pd(self, prompts, texts, mos_scaled),
            "forward_calls": calls["forward"],
            "items": calls["items"],
            "chunk_size": self.forcer.chunk_size,
        })
        return rewards

    RefineGRPOTrainer.train = train
    RefineGRPOTrainer._generate_and_score_completions = generate
    RefineGRPOTrainer._calculate_rewards = calculate
    PDReward.__call__ = pd_call


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("params", "base", "manifest", "scoring", "out"):
        ap.add_argument(f"--{name}", required=True)
    ap.add_argument("--num-processes", type=int, required=True, help="what --num_processes asked accelerate for")
    args = ap.parse_args(argv)

    from refine_iqa import cli
    from refine_iqa.stages.stage2 import train_stage2
    from refine_iqa.io_utils import atomic_write_json

    # Read the launcher's environment, not accelerate's state: creating that state here (without cpu=True)
    # would fix it for the trainer too.
    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    if world != args.num_processes:
        # accelerate's MULTI_CPU type starts one process unless it is given mpirun and a hostfile.
        print(f"error: accelerate launch asked for {args.num_processes} processes but started {world}; the "
              "accelerate config must use distributed_type: MULTI_GPU with use_cpu: true to start local CPU "
              "processes", flush=True)
        return 3
    out = Path(args.out)
    rec = Recorder()
    install(rec)

    rec.start("stage1")
    rc = cli.main(["train-stage1", "--params", args.params, "--base", args.base, "--manifest", args.manifest,
                   "--out", str(out / "stage1"), "--curve", str(out / "stage1.jsonl")])
    if rc:
        return rc
    rec.start("stage2")
    rc = cli.main(["train-stage2", "--params", args.params, "--init", str(out / "stage1"), "--train", args.scoring,
                   "--variant", "main", "--out", str(out / "stage2"), "--curve", str(out / "stage2.jsonl")])
    if rc:
        return rc
    # Groups that straddle processes: params.yaml's validation forbids a per-process batch that is not a multiple
    # of G, but TRL allows it (only the global batch must be), so the library must still get it right.
    rec.start("stage2_straddle")
    rec.current["pd_chunk_size"] = 1  # one forward per PD sequence: processes with fewer sequences must pad
    params = copy.deepcopy(cli._params(args.params))
    params["stage2"]["grpo"]["per_device_train_batch_size"] = STRADDLE_BATCH
    train_stage2(params, out / "stage1", args.scoring, out / "stage2_straddle", out / "stage2_straddle.jsonl")

    atomic_write_json(out / "records" / f"rank{rank}.json", rec.stages)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
