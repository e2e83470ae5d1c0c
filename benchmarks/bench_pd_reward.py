"""Cost of the PD reward: Stage-2 GRPO step time with PD over the same training without it, tiny model, CPU.

    .venv/bin/python benchmarks/bench_pd_reward.py [--steps N] [--threads T] [--seed S] [--json OUT.json]

Both runs start from the same format-only warm start (think mode, so a share of rollouts is correct and the
PD reward really teacher-forces them: Eq. 5 computes r_pd only for correct rollouts), use the same settings,
the modified advantage (PM) and the same seed; the only difference is the PD reward function. Per step it
records TRL's `step_time` (wall seconds of generation, rewards, loss and update) and the process CPU
seconds between consecutive step logs (the machine is shared, so CPU time is the steadier figure). The
first step of each run is dropped (lazy initialisation); the medians of the rest give the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from learnability import grpo_settings, seed_all, tiny_model  # noqa: E402

from refine_iqa import prompts  # noqa: E402
from refine_iqa.data.scoring_set import build_brightness_set  # noqa: E402
from refine_iqa.io_utils import atomic_write_json, read_jsonl  # noqa: E402
from refine_iqa.rewards import get_stage2_reward_funcs  # noqa: E402
from refine_iqa.rl.grpo import run_grpo  # noqa: E402
from refine_iqa.rl.pd import PDReward  # noqa: E402
from refine_iqa.rl.samples import build_stage2  # noqa: E402
from refine_iqa.rl.warmstart import warm_start  # noqa: E402

PM = {"delta": 0.02, "sigma_min": 0.1, "eps": 1e-4}


def run_variant(model, processor, samples, state: dict, *, pd: bool, steps: int, seed: int, settings: dict,
                curve: Path) -> dict:
    """GRPO from `state` for `steps` steps; per-step wall and CPU seconds (first step dropped)."""
    tags = prompts.get_tag_style("paper")
    model.load_state_dict(state)
    funcs, weights, bind = get_stage2_reward_funcs(tags, mode="think", eps=0.5), [1.0, 1.0], []
    if pd:
        reward = PDReward(processor, tags=tags, eps=0.5, weights=(1.0, 0.1))
        funcs, weights, bind = funcs + [reward], weights + [1.0], [reward]
    logs: list[tuple[dict, float]] = []
    seed_all(seed)
    run_grpo(model, processor, samples, funcs, {**settings, "max_steps": steps}, seed=seed, curve_path=curve,
             reward_weights=weights, pm=PM, correct_from=("answer_reward", "format_reward"), think_tags=tags,
             bind=bind, on_log=lambda rec, step: logs.append((rec, time.process_time())))
    steps_logged = [(rec, cpu) for rec, cpu in logs if "step_time" in rec]
    if len(steps_logged) != steps:
        raise RuntimeError(f"expected {steps} step logs, got {len(steps_logged)}: is logging_steps 1?")
    wall = [rec["step_time"] for rec, _ in steps_logged][1:]
    cpu = [b - a for (_, a), (_, b) in zip(steps_logged, steps_logged[1:])]
    correct = [rec.get("groups/frac_with_correct", 0.0) for rec, _ in steps_logged]
    return {"pd": pd, "wall_s": wall, "cpu_s": cpu, "median_wall_s": statistics.median(wall),
            "median_cpu_s": statistics.median(cpu), "mean_answer_reward":
            statistics.mean(rec["rewards/answer_reward/mean"] for rec, _ in steps_logged),
            "mean_groups_with_correct": statistics.mean(correct)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=16, help="GRPO steps per run (the first is dropped)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--warm-steps", type=int, default=150, help="format-only warm start steps")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    if args.steps < 3:
        ap.error("--steps must be at least 3 (the first step is dropped, a median needs two)")
    torch.set_num_threads(args.threads)
    # The run settings of the Stage-2 learnability test in think mode (docs/learnability.md).
    settings = grpo_settings(max_completion_length=32, balanced_batches=False)  # the same prompts in both runs
    with tempfile.TemporaryDirectory(prefix="bench-pd-") as tmp:
        tmp = Path(tmp)
        build_brightness_set(tmp / "data", n_train=64, n_test=0, seed=args.seed, size=112)
        samples = build_stage2(read_jsonl(tmp / "data" / "scoring_train.jsonl"), think=True)
        model, processor = tiny_model(tmp / "model", seed=args.seed)
        warm_start(model, processor, samples, steps=args.warm_steps, learning_rate=3e-3, batch_size=32,
                   seed=args.seed, think_words=4)
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        runs = [run_variant(model, processor, samples, state, pd=pd, steps=args.steps, seed=args.seed,
                            settings=settings, curve=tmp / f"curve-{pd}.jsonl") for pd in (False, True)]
    without, with_pd = runs
    result = {
        "steps_per_run": args.steps, "threads": args.threads, "seed": args.seed, "settings": settings,
        "ratio_wall": with_pd["median_wall_s"] / without["median_wall_s"],
        "ratio_cpu": with_pd["median_cpu_s"] / without["median_cpu_s"],
        "without_pd": without, "with_pd": with_pd,
    }
    for r in runs:
        print(f"PD {'on ' if r['pd'] else 'off'}: median step {r['median_wall_s']:.3f} s wall, "
              f"{r['median_cpu_s']:.3f} s CPU; groups with a correct rollout {r['mean_groups_with_correct']:.2f}")
    print(f"PD cost ratio (with / without, median step time): wall {result['ratio_wall']:.2f}x, "
          f"CPU {result['ratio_cpu']:.2f}x")
    if args.json:
        atomic_write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
