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

SETTINGS = dict(learning_rate=1e-2, lr_scheduler_type="constant", warmup_epochs=0.0, weight_decay=0.0,
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


def test_answer_field_kl_is_added_to_the_loss(fresh, brightness_records, tmp_path):
    """loss(coef) = loss(0) + coef x mean k3 KL to the frozen start model over the answer-field tokens, with a
    gradient through the policy's log-probs; the reference copy does not train."""
    from refine_iqa.rl.answer_field import answer_field_spans
    model, processor = fresh
    samples = build_stage2(brightness_records[0][:8], think=False)
    args = grpo_config(SETTINGS, out_dir=tmp_path, seed=0)
    trainer = RefineGRPOTrainer(model=model, reward_funcs=get_stage2_reward_funcs("paper", mode="no_think"), args=args,
                                train_dataset=lazy_dataset(samples, processor), processing_class=processor,
                                answer_kl=(0.5, answer_field_spans(("score",), "paper")))
    assert not any(p.requires_grad for p in trainer._answer_ref.parameters())
    model.train()
    out = trainer._generate_and_score_completions([trainer.train_dataset[0]] * 4 + [trainer.train_dataset[1]] * 4)
    assert out["answer_field_mask"].shape == out["completion_ids"].shape
    mask = torch.zeros_like(out["answer_field_mask"])
    mask[:, :3] = 1.0  # a random model writes no parsable score: mark three tokens a row by hand
    out["answer_field_mask"] = mask
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop; the loss is called directly here
    with torch.no_grad():  # move the policy away from the reference, so the KL is not zero
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    ref = trainer._reference_logps(out)
    with_kl = trainer._compute_loss(model, out)
    assert with_kl.requires_grad and trainer._metrics["train"]["answer_kl/mean"][-1] > 0
    kl_off, trainer.answer_kl = trainer.answer_kl, None
    plain = trainer._compute_loss(model, out)
    logps = trainer._loss_logps
    diff = ref - logps
    expected = 0.5 * ((torch.exp(diff) - diff - 1) * mask).sum() / mask.sum()
    assert expected.item() > 0 and torch.allclose(with_kl - plain, expected, atol=1e-6)
    trainer.answer_kl = kl_off
    # the reference is the START model: training the policy leaves it unchanged
    assert torch.allclose(trainer._reference_logps(out), ref)


def test_random_answers_draw_the_family_from_the_given_names():
    import random

    from refine_iqa.rl.samples import random_answer
    sample = {"task": "description", "objects": ["cat"]}
    rng = random.Random(0)
    fams = {random_answer(sample, rng, families=("underexposure", "overexposure")).split(" / ")[1] for _ in range(60)}
    assert fams == {"underexposure", "overexposure"}
    every = {random_answer(sample, rng).split(" / ")[1] for _ in range(600)}
    assert every == set(prompts.FAMILY_DISPLAY_NAMES.values())  # default: the whole catalogue


def test_warm_start_draws_families_from_the_given_names(fresh, manifest_items, tmp_path, monkeypatch):
    """answer_families is the label set of the data (here 4 families); warm_start passes `families` to every
    random answer, and by default the whole catalogue (None)."""
    import refine_iqa.rl.warmstart as ws
    model, processor = fresh
    samples = build_stage1_train(manifest_items, processor, task_mix={"description": 1, "grounding": 1},
                                 fr_fraction=0.0, seed=0)
    expected = tuple(sorted(prompts.display_family(it["family"]) for it in manifest_items))
    assert ws.answer_families(samples) == expected and len(expected) == 4
    assert ws.answer_families([{"prompt": "p"}]) is None  # scoring samples only
    seen = []
    real = ws.random_answer
    monkeypatch.setattr(ws, "random_answer", lambda *a, **k: seen.append(k["families"]) or real(*a, **k))
    ws.warm_start(model, processor, samples, steps=1, learning_rate=1e-3, batch_size=4, seed=0, families=expected)
    assert seen and all(f == expected for f in seen)
    seen.clear()
    ws.warm_start(model, processor, samples, steps=1, learning_rate=1e-3, batch_size=2, seed=0)
    assert seen and all(f is None for f in seen)  # default: the catalogue (random_answer's own default)


def test_random_box_answers_are_drawn_from_the_given_relative_boxes():
    import random

    from refine_iqa.rl.samples import random_answer
    sample = {"task": "grounding", "model_wh": [112, 84]}
    rng = random.Random(0)
    halves = ((0.0, 0.0, 0.5, 1.0), (0.5, 0.0, 1.0, 1.0))
    # scaled to this sample's model size by hand: 0.5 x 112 = 56, 1.0 x 84 = 84
    got = {random_answer(sample, rng, boxes=halves) for _ in range(40)}
    style = prompts.get_tag_style("paper")
    assert got == {f"{style.answer_open}{box}{style.answer_close}" for box in ("0,0,56,84", "56,0,112,84")}
    free = {random_answer(sample, rng) for _ in range(40)}  # default: two random corners, nearly all distinct
    assert len(free) > 30


def test_answer_boxes_are_the_data_boxes_relative_to_the_image():
    from refine_iqa.rl.warmstart import answer_boxes
    samples = [{"task": "grounding", "box_model": [0, 0, 56, 84], "model_wh": [112, 84]},
               {"task": "grounding", "box_model": [28, 21, 56, 42], "model_wh": [56, 84]},   # another size, same box
               {"task": "grounding", "box_model": [0, 0, 56, 84], "model_wh": [112, 84]},    # a repeat
               {"task": "description", "answer_family": "noise"}, {"prompt": "scoring"}]
    assert answer_boxes(samples) == ((0.0, 0.0, 0.5, 1.0), (0.5, 0.25, 1.0, 0.5))
    assert answer_boxes(samples[3:]) is None  # no grounding sample


@pytest.mark.parametrize("grad_acc, warmup_epochs, expected", [
    (1, 0.25, 6),   # 48 prompts x G=4 / 8 completions a step = 24 optimizer steps per epoch; 0.25 x 24 = 6
    (2, 0.25, 3),   # two micro-batches per optimizer step: 12 steps per epoch; 0.25 x 12 = 3
    (1, 0.03, 1),   # the paper's 0.03 epochs: ceil(0.72) = 1 step (never rounded to no warm-up)
])
def test_warmup_is_in_epochs_of_this_dataset(tiny, brightness_records, tmp_path, grad_acc, warmup_epochs, expected):
    """warmup_epochs counts epochs (paper Table 7), not a fraction of all training (which 3 epochs would triple)."""
    from refine_iqa.rl.grpo import warmup_steps_from_epochs

    model, processor = tiny
    samples = build_stage2(brightness_records[0], think=False)
    assert len(samples) == 48
    settings = {**SETTINGS, "max_steps": -1, "num_train_epochs": 3, "gradient_accumulation_steps": grad_acc,
                "warmup_epochs": warmup_epochs}
    from datasets import Dataset

    trainer = RefineGRPOTrainer(model=model, reward_funcs=get_stage2_reward_funcs("paper", mode="no_think"),
                                args=grpo_config(settings, out_dir=tmp_path, seed=0), processing_class=processor,
                                train_dataset=Dataset.from_list(samples))
    steps = warmup_steps_from_epochs(trainer, warmup_epochs)
    assert steps == expected
    trainer.args.warmup_steps = steps
    assert trainer.args.get_warmup_steps(3 * 24 // grad_acc) == expected  # transformers reads it as steps
