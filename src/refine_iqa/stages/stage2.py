"""The step of rules/stage2.smk: Stage-2 scoring GRPO, the main run and the ablation variants (rules/common.smk
reads `stage2_settings` to pick a variant's initial model). Run names and the list of runs: refine_iqa.variants."""

from __future__ import annotations

from pathlib import Path

from refine_iqa import model_card, tracking
from refine_iqa.io_utils import read_jsonl
from refine_iqa.compute import setup_compute
from refine_iqa.stages.common import _load_for_training, _tags
from refine_iqa.variants import STAGE2_VARIANTS, parse_stage2_name


def stage2_settings(params: dict, name: str) -> dict:
    """The settings of Stage-2 run `name` (a variant, optionally `_seed<k>`): its variant's switches and the
    GRPO seed, the global seed plus the offset."""
    variant, offset = parse_stage2_name(name)
    s2 = params["stage2"]
    v = STAGE2_VARIANTS[variant]
    return {
        "mode": v.get("mode", s2["mode"]),
        "init": v.get("init", s2["init"]),
        "pd": v.get("pd", s2["pd"]["enabled"]),
        "pm": v.get("pm", s2["pm"]["enabled"]),
        "seed": params["seed"] + offset,
    }


def train_stage2(params: dict, init_dir, scoring_train_path, out_dir, curve_path, variant: str = "main") -> Path:
    from refine_iqa.rewards import get_stage2_reward_funcs
    from refine_iqa.rl.grpo import checkpoint_dir_for, discard_checkpoints, folder_signature, run_grpo
    from refine_iqa.rl.pd import PDReward
    from refine_iqa.rl.samples import build_stage2

    device = setup_compute(params)
    s2 = params["stage2"]
    v = stage2_settings(params, variant)
    think = v["mode"] == "think"
    tags = _tags(params)
    checkpoints = checkpoint_dir_for(out_dir)  # a killed job's re-run resumes from here
    # The replicate's seed, not the global one: the trainer seeds sampling and data order from args.seed
    # (until 2026-12-07 every `_seed<k>` replicate trained exactly as seed 0 did).
    args, model, processor = _load_for_training(params, init_dir, device, s2["grpo"], checkpoints, seed=v["seed"])
    skipped: list = []
    samples = build_stage2(read_jsonl(scoring_train_path), think=think, tags=tags, skipped=skipped)
    for rec, reason in skipped:
        print(f"[stage2] skipped unreadable training image {rec['image_path']}: {reason}", flush=True)
    funcs = get_stage2_reward_funcs(tags, mode=v["mode"], eps=s2["answer_eps"])
    weights = list(s2["lambdas"][:2])
    bind = []
    if v["pd"] and think:  # PD compares think against no-think: it has no meaning in no-think training
        pd = PDReward(processor, tags=tags, eps=s2["answer_eps"], weights=s2["pd"]["weights"])
        funcs = funcs + [pd]
        weights.append(s2["lambdas"][2])
        bind.append(pd)
    pm = {k: s2["pm"][k] for k in ("delta", "sigma_min", "eps")} if v["pm"] else None
    print(f"[stage2:{variant}] {len(samples)} samples, settings {v}", flush=True)
    with tracking.stage_run(f"stage2-{variant}", params["tracking"],
                            params={"stage2": s2, "variant": variant, **{f"variant.{k}": x for k, x in v.items()}}) as run:
        trainer = run_grpo(model, processor, samples, funcs, s2["grpo"], seed=v["seed"], curve_path=curve_path,
                 device=device, reward_weights=weights, pm=pm, correct_from=("answer_reward", "format_reward"),
                 think_tags=tags if think else None, on_log=run.log_metrics, bind=bind, checkpoint_dir=checkpoints,
                 resume_key_extra={"start_model": folder_signature(init_dir), "variant": variant}, args=args,
                 on_checkpoints=run.attach_checkpoints,  # issue 15: a resume continues its MLflow run
                 answer_fields=("score",), tags=tags)  # the answer-field KL's field (grpo.answer_kl_coef)
        trainer.save_final(out_dir)  # every process calls it; only the main process writes
        if trainer.accelerator.is_main_process:
            model_card.write_training_card(params, out_dir, stage="stage2", name=f"stage2-{variant}", base_model=init_dir,
                                           data={"scoring_train": scoring_train_path}, extra={"variant": variant, "variant_settings": v,
                                                  "training_seed": v["seed"]})
        discard_checkpoints(checkpoints)
        run.register_model(f"refine-iqa-stage2-{variant}", out_dir)  # issue 15: registry entry, DVC hash as lineage
    return Path(out_dir)
