"""The exact GRPO fast path (rl/fastpath.py): once-per-image preprocessing and vision tower.

Guards: the deduplicated preprocessing returns the very tensors the processor returns for every copy; one
GRPO loss and its gradients through TRL's own loss code are the same with and without the fast path on the same
completions, with images of different sizes in one batch; the vision tower really runs once per distinct image.
Breaking `_unique_images` so that images of the same grid are merged without comparing their pixels fails the
index-map test and the loss/gradient test; shifting the completion positions of the shared-prompt forward by
one fails the loss/gradient test (checked once by hand; the q/k scaling below is what makes it visible).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from refine_iqa import prompts
from refine_iqa.rl.fastpath import DedupImageProcessor, _unique_images, fast_vlm, image_key

SIZES = [(112, 112), (84, 140), (150, 200)]


def _images(seed=0, sizes=SIZES):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in sizes]


def test_image_key_is_exact_content():
    a, b, _ = _images()
    assert image_key(a) == image_key(a.copy())
    c = np.array(a)
    c[0, 0, 0] ^= 1  # one bit of one pixel
    assert image_key(Image.fromarray(c)) != image_key(a)
    assert image_key(a) != image_key(b)


def test_unique_images_maps_copies_to_one_computation():
    pv = torch.arange(40, dtype=torch.float32).reshape(10, 4)
    grid = torch.tensor([[1, 1, 2], [1, 2, 2], [1, 1, 2], [1, 1, 2]])  # rows 2, 4, 2, 2
    pv[6:8] = pv[0:2]  # image 2 equals image 0; image 3 differs from both
    index, uniques, _ = _unique_images(pv, grid)
    assert index == [0, 1, 0, 2]
    assert uniques == [0, 1, 3]


def test_dedup_processor_equals_processor(tiny):
    _, processor = tiny
    imgs = _images()
    batch = [[imgs[i]] for i in (0, 0, 1, 2, 1, 0)]
    plain = processor.image_processor(batch, return_tensors="pt")
    dedup = DedupImageProcessor(processor.image_processor)
    out = dedup(batch, return_tensors="pt")
    assert dedup.calls == 3  # three distinct images
    assert torch.equal(out["pixel_values"], plain["pixel_values"])
    assert torch.equal(out["image_grid_thw"], plain["image_grid_thw"])
    again = dedup(batch, return_tensors="pt")  # TRL preprocesses the same batch twice a step: cached
    assert dedup.calls == 3
    assert torch.equal(again["pixel_values"], plain["pixel_values"])


def _positional(model):
    """A random tiny model attends almost uniformly, so wrong positions or a wrong cache would barely move its
    output: scale the language model's q/k projections so attention depends on position and content."""
    with torch.no_grad():
        for layer in model.model.language_model.layers:
            for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj):
                proj.weight.mul_(30.0)
                if proj.bias is not None:
                    proj.bias.mul_(30.0)
    return model


def _grpo_trainer(model, processor, samples, tmp_path):
    from datasets import Dataset

    from refine_iqa.rewards import get_stage2_reward_funcs
    from refine_iqa.rl.grpo import grpo_config
    from refine_iqa.rl.trainer import RefineGRPOTrainer

    settings = dict(learning_rate=1e-3, lr_scheduler_type="constant", warmup_epochs=0.0, weight_decay=0.0,
                    num_train_epochs=1, max_steps=1, per_device_train_batch_size=12, gradient_accumulation_steps=1,
                    num_generations=4, max_completion_length=12, temperature=1.0, epsilon=0.2, beta=0.0,
                    bf16=False, gradient_checkpointing=False, logging_steps=1)
    args = grpo_config(settings, out_dir=tmp_path / "out", seed=0)
    return RefineGRPOTrainer(model=model, reward_funcs=get_stage2_reward_funcs("paper", mode="think", eps=0.5),
                             args=args, train_dataset=Dataset.from_list(samples), processing_class=processor)


