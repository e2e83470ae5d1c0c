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
from refine_iqa.rl.pd import TeacherForcer
from refine_iqa.rl.samples import random_answer

log = logging.getLogger(__name__)


def _encode_prompts(processor, samples: list[dict], cache: ImageCache | None = None) -> list[dict]:
    forcer = TeacherForcer(processor)
    out = []
    for s in samples:
        images = sample_images(s, processor, cache)  # decoded for this batch only, at the processor's size
        msgs = with_images(s["prompt"], images)
        vis = processor.image_processor(images=images, return_tensors="pt")
        out.append({"prompt_ids": forcer.prompt_ids(msgs), "pixel_values": vis["pixel_values"],
                    "image_grid_thw": vis["image_grid_thw"]})
    return out


def warm_start(model, processor, samples: list[dict], *, steps: int, learning_rate: float, batch_size: int,
               seed: int, tags="paper", think_words: int = 8, progress=None) -> list[float]:
    """Train `model` in place; each step draws `batch_size` samples and fresh random answers. Returns losses."""
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
        seqs, labels, pix, grids = [], [], [], []
        encoded = _encode_prompts(processor, [samples[i] for i in idx], cache)  # per batch: no image kept
        for i, e in zip(idx, encoded):
            s = samples[i]
            think = s.get("think") if "task" not in s else None
            answer = random_answer(s, rng, tags, think_words=think_words, think=think)
            comp = tok(answer, add_special_tokens=False)["input_ids"] + [eos]
            seqs.append(e["prompt_ids"] + comp)
            labels.append([-100] * len(e["prompt_ids"]) + comp)
            pix.append(e["pixel_values"])
            grids.append(e["image_grid_thw"])
        length = max(len(x) for x in seqs)
        ids = torch.full((len(seqs), length), tok.pad_token_id, dtype=torch.long)
        lab = torch.full((len(seqs), length), -100, dtype=torch.long)
        mask = torch.zeros((len(seqs), length), dtype=torch.long)
        for r, (x, y) in enumerate(zip(seqs, labels)):
            ids[r, : len(x)] = torch.tensor(x)
            lab[r, : len(y)] = torch.tensor(y)
            mask[r, : len(x)] = 1
        dev = next(model.parameters()).device
        out = model(input_ids=ids.to(dev), attention_mask=mask.to(dev), labels=lab.to(dev),
                    pixel_values=torch.cat(pix).to(dev), image_grid_thw=torch.cat(grids).to(dev))
        opt.zero_grad()
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(out.loss.item())
        if progress is not None:
            progress(step + 1, steps, out.loss.item())
    model.eval()
    return losses
