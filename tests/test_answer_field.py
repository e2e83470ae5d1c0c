"""The answer field of a completion (rl/answer_field.py): which sampled tokens the answer-field KL acts on."""

import pytest
import torch

from refine_iqa.rl.answer_field import answer_field_spans, family_span, token_mask, token_offsets


class CharTokenizer:
    """One token per character (id = code point); id 0 is a special token (dropped by skip_special_tokens)."""

    def encode(self, text):
        return [ord(c) for c in text]

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(i) for i in ids if not (skip_special_tokens and i == 0))


def _ids(text):
    return torch.tensor([CharTokenizer().encode(text)])


def _marked(text, fields, tags="paper"):
    ids = _ids(text)
    mask = token_mask(ids, torch.ones_like(ids), CharTokenizer(), answer_field_spans(fields, tags))
    return "".join(c for c, m in zip(text, mask[0].tolist()) if m)


def test_family_field_is_the_middle_field_stripped():
    text = "[answer]cat /  underexposure / catastrophic[/answer]"
    assert _marked(text, ("family",)) == "underexposure"
    assert family_span(text, "paper") == [(text.index("under"), text.index("under") + len("underexposure"))]
    # the LAST complete answer block counts, as for the reward
    text2 = "[answer]dog / blur / mild[/answer] [answer]cat / noise / severe[/answer]"
    assert _marked(text2, ("family",)) == "noise"


def test_score_and_box_fields():
    assert _marked("[think]dark image[/think][answer]Score: 2.7[/answer]", ("score",)) == "2.7"
    assert _marked("[answer]3,4,50,60[/answer]", ("box",)) == "3,4,50,60"
    assert _marked("[answer]Score: 1.5[/answer]", ("family", "score")) == "1.5"


@pytest.mark.parametrize("text", [
    "[answer]cat / underexposure[/answer]",          # two fields: unparsable, nothing to act on
    "cat / underexposure / catastrophic",             # no answer block
    "[answer]cat / underexposure / catastrophic",     # truncated
    "",                                                # empty completion
])
def test_unparsable_answers_get_no_mask(text):
    assert _marked(text, ("family",)) == ""
    assert _marked(text, ("score",)) == ""


def test_padding_and_special_tokens():
    # Right padding after the completion (completion_mask 0) is never marked; a special token inside the
    # completion decodes to nothing and shifts no offset.
    text = "[answer]cat / blur / mild[/answer]"
    ids = torch.tensor([CharTokenizer().encode(text) + [0, 0, 0]])
    mask = torch.tensor([[1] * len(text) + [1, 0, 0]])
    out = token_mask(ids, mask, CharTokenizer(), answer_field_spans(("family",), "paper"))
    assert out[0, len(text):].sum() == 0
    assert "".join(c for c, m in zip(text, out[0].tolist()) if m) == "blur"
    assert token_offsets([104, 0, 105], CharTokenizer()) == [(0, 1), (1, 1), (1, 2)]


def test_unknown_field_is_rejected():
    with pytest.raises(ValueError, match="unknown answer field"):
        answer_field_spans(("severity",), "paper")


def test_real_tokenizer_marks_exactly_the_family_tokens(tiny):
    """With the embedded model's BPE tokenizer (multi-character tokens), the marked tokens decode to the family
    word plus at most the separator characters a token shares with it, and nothing of the other fields."""
    tok = tiny[1].tokenizer
    text = "[answer]car / overexposure / catastrophic[/answer]"
    ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
    mask = token_mask(ids, torch.ones_like(ids), tok, answer_field_spans(("family",), "paper"))
    marked = tok.decode(ids[0][mask[0].bool()].tolist())
    assert "overexposure" in marked
    assert "car" not in marked and "catastrophic" not in marked and len(marked) <= len(" overexposure ")
    offsets = token_offsets(ids[0].tolist(), tok)
    assert offsets[-1][1] == len(text) and all(a <= b for a, b in offsets)