def test_one_grpo_loss_and_gradients_equal_plain_trl(tiny_model_dir, tmp_path):
    from refine_iqa.model.loading import load_model_and_processor

    torch.manual_seed(0)
    model, processor = load_model_and_processor(tiny_model_dir)
    _positional(model)
    text = prompts.score_prompt(think=True)
    samples = [{"prompt": prompts.build_messages(text, 1), "images": [im], "mos_scaled": s, "think": True}
               for im, s in zip(_images(1, sizes=[(112, 112), (112, 112), (84, 140)]), (1.0, 2.5, 4.0))]
    trainer = _grpo_trainer(model, processor, samples, tmp_path)
    batch = next(iter(trainer.get_train_dataloader()))
    # Mixed sizes in one batch, and two different images of one size (a wrong merge must show).
    assert len({tuple(b["images"][0].size) for b in batch}) == 2 and len({id(b["images"][0]) for b in batch}) >= 3
    model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train; this test calls the loss directly
    inputs = trainer._generate_and_score_completions(batch)  # the same completions for both losses
    # An untrained model's rewards are often all equal within a group (zero advantage, zero gradient): fix
    # non-zero advantages so that the gradients depend on every log-prob.
    inputs["advantages"] = torch.linspace(-1.0, 1.0, inputs["advantages"].numel()).view_as(inputs["advantages"])

    def loss_and_grads():
        model.zero_grad(set_to_none=True)
        loss = trainer.compute_loss(model, inputs)
        loss.backward()
        return loss.detach(), {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}

    plain_loss, plain_grads = loss_and_grads()
    import trl.trainer.utils as trl_utils

    head_rows = []  # positions TRL's fused LM head projects through the vocabulary
    head = trl_utils._ChunkedLogProbFunction
    with fast_vlm(model, processor), pytest.MonkeyPatch.context() as mp:
        mp.setattr(trl_utils, "_ChunkedLogProbFunction",
                   type("Counted", (), {"apply": staticmethod(lambda h, *a: head_rows.append(h.shape[0]) or head.apply(h, *a))}))
        fast_loss, fast_grads = loss_and_grads()
        stats = model.model._refine_vision_dedup_stats
        shared = model.model._refine_prompt_share_stats
    # The compact head scores the completion tokens only (TRL's CPU path scores all 12 x (L - 1) positions).
    assert head_rows == [int(inputs["completion_mask"].sum())]
    assert stats["images"] == 3 and stats["computed"] == 3  # the prompt forward sees one copy of each image
    assert shared == {"rows": 12, "prompts": 3}  # 12 rollouts, 3 distinct prompts: the prompt ran 3 times
    assert torch.allclose(fast_loss, plain_loss, rtol=1e-5, atol=1e-7)
    assert set(fast_grads) == set(plain_grads)
    visual = [n for n in plain_grads if ".visual." in n or n.startswith("visual") or "model.visual" in n]
    assert visual, "the vision tower must receive gradients in this test"
    assert max(g.abs().max().item() for g in plain_grads.values()) > 1e-3
    # Sharing one prompt forward among a group's rollouts sums the same float32 terms in another order: measured
    # relative differences ~1e-6 of a gradient's norm, and single elements where terms cancel off by ~1e-3 of
    # their own (tiny) value, which varies with the CPU's kernels. So compare each gradient against its own
    # scale. Completion positions shifted by one give a relative difference of 1.14 (seen failing).
    for n, g in plain_grads.items():
        rel = ((fast_grads[n] - g).norm() / g.norm().clamp_min(1e-12)).item()
        assert rel < 1e-5, (n, rel)
        assert torch.allclose(fast_grads[n], g, rtol=1e-4, atol=1e-5 * g.abs().max().item()), n
    assert not hasattr(model.model, "_refine_vision_dedup_stats")  # restored after the block


@pytest.mark.parametrize("vision,preprocessing,shared,compact", [(True, False, False, False),
                                                                 (False, True, False, False),
                                                                 (False, False, True, False),
                                                                 (False, False, False, True)])
def test_levers_switch_independently(tiny_model_dir, vision, preprocessing, shared, compact):
    import trl.trainer.utils as trl_utils

    from refine_iqa.model.loading import load_model_and_processor

    model, processor = load_model_and_processor(tiny_model_dir)
    original, original_switch = processor.image_processor, trl_utils._use_triton
    cpu = torch.device("cpu")
    assert original_switch(cpu) is False  # TRL scores every position on the CPU: what the compact lever changes
    with fast_vlm(model, processor, vision=vision, preprocessing=preprocessing, shared_prompt=shared,
                  compact_head=compact):
        assert isinstance(processor.image_processor, DedupImageProcessor) is preprocessing
        assert ("get_image_features" in model.model.__dict__) is vision
        assert ("forward" in model.model.__dict__) is shared
        assert trl_utils._use_triton(cpu) is compact
    assert processor.image_processor is original and trl_utils._use_triton is original_switch
    assert "get_image_features" not in model.model.__dict__ and "forward" not in model.model.__dict__


