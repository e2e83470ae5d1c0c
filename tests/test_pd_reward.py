"""The PD reward end to end on the tiny model: substitution, teacher forcing, clipping, Eq. 5 gating."""

import math

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


def _plain_probs(model, processor, messages, completion, digits):
    """Reference: one forward pass of the full substituted text, probabilities read by hand."""
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) + completion
    enc = processor(text=[text], images=[[messages[0]["content"][0]["image"]]], return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc).logits[0]
    ids = enc["input_ids"][0].tolist()
    tok = processor.tokenizer
    out = []
    # The last occurrences of the digit tokens are the score's (completion ends with "<digits>[/answer]").
    n_tail = len(tok("[/answer]", add_special_tokens=False)["input_ids"])
    pos_tenths = len(ids) - n_tail - 1
    pos_int = pos_tenths - 2  # "<int>" "." "<tenths>"
    for pos, d in zip((pos_int, pos_tenths), digits):
        assert tok.decode([ids[pos]]) == d
        out.append(torch.softmax(logits[pos - 1].float(), -1)[ids[pos]].item())
    return out


@pytest.mark.parametrize("score", [0.0, 4.9, 3.7])
def test_teacher_forced_probs_equal_a_plain_forward_pass(tiny, score):
    model, processor = tiny
    image = Image.fromarray(rgb(1))
    msgs = _messages(image)
    completion, span = substitute_score("[think]the image is sharp[/think][answer]Score: 1.2[/answer]", score, "paper")
    forcer = TeacherForcer(processor, chunk_size=2)
    item = forcer.item(forcer.prompt_ids(msgs), msgs, completion, span)
    s = prompts.format_score(score)
    # Two other items in the batch (padding must not change the result).
    other = forcer.item(forcer.prompt_ids(_messages(Image.fromarray(rgb(2)))), _messages(Image.fromarray(rgb(2))),
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
    think = forcer.digit_probs(model, [forcer.item(forcer.prompt_ids(msgs), msgs, sub, span)])[0]
    ref_msgs = _messages(image, think=False)
    ref_text = prompts.no_think_reference_completion(3.7)
    ref = forcer.digit_probs(model, [forcer.item(forcer.prompt_ids(ref_msgs), ref_msgs, ref_text, (15, 18))])[0]
    expected = min(1.0, max(0.0, digit_prob_reward(think) - digit_prob_reward(ref)))
    assert rewards[0] == pytest.approx(expected, abs=1e-6)
    assert logged["pd/r_ref"] == pytest.approx(digit_prob_reward(ref), abs=1e-6)
    assert 0.0 <= rewards[0] <= 1.0 and not math.isnan(rewards[0])
