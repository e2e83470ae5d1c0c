"""EMBEDDED ONLY: a short supervised warm start that teaches the output FORMATS on random answers.

A randomly initialised tiny model cannot follow any output format, so GRPO would see zero reward. This step
trains it on the real prompts and images but with RANDOM answers (redrawn every step), so it learns the
formats and nothing about the tasks: any skill measured later must come from the RL stages. The paper's
configuration turns it off (a real Qwen2.5-VL follows formats already).
"""

from __future__ import annotations

import logging
import random

import torch

from refine_iqa.generation import with_images
from refine_iqa.images import ImageCache, sample_images
from refine_iqa.rl.forcing import prompt_completion_inputs, to_device
from refine_iqa.rl.samples import random_answer

log = logging.getLogger(__name__)


def _conversation(sample: dict, processor, cache: ImageCache | None = None) -> list[dict]:
    """The sample's prompt with its images in the content parts, decoded for this batch only at the
    processor's size (the one place this module touches images)."""
    return with_images(sample["prompt"], sample_images(sample, processor, cache))


def answer_families(samples: list[dict]) -> tuple[str, ...] | None:
    """The family display names the description samples hold, sorted; None when there is no description sample."""
    return tuple(sorted({s["answer_family"] for s in samples if s.get("task") == "description"})) or None


def answer_boxes(samples: list[dict]) -> tuple[tuple[float, float, float, float], ...] | None:
    """The distinct target boxes of the grounding samples, relative to their image (fractions, sorted); None when
    there is no grounding sample. A warm start drawing from them starts exploration on the boxes the data holds."""
    rel = {tuple(round(c / d, 6) for c, d in zip(s["box_model"], (*s["model_wh"], *s["model_wh"])))
           for s in samples if s.get("task") == "grounding"}
    return tuple(sorted(rel)) or None


def warm_start(model, processor, samples: list[dict], *, steps: int, learning_rate: float, batch_size: int,
               seed: int, tags="paper", think_words: int = 8, progress=None,
               families: tuple[str, ...] | None = None,
               boxes: tuple[tuple[float, float, float, float], ...] | None = None) -> list[float]:
    """Train `model` in place; each step draws `batch_size` samples and fresh random answers. Returns losses.

    `families`: the display names the random description family is drawn from (default: all 12 of the
    catalogue). The learnability recipes pass `answer_families(samples)`, the label set of their data, so the
    warm-started policy starts even over the answers the task can have (docs/learnability.md). Still image-blind.
    `boxes`: likewise for grounding, the relative boxes a random box answer is drawn from (`answer_boxes`).
    """
    rng = random.Random(seed)
    torch.manual_seed(seed)
    cache = ImageCache(capacity=2 * batch_size)
    tok = processor.tokenizer
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    opt = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.0)
    model.train()
    losses = []
    for step in range(steps):
        idx = [rng.randrange(len(samples)) for _ in range(batch_size)]
        convs, comps = [], []
        for i in idx:
            s = samples[i]
            think = s.get("think") if "task" not in s else None
            answer = random_answer(s, rng, tags, think_words=think_words, think=think, families=families,
                                   boxes=boxes)
            convs.append(_conversation(s, processor, cache))  # per batch: no image kept
            comps.append(tok(answer, add_special_tokens=False)["input_ids"] + [eos])
        # The trainer's own input path (rl/forcing.py): mm_token_type_ids and the other processor fields included.
        inputs, prompt_len = prompt_completion_inputs(processor, convs, comps)
        labels = inputs["input_ids"].masked_fill(inputs["attention_mask"] == 0, -100)
        labels[:, :prompt_len] = -100  # only the completion is learned
        dev = next(model.parameters()).device
        out = model(**to_device(inputs, dev), labels=labels.to(dev))
        opt.zero_grad()
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(out.loss.item())
        if progress is not None:
            progress(step + 1, steps, out.loss.item())
    model.eval()
    return losses