def test_pd_teacher_forcing_shares_prompts_exactly(tiny_model_dir):
    """PD's batch mixes prompts on one image (the no-think reference and the think rollouts) and images of two
    sizes; with the fast path its rows of one prompt run that prompt once, and every digit probability equals
    the plain forward's. Grouping rows by image alone (ignoring the prompt's tokens) fails it (checked once)."""
    from refine_iqa.model.loading import load_model_and_processor
    from refine_iqa.rl.pd import TeacherForcer, _with_text

    model, processor = load_model_and_processor(tiny_model_dir)
    _positional(model)
    forcer = TeacherForcer(processor, chunk_size=16)
    no_think = prompts.score_prompt(think=False)
    items = []
    for im, answers in zip(_images(3, sizes=[(112, 112), (84, 140)]), (("1.2", "3.4", "0.7"), ("4.1", "2.9"))):
        think = prompts.build_messages(prompts.score_prompt(think=True), 1)
        think[0]["content"][0]["image"] = im
        ref = "[answer]Score: 2.5[/answer]"
        items.append(forcer.item(_with_text(think, no_think), ref, (15, 18)))
        for k, a in enumerate(answers):  # completions of different lengths (right padding)
            text = f"[think]{'sharp ' * (k + 1)}image[/think][answer]Score: {a}[/answer]"
            items.append(forcer.item(think, text, (text.index(a), text.index(a) + 3)))
    plain = forcer.digit_probs(model, items)
    with fast_vlm(model, processor):
        fast = forcer.digit_probs(model, items)
        shared = dict(model.model._refine_prompt_share_stats)
    assert shared == {"rows": 7, "prompts": 4}  # 2 images x (reference prompt, think prompt)
    assert [len(z) for z in fast] == [len(z) for z in plain] == [2] * 7
    lp, lf = torch.tensor(plain).log(), torch.tensor(fast).log()
    assert torch.allclose(lf, lp, atol=1e-4), (lp, lf)
    assert (lp.max() - lp.min()).item() > 0.1  # the model's digit probabilities differ between rows


def test_shared_prefill_generation_equals_plain_generate(tiny_model_dir):
    """One prefill per distinct prompt gives the same next-token scores and the same greedy rollouts as
    `generate` on the G copies, with prompts of different lengths (left padding) and image sizes. Copying the
    3-D position offsets from the wrong prompt (rope_deltas not re-indexed) fails it (checked once by hand)."""
    from refine_iqa.model.loading import load_model_and_processor
    from refine_iqa.rl.fastpath import shared_prompt_generate

    model, processor = load_model_and_processor(tiny_model_dir)
    _positional(model)  # position-sensitive attention, as in the loss test
    imgs = _images(2, sizes=[(112, 112), (84, 140)])
    texts = [processor.apply_chat_template(prompts.build_messages(prompts.score_prompt(think=t), 1),
                                           add_generation_prompt=True, tokenize=False) for t in (True, False)]
    G = 3
    enc = processor(text=[texts[0]] * G + [texts[1]] * G, images=[[imgs[0]]] * G + [[imgs[1]]] * G, padding=True,
                    return_tensors="pt")
    kw = dict(max_new_tokens=8, do_sample=False, output_scores=True, return_dict_in_generate=True)
    plain = model.generate(**enc, **kw)
    undo = shared_prompt_generate(model)
    try:
        shared = model.generate(**enc, **kw)
        assert model._refine_prefill_share_stats == {"rows": 6, "prefills": 2}
    finally:
        undo()
    assert torch.equal(plain.sequences, shared.sequences)
    for a, b in zip(plain.scores, shared.scores):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4)
    assert "generate" not in model.__dict__


def test_processor_saves_while_the_fast_path_is_on(tiny_model_dir, tmp_path):
    """Checkpoints save the processor mid-training: the saved one is the real processor, loadable as before
    (a proxy in its place broke the save and so the checkpoint; tests/test_resume.py found it)."""
    from transformers import AutoProcessor

    from refine_iqa.model.loading import load_model_and_processor

    model, processor = load_model_and_processor(tiny_model_dir)
    with fast_vlm(model, processor):
        processor.save_pretrained(tmp_path / "saved")
        assert isinstance(processor.image_processor, DedupImageProcessor)
    assert "save_pretrained" not in processor.__dict__
    reloaded = AutoProcessor.from_pretrained(tmp_path / "saved")
    assert type(reloaded.image_processor) is type(processor.image_processor)
    assert reloaded.image_processor.size == processor.image_processor.size
