"""One GRPO step, the project's trainer against plain TRL on the same work, side by side, with a breakdown.

    .venv/bin/python benchmarks/bench_step.py [--shape embedded|rehearsal] [--stage 1|2] [--steps N]
        [--prompts P] [--repeats R] [--off LEVER ...] [--device cpu|cuda] [--json OUT.json]

Both trainers get the same model weights (a format-only warm start of the embedded model), the same samples
through the same data path (rl/grpo.lazy_dataset), G, completion length, batch and seed. Plain TRL is
`trl.GRPOTrainer` with the stage's reward functions and TRL's default advantage; the project's is
`RefineGRPOTrainer` through `run_grpo` with the exact fast path (rl/fastpath.py; `--off` turns single levers
off). Stage-2: think-mode scoring, answer + format rewards; the project adds the PD reward and the modified
advantage (PM). Stage-1: description and grounding samples, all full-reference (two images per prompt), the
project's Stage-1 reward functions in both trainers. Shapes:
  embedded   the embedded model (vocabulary ~1k) on 112 px images, 16 visual tokens an image;
  rehearsal  the same narrow layers with the real Qwen2.5-VL vocabulary (151,936 logits) and full-size
             1920x1080 photos (JPEG) shrunk by the processor to 256 visual tokens.
Per run it prints the median step time and process CPU seconds per step (first step dropped unless it is the
only one), their ratios, and where the time goes: image preprocessing (the image processor), vision tower
forward, generation (HF generate, its vision prefill included), rewards (PD included), and loss forward +
backward (training_step minus generation and scoring). The machine may be shared: compare the two trainers of
one invocation (`--repeats` alternates them), prefer the CPU ratio, and not figures across invocations.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from learnability import grpo_settings, seed_all, tiny_model  # noqa: E402

from refine_iqa import prompts  # noqa: E402
from refine_iqa.io_utils import atomic_write_json, save_image  # noqa: E402
from refine_iqa.rewards import get_stage1_reward_funcs, get_stage2_reward_funcs  # noqa: E402
from refine_iqa.rl.grpo import grpo_config, run_grpo  # noqa: E402
from refine_iqa.rl.pd import PDReward  # noqa: E402
from refine_iqa.rl.warmstart import warm_start  # noqa: E402

PM = {"delta": 0.02, "sigma_min": 0.1, "eps": 1e-4}
REAL_VOCAB = 151_936
LEVERS = ("vision", "preprocessing", "shared_prompt", "compact_head")  # rl/fastpath.fast_vlm's switches
PARTS = ("preprocess", "vision_forward", "generate", "rewards", "loss_fwd_bwd")


class Timers:
    """Wall seconds per part, per training step (the parts are timed where they are called)."""

    def __init__(self):
        self.steps: list[dict] = []
        self.current = defaultdict(float)
        self._depth = defaultdict(int)
        self._cpu = time.process_time()  # process CPU seconds at the last step boundary

    @contextmanager
    def part(self, name):
        self._depth[name] += 1
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._depth[name] -= 1
            if self._depth[name] == 0:  # nested calls (a wrapped method calling itself) count once
                self.current[name] += time.perf_counter() - t0

    def end_step(self):
        cpu = time.process_time()
        self.steps.append({**self.current, "cpu": cpu - self._cpu})
        self._cpu = cpu
        self.current = defaultdict(float)


def instrument(trainer, model, processor, timers: Timers):
    """Wrap the trainer's and model's entry points with timers; returns an undo function."""
    undo = []

    def wrap(obj, name, part):
        original = getattr(obj, name)

        def timed(*a, **k):
            with timers.part(part):
                return original(*a, **k)

        setattr(obj, name, timed)
        undo.append(lambda: obj.__dict__.pop(name, None) if name in obj.__dict__ else None)

    class TimedImageProcessor:
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, n):
            return getattr(self.inner, n)

        def __call__(self, *a, **k):
            with timers.part("preprocess"):
                return self.inner(*a, **k)

    ip = processor.image_processor
    processor.image_processor = TimedImageProcessor(ip)
    undo.append(lambda: setattr(processor, "image_processor", ip))
    visual = model.model.visual
    t0 = {}
    h1 = visual.register_forward_pre_hook(lambda m, a: t0.__setitem__("t", time.perf_counter()))
    h2 = visual.register_forward_hook(
        lambda m, a, o: timers.current.__setitem__("vision_forward", timers.current["vision_forward"]
                                                   + time.perf_counter() - t0["t"]))
    undo += [h1.remove, h2.remove]
    wrap(model, "generate", "generate")
    wrap(trainer, "_calculate_rewards", "rewards")
    wrap(trainer, "_prepare_inputs", "generate_and_score")
    wrap(trainer, "training_step", "training_step")

    def done():
        for u in reversed(undo):
            u()

    return done


class StepEnd:
    """transformers callback: close the timers' step at each optimizer step."""

    def __init__(self, timers):
        self.timers = timers

    def __getattr__(self, name):
        if name == "on_step_end":
            return lambda *a, **k: self.timers.end_step()
        if name.startswith("on_"):
            return lambda *a, **k: None
        raise AttributeError(name)


