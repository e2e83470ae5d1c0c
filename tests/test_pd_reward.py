"""The PD reward end to end on the tiny model: substitution, teacher forcing, clipping, Eq. 5 gating."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from refine_iqa import prompts
from refine_iqa.rewards import digit_prob_reward
from refine_iqa.rl.pd import PDReward, TeacherForcer, substitute_score

from conftest import rgb


def test_substitute_score_replaces_only_the_answer_number():
    text = "[think]Score: 1.0 was my guess[/think][answer]Score: 2.3[/answer]"
    new, span = substitute_score(text, 4.9, "paper")
    assert new == "[think]Score: 1.0 was my guess[/think][answer]Score: 4.9[/answer]"
    assert new[span[0]:span[1]] == "4.9"
    assert substitute_score("[answer]no score[/answer]", 3.0, "paper") is None
    assert substitute_score("[answer]Score: 3[/answer]", 0.0, "paper")[0] == "[answer]Score: 0.0[/answer]"


def _messages(image, think=True):
    msgs = prompts.build_messages(prompts.score_prompt(think=think), 1)
    msgs[0]["content"][0]["image"] = image
    return msgs


def _plain_probs(model, processor, messages, completion, digits, drop=()):
    """Reference: one forward pass of the full substituted text through the processor, probabilities read by
    hand in float64 (`drop` removes processor fields, to show what a forward without them gives)."""
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) + completion
    enc = processor(text=[text], images=[[messages[0]["content"][0]["image"]]], return_tensors="pt")
    enc = {k: v for k, v in enc.items() if k not in drop}
    with torch.no_grad():
        logits = model(**enc).logits[0].double()
    ids = enc["input_ids"][0].tolist()
    tok = processor.tokenizer
    out = []
    # The last occurrences of the digit tokens are the score's (completion ends with "<digits>[/answer]").
    n_tail = len(tok("[/answer]", add_special_tokens=False)["input_ids"])
    pos_tenths = len(ids) - n_tail - 1
    pos_int = pos_tenths - 2  # "<int>" "." "<tenths>"
    for pos, d in zip((pos_int, pos_tenths), digits):
        assert tok.decode([ids[pos]]) == d
        out.append(torch.softmax(logits[pos - 1], -1)[ids[pos]].item())
    return out


@pytest.mark.parametrize("score", [0.0, 4.9, 3.7])
def test_teacher_forced_probs_equal_a_plain_forward_pass(tiny, score):
    model, processor = tiny
    image = Image.fromarray(rgb(1))
    msgs = _messages(image)
    completion, span = substitute_score("[think]the image is sharp[/think][answer]Score: 1.2[/answer]", score, "paper")
    forcer = TeacherForcer(processor, chunk_size=2)
    item = forcer.item(msgs, completion, span)
    s = prompts.format_score(score)
    # Two other items in the batch (padding must not change the result).
    other = forcer.item(_messages(Image.fromarray(rgb(2))),
                        "[think]x[/think][answer]Score: 2.2[/answer]", (27, 30))
    probs = forcer.digit_probs(model, [other, item, other])
    ref = _plain_probs(model, processor, msgs, completion, (s[0], s[2]))
    assert probs[1] == pytest.approx(ref, rel=1e-4, abs=1e-6)


class _FakeTrainer:
    def __init__(self, model):
        self.model = model
        self.accelerator = None


def test_pd_reward_gates_on_correctness_and_clips(tiny):
    model, processor = tiny
    image = Image.fromarray(rgb(3))
    msgs = _messages(image)
    pd = PDReward(processor, tags="paper").bind(_FakeTrainer(model))
    completions = [
        "[think]sharp clear[/think][answer]Score: 3.5[/answer]",  # correct (|3.5-3.7| < 0.5)
        "[think]dark[/think][answer]Score: 1.0[/answer]",  # wrong answer -> 0
        "[answer]Score: 3.7[/answer]",  # right number, wrong (no-think) format -> 0
        "garbage",
    ]
    logged = {}
    rewards = pd([msgs] * 4, completions, mos_scaled=[3.7] * 4, log_metric=lambda k, v: logged.__setitem__(k, v))
    assert rewards[1:] == [0.0, 0.0, 0.0]
    # The correct rollout's reward is clip(r_think - r_ref, 0, 1) from the two teacher-forced passes.
    forcer = TeacherForcer(processor)
    sub, span = substitute_score(completions[0], 3.7, "paper")
    think = forcer.digit_probs(model, [forcer.item(msgs, sub, span)])[0]
    ref_msgs = _messages(image, think=False)
    ref_text = prompts.no_think_reference_completion(3.7)
    ref = forcer.digit_probs(model, [forcer.item(ref_msgs, ref_text, (15, 18))])[0]
    expected = min(1.0, max(0.0, digit_prob_reward(think) - digit_prob_reward(ref)))
    assert rewards[0] == pytest.approx(expected, abs=1e-6)
    assert logged["pd/r_ref"] == pytest.approx(digit_prob_reward(ref), abs=1e-6)
    assert 0.0 <= rewards[0] <= 1.0 and not math.isnan(rewards[0])


@pytest.fixture(scope="module")
def positional(tiny_model_dir):
    """The tiny model with the language model's q/k projections scaled x30: its attention now depends strongly
    on position, so a forward with the wrong (sequential) positions gives clearly different probabilities."""
    from refine_iqa.model.loading import load_model_and_processor

    model, processor = load_model_and_processor(tiny_model_dir)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "language_model" in name and ("q_proj" in name or "k_proj" in name):
                p.mul_(30.0)
    return model.eval(), processor


def test_pd_uses_the_trainers_mrope_positions(positional):
    """PD's z equals a correct processor forward (with mm_token_type_ids, as TRL feeds the policy) to 1e-5;
    the same forward without mm_token_type_ids (what the old hand-built inputs amounted to) is far outside."""
    model, processor = positional
    msgs = _messages(Image.fromarray(np.random.default_rng(5).integers(0, 256, (140, 112, 3), dtype=np.uint8)))
    completion, span = substitute_score("[think]the image is sharp[/think][answer]Score: 1.2[/answer]", 3.7, "paper")
    forcer = TeacherForcer(processor, chunk_size=4)
    other = forcer.item(_messages(Image.fromarray(rgb(2))), "[think]x[/think][answer]Score: 2.2[/answer]", (27, 30))
    z = forcer.digit_probs(model, [other, forcer.item(msgs, completion, span)])[1]
    correct = _plain_probs(model, processor, msgs, completion, ("3", "7"))
    sequential = _plain_probs(model, processor, msgs, completion, ("3", "7"), drop=("mm_token_type_ids",))
    assert z == pytest.approx(correct, rel=1e-5, abs=1e-7)
    gap = max(abs(a - b) / max(b, 1e-12) for a, b in zip(sequential, correct))
    assert gap > 0.05, f"the model is not position-sensitive enough for this test (gap {gap:.3g})"


def test_pd_forward_runs_without_gradient_checkpointing_and_restores_it(tiny_model_dir):
    from refine_iqa.model.loading import load_model
    from refine_iqa.rl.pd import checkpointing_off

    model = load_model(tiny_model_dir)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    calls = []
    for m in model.modules():
        if getattr(m, "gradient_checkpointing", False) is True:
            orig = m._gradient_checkpointing_func
            m._gradient_checkpointing_func = lambda *a, _o=orig, **k: (calls.append(1), _o(*a, **k))[1]
    from refine_iqa.model.loading import load_processor
    from refine_iqa.rl.forcing import prompt_completion_inputs

    processor = load_processor(tiny_model_dir)
    msgs = _messages(Image.fromarray(rgb(4)))
    forcer = TeacherForcer(processor)
    ids = processor.tokenizer("x", add_special_tokens=False)["input_ids"]
    inputs, _ = prompt_completion_inputs(processor, [msgs], [ids])
    with torch.enable_grad():  # even with gradients on, nothing is checkpointed inside the context
        with checkpointing_off(model):
            model.model(**inputs)
    assert calls == []
    forcer.digit_probs(model, [forcer.item(msgs, "[answer]Score: 2.2[/answer]", (15, 18))])
    assert calls == []
    assert model.is_gradient_checkpointing and model.training
    with torch.enable_grad():  # restored: a grad-enabled training forward checkpoints again
        model(**inputs)
    assert calls
