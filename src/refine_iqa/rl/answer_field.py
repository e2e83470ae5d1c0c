"""The answer field of a completion: which sampled tokens carry the answer (family word, score, box).

Used by the answer-field KL (`answer_kl_coef`, rl/trainer.py): a KL to the frozen start model on those tokens
only. Why: a policy that starts image-blind (the embedded warm start; docs/learnability.md) earns the same
expected reward for any split of its probability between two answers that are each right on half the images,
so nothing holds that split in balance; sampling noise walks it until one answer holds nearly all the mass.
Then all G rollouts of a group give the same answer, the group advantage is zero, and the softmax gradient
that could still separate the images shrinks with (1 - p): the collapse is absorbing. The start model is
image-blind and even over the answers (the warm start draws them uniformly), so a KL to it on the answer
tokens pulls a collapsing split back towards even, and costs an image-aware policy at most log(number of
answers) per answer token. Measured alternatives that did not work: an entropy bonus on the same tokens
(it raises the entropy over the whole vocabulary: the field fills with garbage), TRL's KL or entropy bonus
on every completion token (they act mostly on format and think words).

`answer_field_spans(fields, tags)` gives, for a completion text, the character spans of its answer field:
the distortion family of a description ('object / FAMILY / severity'), the number after 'Score:', the four
numbers of a box. `token_mask` turns those spans into a mask over the sampled completion tokens.
"""

from __future__ import annotations

from typing import Callable

import torch

from refine_iqa import parsing


def family_span(text: str, tags) -> list[tuple[int, int]]:
    """The family field of the last answer block ('object / family / severity'), stripped; [] if unparsable."""
    spans = parsing.choice_spans(text, tags)
    return [] if spans is None else [spans[1]]


def score_span(text: str, tags) -> list[tuple[int, int]]:
    span = parsing.score_span(text, tags)
    return [] if span is None else [span]


def box_span(text: str, tags) -> list[tuple[int, int]]:
    """The whole content of the last answer block when it parses as a box (every coordinate token)."""
    span = parsing.answer_span(text, tags)
    return [] if span is None or parsing.parse_box(text, tags) is None else [span]


_SPANS = {"family": family_span, "score": score_span, "box": box_span}


def answer_field_spans(fields: tuple[str, ...] | list[str], tags) -> Callable[[str], list[tuple[int, int]]]:
    unknown = [f for f in fields if f not in _SPANS]
    if unknown:
        raise ValueError(f"unknown answer field(s) {unknown}; choose from {list(_SPANS)}")
    finders = [_SPANS[f] for f in fields]
    return lambda text: [s for find in finders for s in find(text, tags)]


def token_offsets(ids: list[int], tokenizer) -> list[tuple[int, int]]:
    """Character span of each token in tokenizer.decode(ids, skip_special_tokens=True), by incremental decoding
    (the sampled ids, not a re-tokenisation of the text, which can split differently). A token whose bytes only
    complete a character later gets an empty span ending where its text appears."""
    spans, prev = [], 0
    for i in range(len(ids)):
        n = len(tokenizer.decode(ids[: i + 1], skip_special_tokens=True))
        spans.append((prev, n))
        prev = max(prev, n)
    return spans


def token_mask(completion_ids: torch.Tensor, completion_mask: torch.Tensor, tokenizer,
               spans_of: Callable[[str], list[tuple[int, int]]]) -> torch.Tensor:
    """(B, T) float mask: 1 on the completion tokens whose text overlaps an answer-field span of that row."""
    out = torch.zeros(completion_ids.shape, dtype=torch.float32)
    for row in range(completion_ids.size(0)):
        ids = completion_ids[row][completion_mask[row].bool()].tolist()
        text = tokenizer.decode(ids, skip_special_tokens=True)
        spans = spans_of(text)
        if not spans:
            continue
        for t, (a, b) in enumerate(token_offsets(ids, tokenizer)):
            if any(a < e and b > s for s, e in spans):
                out[row, t] = 1.0
    return out.to(completion_ids.device)