def make_data(root: Path, shape: str, n: int, seed: int, stage: int = 2) -> list[dict]:
    """Stage-2: scoring records (brightness score). Stage-1: perception items (a reference and its copy with
    one box darkened or brightened, the exposure families). Images at the shape's size, written as files."""
    rng = np.random.default_rng(seed)
    h, w = (112, 112) if shape == "embedded" else (1080, 1920)
    ext = "png" if shape == "embedded" else "jpg"
    recs = []
    for i in range(n):
        level = rng.uniform(0.05, 0.95)
        img = np.clip(rng.normal(level * 255, 40, (h, w, 3)), 0, 255).astype(np.uint8)
        path = root / f"img-{i:03d}.{ext}"
        save_image(path, img)
        if stage == 2:
            recs.append({"id": f"b{i}", "image_path": str(path), "mos_scaled": round(min(5 * level, 4.9), 1)})
            continue
        family = ("darken", "brighten")[i % 2]
        x1, y1 = int(rng.integers(0, w // 3)), int(rng.integers(0, h // 3))
        box = [x1, y1, x1 + w // 2, y1 + h // 2]
        dist = img.astype(np.int16)
        dist[y1:box[3], x1:box[2]] += -80 if family == "darken" else 80
        dist_path = root / f"dist-{i:03d}.{ext}"
        save_image(dist_path, np.clip(dist, 0, 255).astype(np.uint8))
        obj = ("cat", "car", "tree", "house")[i % 4]
        recs.append({"id": f"p{i}", "ref_path": str(path), "dist_path": str(dist_path), "objects": [obj, "sky"],
                     "object": obj, "box": box, "family": family, "type": f"{family}.shift_hsv", "level": 5,
                     "width": w, "height": h})
    return recs


def samples_for(recs, processor, *, stage: int, think: bool, seed: int):
    """Stage-2: think-mode scoring samples. Stage-1: description and grounding in equal parts, all
    full-reference (two images per prompt: the heavier setting)."""
    from refine_iqa.rl.samples import build_stage1_train, build_stage2

    if stage == 2:
        return build_stage2(recs, think=think)
    return build_stage1_train(recs, processor, task_mix={"description": 1, "grounding": 1}, fr_fraction=1.0,
                              seed=seed)


def run_one(kind: str, model, processor, samples, state, *, stage: int, settings: dict, steps: int, seed: int,
            tmp: Path, device: str, off: tuple = ()) -> dict:
    from trl import GRPOTrainer

    from refine_iqa.rl.grpo import lazy_dataset

    tags = prompts.get_tag_style("paper")
    model.load_state_dict(state)
    timers = Timers()
    seed_all(seed)
    settings = {**settings, "max_steps": steps}
    if stage == 2:
        funcs = get_stage2_reward_funcs(tags, mode="think", eps=0.5)
    else:
        funcs = get_stage1_reward_funcs(tags, "mean")
    cpu0 = time.process_time()
    if kind == "trl":
        args = grpo_config(settings, out_dir=tmp / "trl-out", seed=seed, device=device)
        # The same training data path as run_grpo (paths decoded and shrunk per batch): only the trainer differs.
        trainer = GRPOTrainer(model=model, reward_funcs=funcs, args=args, train_dataset=lazy_dataset(samples, processor),
                              processing_class=processor, callbacks=[StepEnd(timers)])
        done = instrument(trainer, model, processor, timers)
        try:
            trainer.train()
        finally:
            done()
    else:
        bind, weights = [], [1.0] * len(funcs)
        if stage == 2:
            pd = PDReward(processor, tags=tags, eps=0.5, weights=(1.0, 0.1))
            funcs, bind, weights = funcs + [pd], [pd], weights + [1.0]
        holder = {}

        def on_trainer(trainer):
            trainer.add_callback(StepEnd(timers))
            holder["undo"] = instrument(trainer, model, processor, timers)

        try:
            run_grpo(model, processor, samples, funcs, settings, seed=seed, curve_path=tmp / f"{kind}.jsonl",
                     device=device, reward_weights=weights, pm=PM if stage == 2 else None,
                     correct_from=("answer_reward", "format_reward") if stage == 2 else None,
                     think_tags=tags if stage == 2 else None, bind=bind, on_trainer=on_trainer,
                     fast={lever: False for lever in off} or True)
        finally:
            if "undo" in holder:
                holder["undo"]()
    cpu = time.process_time() - cpu0
    rows = timers.steps[1:] if len(timers.steps) > 1 else timers.steps  # the first step warms caches up
    return summarize(kind, rows, cpu, len(timers.steps))


def summarize(kind: str, rows: list[dict], cpu_total: float, steps: int) -> dict:
    """Medians over the kept steps. A step's CPU seconds run from one step's end to the next (the first step
    also counts trainer setup, so it is dropped unless it is the only one)."""
    parts = {p: statistics.median([r.get(p, 0.0) for r in rows]) for p in
             ("preprocess", "vision_forward", "generate", "rewards")}
    parts["loss_fwd_bwd"] = statistics.median([r.get("training_step", 0) - r.get("generate_and_score", 0) for r in rows])
    return {"kind": kind, "median_step_s": statistics.median([r.get("training_step", 0.0) for r in rows]),
            "median_step_cpu_s": statistics.median([r["cpu"] for r in rows]), "cpu_s_total": cpu_total,
            "parts_s": parts, "steps": steps, "rows": rows}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", choices=("embedded", "rehearsal"), default="embedded")
    ap.add_argument("--stage", type=int, choices=(1, 2), default=2)
    ap.add_argument("--steps", type=int, default=5, help="GRPO steps per trainer (the first is dropped)")
    ap.add_argument("--prompts", type=int, default=0, help="prompts per step (default: 16 embedded, 2 rehearsal)")
    ap.add_argument("--generations", type=int, default=8)
    ap.add_argument("--completion", type=int, default=28, help="max completion tokens")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=1, help="run the pair of trainers this many times, alternating")
    ap.add_argument("--off", action="append", default=[], choices=LEVERS,
                    help="run the project's trainer with this fast-path lever off (repeatable), to measure it")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    prompts_per_step = args.prompts or (16 if args.shape == "embedded" else 2)
    batch = prompts_per_step * args.generations
    max_pixels = 28 * 28 * 16 if args.shape == "embedded" else 28 * 28 * 256
    with tempfile.TemporaryDirectory(prefix="bench-step-") as tmp:
        tmp = Path(tmp)
        (tmp / "data").mkdir()
        recs = make_data(tmp / "data", args.shape, max(2 * prompts_per_step, 32 if args.shape == "embedded" else 8),
                         args.seed, stage=args.stage)
        model, processor = tiny_model(tmp / "model", seed=args.seed, max_pixels=max_pixels)
        samples = samples_for(recs, processor, stage=args.stage, think=True, seed=args.seed)
        warm_start(model, processor, samples, steps=40, learning_rate=3e-3, batch_size=16, seed=args.seed,
                   think_words=4)
        if args.shape == "rehearsal":
            model.resize_token_embeddings(REAL_VOCAB)  # the real model's logits width
        model.to(args.device)
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        # balanced_batches off: plain TRL shuffles, and both trainers must see the same prompts each step
        settings = grpo_settings(max_completion_length=args.completion, per_device_train_batch_size=batch,
                                 num_generations=args.generations, balanced_batches=False)
        # Repeats alternate the two trainers (TRL, project, TRL, ...) so a change of the machine's load during
        # the run falls on both; medians are over the kept steps of all repeats.
        runs: dict = {"trl": [], "project": []}
        for _ in range(args.repeats):
            for kind in runs:
                runs[kind].append(run_one(kind, model, processor, samples, state, stage=args.stage,
                                          settings=settings, steps=args.steps, seed=args.seed, tmp=tmp,
                                          device=args.device, off=tuple(args.off)))
    trl, ours = (summarize(k, [row for r in rs for row in r["rows"]], sum(r["cpu_s_total"] for r in rs),
                           sum(r["steps"] for r in rs)) for k, rs in runs.items())
    print(f"shape {args.shape}, stage {args.stage}, {prompts_per_step} prompts x G={args.generations}, "
          f"{args.completion} tokens, device {args.device}, median of {len(trl['rows'])} steps"
          + (f", project levers off: {', '.join(args.off)}" if args.off else ""))
    print(f"{'part':16s} {'plain TRL':>10s} {'project':>10s}")
    for p in PARTS:
        print(f"{p:16s} {trl['parts_s'][p]:10.3f} {ours['parts_s'][p]:10.3f}")
    print(f"{'step':16s} {trl['median_step_s']:10.3f} {ours['median_step_s']:10.3f}")
    ratio = ours["median_step_s"] / trl["median_step_s"]
    cpu_ratio = ours["median_step_cpu_s"] / trl["median_step_cpu_s"]
    print(f"{'step CPU s':16s} {trl['median_step_cpu_s']:10.3f} {ours['median_step_cpu_s']:10.3f}")
    print(f"ratio project / plain TRL: wall {ratio:.2f}x, CPU {cpu_ratio:.2f}x (load average "
          f"{os.getloadavg()[0]:.1f} at the end)")
    if args.json:
        atomic_write_json(args.json, {"args": vars(args), "ratio": ratio, "cpu_ratio": cpu_ratio, "trl": trl,
                                      "project": ours})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
