"""Batched, greedy, deterministic generation and probability read-out for evaluation and scoring."""

from __future__ import annotations

from typing import Callable

import torch

from refine_iqa import parsing, prompts
from refine_iqa.inference import SCORE_DIGITS, expected_score


def with_images(messages: list[dict], images: list) -> list[dict]:
    """Fill the image slots of a conversational prompt with the sample's images (in order)."""
    it = iter(images)
    out = []
    for m in messages:
        if isinstance(m.get("content"), list):
            content = [{"type": "image", "image": next(it)} if p.get("type") == "image" else p for p in m["content"]]
            out.append({**m, "content": content})
        else:
            out.append(m)
    return out


def _encode(processor, samples: list[dict], suffixes: list[str] | None = None):
    texts = [processor.apply_chat_template(s["prompt"], add_generation_prompt=True, tokenize=False) for s in samples]
    if suffixes is not None:
        texts = [t + s for t, s in zip(texts, suffixes)]
    images = [s["images"] for s in samples]
    processor.tokenizer.padding_side = "left"
    return processor(text=texts, images=images if any(images) else None, padding=True, return_tensors="pt")


def _batches(n: int, size: int):
    for i in range(0, n, size):
        yield range(i, min(n, i + size))


@torch.no_grad()
def generate(model, processor, samples: list[dict], *, max_new_tokens: int, batch_size: int = 16,
             progress: Callable[[int, int], None] | None = None) -> list[str]:
    """Greedy completions (special tokens removed) for conversational samples with images."""
    device = next(model.parameters()).device
    out: list[str] = []
    for idx in _batches(len(samples), batch_size):
        batch = [samples[i] for i in idx]
        enc = _encode(processor, batch).to(device)
        gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=processor.tokenizer.pad_token_id)
        new = gen[:, enc["input_ids"].shape[1]:]
        out.extend(processor.tokenizer.batch_decode(new, skip_special_tokens=True))
        if progress:
            progress(len(out), len(samples))
    return out


def score_prefix(completion: str, tags) -> str:
    """The completion up to (not including) the integer digit of its score; forced when absent.

    Think mode: the model generates freely until the answer's 'Score:'; the probability is read there. If it
    never wrote a parsable score, the think block it wrote (if any) is kept and the answer prefix forced.
    """
    style = prompts.get_tag_style(tags)
    span = parsing.score_span(completion, style)
    if span is not None:
        return completion[: span[0]]
    end = completion.find(style.think_close)
    kept = completion[: end + len(style.think_close)] if end >= 0 else ""
    return f"{kept}{style.answer_open}Score: "


@torch.no_grad()
def digit_logits_after(model, processor, samples: list[dict], prefixes: list[str], *, batch_size: int = 16) -> torch.Tensor:
    """Logits of the tokens '0'..'4' at the position right after prompt + prefix, shape (N, 5)."""
    device = next(model.parameters()).device
    tok = processor.tokenizer
    digit_ids = [tok.convert_tokens_to_ids(d) for d in SCORE_DIGITS]
    rows = []
    for idx in _batches(len(samples), batch_size):
        enc = _encode(processor, [samples[i] for i in idx], [prefixes[i] for i in idx]).to(device)
        logits = model(**enc, logits_to_keep=1).logits[:, -1, :]
        rows.append(logits[:, digit_ids].float().cpu())
    return torch.cat(rows) if rows else torch.zeros((0, len(SCORE_DIGITS)))


def score_samples(model, processor, samples: list[dict], *, think: bool, tags="paper", max_new_tokens: int = 48,
                  batch_size: int = 16, progress=None, answers: bool = True) -> list[dict]:
    """Both scores per sample: 'prob' (Eq. 8) and 'numeric' (the number written), plus the completion.

    With answers=False in no-think mode nothing is generated (the prob score needs only the forced prefix).
    """
    style = prompts.get_tag_style(tags)
    if answers or think:
        completions = generate(model, processor, samples, max_new_tokens=max_new_tokens, batch_size=batch_size,
                               progress=progress)
    else:
        completions = [""] * len(samples)
    # No-think: the answer format is fixed, so the prefix is forced; think: read where the model wrote it.
    prefixes = [score_prefix(c, style) if think else f"{style.answer_open}Score: " for c in completions]
    logits = digit_logits_after(model, processor, samples, prefixes, batch_size=batch_size)
    prob = expected_score(logits).tolist() if len(samples) else []
    return [
        {"completion": c, "prob": p, "numeric": parsing.parse_score(c, style),
         "format_ok": (parsing.is_think_format if think else parsing.is_no_think_format)(c, style)}
        for c, p in zip(completions, prob)
    ]
