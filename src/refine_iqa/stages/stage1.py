"""The step of rules/stage1.smk: Stage-1 multi-task perception GRPO."""

from __future__ import annotations

from pathlib import Path

from refine_iqa import model_card, tracking
from refine_iqa.compute import setup_compute
from refine_iqa.stages.common import _load_for_training, _tags, perception_items


def train_stage1(params: dict, base_dir, manifest_path, out_dir, curve_path) -> Path:
    from refine_iqa.rewards import get_stage1_reward_funcs
    from refine_iqa.rl.grpo import checkpoint_dir_for, discard_checkpoints, folder_signature, run_grpo
    from refine_iqa.rl.samples import build_stage1_train

    device = setup_compute(params)
    s1 = params["stage1"]
    checkpoints = checkpoint_dir_for(out_dir)  # a killed job's re-run resumes from here
    args, model, processor = _load_for_training(params, base_dir, device, s1["grpo"], checkpoints,
                                                seed=params["seed"])
    tags = _tags(params)
    samples = build_stage1_train(perception_items(manifest_path, "train"), processor, task_mix=s1["task_mix"],
                                 fr_fraction=s1["fr_fraction"], seed=params["seed"], tags=tags)
    print(f"[stage1] {len(samples)} training samples", flush=True)
    with tracking.stage_run("stage1", params["tracking"], params={"stage1": s1, "model": params["model"]}) as run:
        trainer = run_grpo(model, processor, samples, get_stage1_reward_funcs(tags, s1["choice_reward"]), s1["grpo"],
                 seed=params["seed"], curve_path=curve_path, device=device, on_log=run.log_metrics,
                 checkpoint_dir=checkpoints, resume_key_extra={"start_model": folder_signature(base_dir)}, args=args,
                 on_checkpoints=run.attach_checkpoints,  # issue 15: a resume continues its MLflow run
                 answer_fields=("family", "box"), tags=tags)  # the answer-field KL's fields (grpo.answer_kl_coef)
        trainer.save_final(out_dir)  # every process calls it; only the main process writes
        if trainer.accelerator.is_main_process:
            model_card.write_training_card(params, out_dir, stage="stage1", base_model=base_dir,
                                           data={"manifest": manifest_path})
        discard_checkpoints(checkpoints)
    return Path(out_dir)
