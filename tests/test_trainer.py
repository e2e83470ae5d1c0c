"""Real GRPO steps on the tiny model: Stage-1 with two-image prompts, Stage-2 with PD and the modified advantage."""

import pytest
import torch

from refine_iqa import prompts
from refine_iqa.model.loading import load_model_and_processor
from refine_iqa.rewards import get_stage1_reward_funcs, get_stage2_reward_funcs
from refine_iqa.rl.advantages import modified_advantages
from refine_iqa.rl.grpo import grpo_config, lazy_dataset, run_grpo
from refine_iqa.rl.pd import PDReward
from refine_iqa.rl.samples import build_stage1_train, build_stage2
from refine_iqa.rl.trainer import RefineGRPOTrainer, read_curve
from refine_iqa.rl.warmstart import warm_start

SETTINGS = dict(learning_rate=1e-2, lr_scheduler_type="constant", warmup_ratio=0.0, weight_decay=0.0,
                num_train_epochs=1, max_steps=2, per_device_train_batch_size=8, gradient_accumulation_steps=1,
                num_generations=4, max_completion_length=32, temperature=1.0, epsilon=0.2, beta=0.0, bf16=False,
                gradient_checkpointing=False, logging_steps=1)


@pytest.fixture
def fresh(tiny_model_dir):
    torch.set_num_threads(1)
    return load_model_and_processor(tiny_model_dir)


@pytest.fixture(scope="module")
def manifest_items(tmp_path_factory):
    """A few real Refine-Perception items made by the data engine (scenes + localized distortions)."""
    from refine_iqa.data.scenes import generate_scene
    from refine_iqa.distortions import apply
    from refine_iqa.io_utils import save_image

    out = tmp_path_factory.mktemp("perception")
    items = []
    for i, (name, level) in enumerate([("blur.gaussian", 5), ("noise.gaussian_rgb", 4), ("darken.shift_rgb", 3), ("pixelate.box", 5)]):
        image, objects = generate_scene(i, 112, 112)
        box = objects[0]["box"]
        save_image(out / f"ref{i}.png", image)
        save_image(out / f"dist{i}.png", apply(image, name, level, seed=i, box=box))
        items.append({"id": f"it{i}", "ref_path": str(out / f"ref{i}.png"), "dist_path": str(out / f"dist{i}.png"),
                      "objects": [o["name"] for o in objects], "object": objects[0]["name"], "box": box,
                      "family": name.split(".")[0], "type": name, "level": level})
    return items


def _params_snapshot(model):
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def test_stage1_grpo_steps_with_two_image_prompts_change_the_parameters(fresh, manifest_items, tmp_path):
    model, processor = fresh
    samples = build_stage1_train(manifest_items, processor, task_mix={"description": 1, "grounding": 1},
                                 fr_fraction=1.0, seed=0)
    assert all(len(s["image_paths"]) == 2 for s in samples)  # full-reference: reference then distorted
    # A random model writes no parsable answer (every reward 0, no gradient): teach the formats first.
    warm_start(model, processor, samples, steps=60, learning_rate=3e-3, batch_size=8, seed=0)
    before = _params_snapshot(model)
    run_grpo(model, processor, samples, get_stage1_reward_funcs("paper"), {**SETTINGS, "max_steps": 3}, seed=0,
             curve_path=tmp_path / "c.jsonl")
    changed = [k for k, v in model.named_parameters() if not torch.equal(v, before[k])]
    assert len(changed) > len(before) // 2
    curve = read_curve(tmp_path / "c.jsonl")
    assert [r["step"] for r in curve if "loss" in r] == [1, 2, 3]
    assert {"rewards/description_reward/mean", "rewards/grounding_reward/mean", "rewards/format_reward/mean"} <= set(curve[0])


def test_stage2_uses_the_modified_advantage(fresh, brightness_records, tmp_path):
    """The advantages the loss sees are Eq. 6 of the logged rewards, not TRL's default."""
    model, processor = fresh
    samples = build_stage2(brightness_records[0][:8], think=True)
    pd = PDReward(processor)
    funcs = get_stage2_reward_funcs("paper", mode="think") + [pd]
    args = grpo_config(SETTINGS, out_dir=tmp_path, seed=0)
    trainer = RefineGRPOTrainer(model=model, reward_funcs=funcs, args=args, train_dataset=lazy_dataset(samples, processor),
                                processing_class=processor, pm={"delta": 0.02, "sigma_min": 0.1, "eps": 1e-4},
                                correct_from=("answer_reward", "format_reward"), think_tags=prompts.get_tag_style("paper"))
    pd.bind(trainer)
    inputs = [trainer.train_dataset[0]] * 4 + [trainer.train_dataset[1]] * 4
    model.train()
    out = trainer._generate_and_score_completions(inputs)
    rpf = trainer._last_rewards_per_func
    total = rpf.nansum(dim=1)
    correct = (rpf[:, 0] == 1) & (rpf[:, 1] == 1)
    expected = modified_advantages(total.view(-1, 4), correct.view(-1, 4)).view(-1)
    assert torch.allclose(out["advantages"], expected)
    assert "groups/frac_with_correct" in trainer._metrics["train"] and "pm/advantage_mean" in trainer._metrics["train"]
