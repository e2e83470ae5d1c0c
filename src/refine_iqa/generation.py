"""Batched, greedy, deterministic generation and probability read-out for evaluation and scoring.

Samples hold image paths (`image_paths`; in-memory `images` are accepted too). Each batch is decoded and shrunk
to the processor's size only when it is built (`refine_iqa.images`), the NEXT batch is prepared in a background
thread while the model works on this one (a bounded queue: at most `prefetch` batches wait), and the image
processor runs ONCE per batch: the score pass of think mode (and of no-think with answers) reuses the
generation pass's pixel_values (`encode_texts`). An unreadable image is skipped and reported, never fatal when
the caller asks for it (`errors`). With a `journal` (eval/journal.py) each finished batch is appended to a
JSON Lines file and items already there are not run again (a killed evaluation resumes).

Public names: `with_images`, `encode_texts`, `iter_batches`, `generate`, `score_prefix`, `digit_logits_after`,
`score_samples`.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch

from refine_iqa import parsing, prompts
from refine_iqa.images import ImageCache, sample_images
from refine_iqa.inference import SCORE_DIGITS, expected_score
from refine_iqa.io_utils import ImageReadError

DEFAULT_PREFETCH = 1  # batches prepared ahead of the model (each holds only shrunk images)


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


def _reason(e: ImageReadError) -> str:
    return f"{e.reason}: {e.detail}" if e.detail else e.reason


def encode_texts(processor, texts: list[str], vision: dict | None):
    """What `processor(text=texts, images=..., padding=True, return_tensors="pt")` returns, from the image
    processor's output `vision` computed once: image placeholders expanded by the processor's own rule, the
    tokenizer run, mm_token_type_ids built (Qwen2.5-VL needs them for its 3-D positions), pixel_values reused."""
    from transformers import BatchFeature

    processor.tokenizer.padding_side = "left"
    if vision is None:
        enc = processor(text=texts, padding=True, return_tensors="pt")
        return enc
    n_images = int(vision["image_grid_thw"].shape[0])
    replacements = [processor.replace_image_token(vision, image_idx=i) for i in range(n_images)]
    expanded, _ = processor.get_text_with_replacements(list(texts), replacements)
    enc = processor.tokenizer(expanded, padding=True, return_tensors="pt")
    data = dict(enc)
    if getattr(processor, "return_mm_token_type_ids", False):
        data["mm_token_type_ids"] = torch.tensor(processor.create_mm_token_type_ids(enc["input_ids"]))
    data.update({k: v for k, v in vision.items()})
    return BatchFeature(data)


@dataclass
class Batch:
    indices: list[int]  # positions in `samples` of this batch's readable rows
    texts: list[str]  # their chat-template prompts
    vision: dict | None  # the image processor's output for their images, or None
    errors: dict[int, ImageReadError] = field(default_factory=dict)  # position -> error, unreadable rows

    def encode(self, processor, suffixes: list[str] | None = None):
        texts = self.texts if suffixes is None else [t + s for t, s in zip(self.texts, suffixes)]
        return encode_texts(processor, texts, self.vision)


def prepare_batch(processor, samples: list[dict], positions: list[int], cache: ImageCache | None = None) -> Batch:
    """Decode (shrunk) the images of `samples[positions]`, render their prompts, run the image processor once."""
    indices, texts, images, errors = [], [], [], {}
    for i in positions:
        s = samples[i]
        try:
            imgs = sample_images(s, processor, cache)
        except ImageReadError as e:
            errors[i] = e
            continue
        indices.append(i)
        images.extend(imgs)
        texts.append(processor.apply_chat_template(s["prompt"], add_generation_prompt=True, tokenize=False))
    vision = dict(processor.image_processor(images=images, return_tensors="pt")) if images else None
    del images  # the batch keeps pixel_values only
    return Batch(indices, texts, vision, errors)


def iter_batches(processor, samples: list[dict], positions: list[int], *, batch_size: int,
                 prefetch: int = DEFAULT_PREFETCH, cache: ImageCache | None = None) -> Iterator[Batch]:
    """Prepared batches of `positions`, built `prefetch` ahead in a background thread (0: inline).
    Without `cache`, decoded images are not kept beyond their batch."""
    chunks = [positions[i : i + batch_size] for i in range(0, len(positions), batch_size)]
    if cache is None:
        cache = ImageCache(capacity=0)
    if prefetch <= 0:
        for c in chunks:
            yield prepare_batch(processor, samples, c, cache)
        return
    q: queue.Queue = queue.Queue(maxsize=prefetch)
    stop = threading.Event()
    done = object()

    def work():
        try:
            for c in chunks:
                item = prepare_batch(processor, samples, c, cache)
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as e:  # handed to the consumer, raised there
            q.put(e)

    t = threading.Thread(target=work, name="refine-iqa-prefetch", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
            del item
    finally:
        stop.set()
        while t.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get(timeout=0.05)
            except queue.Empty:
                pass
        t.join()


def _default_key(sample: dict, index: int) -> str:
    return str(sample.get("item_id", index))


def _pending(samples, journal, key) -> list[int]:
    if journal is None:
        return list(range(len(samples)))
    return [i for i, s in enumerate(samples) if key(s, i) not in journal.done]


@torch.no_grad()
def _generate_batch(model, processor, enc, max_new_tokens: int) -> list[str]:
    gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                         pad_token_id=processor.tokenizer.pad_token_id)
    new = gen[:, enc["input_ids"].shape[1]:]
    return processor.tokenizer.batch_decode(new, skip_special_tokens=True)


@torch.no_grad()
def generate(model, processor, samples: list[dict], *, max_new_tokens: int, batch_size: int = 16,
             progress: Callable[[int, int], None] | None = None, errors: dict | None = None, journal=None,
             key: Callable[[dict, int], str] = _default_key, prefetch: int = DEFAULT_PREFETCH) -> list[str | None]:
    """Greedy completions (special tokens removed) for conversational samples with images.

    An unreadable image raises ImageReadError, unless `errors` is given: then its sample's completion is None
    and `errors[index]` says why. With `journal`, finished samples (by `key`) are read back, not run again."""
    device = next(model.parameters()).device
    out: dict[int, str | None] = {}
    if journal is not None:
        for i, s in enumerate(samples):
            rec = journal.done.get(key(s, i))
            if rec is not None:
                out[i] = rec.get("completion")
                if rec.get("error") is not None and errors is not None:
                    errors[i] = rec["error"]
    todo = _pending(samples, journal, key)
    cache = ImageCache(capacity=4)  # a perception item's 4 consecutive samples share its 2 files: decoded once
    for b in iter_batches(processor, samples, todo, batch_size=batch_size, prefetch=prefetch, cache=cache):
        if b.errors and errors is None:
            raise next(iter(b.errors.values()))
        texts = _generate_batch(model, processor, b.encode(processor).to(device), max_new_tokens) if b.indices else []
        for i, c in zip(b.indices, texts):
            out[i] = c
        for i, e in b.errors.items():
            out[i] = None
            errors[i] = _reason(e)
        if journal is not None:
            journal.append([{"key": key(samples[i], i), "completion": c} for i, c in zip(b.indices, texts)]
                           + [{"key": key(samples[i], i), "completion": None, "error": _reason(e)}
                              for i, e in b.errors.items()])
        if progress:
            progress(len(out), len(samples))
    return [out[i] for i in range(len(samples))]


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


def _digit_ids(processor) -> list[int]:
    tok = processor.tokenizer
    return [tok.convert_tokens_to_ids(d) for d in SCORE_DIGITS]


@torch.no_grad()
def _digit_logits(model, enc, digit_ids) -> torch.Tensor:
    logits = model(**enc, logits_to_keep=1).logits[:, -1, :]
    return logits[:, digit_ids].float().cpu()


@torch.no_grad()
def digit_logits_after(model, processor, samples: list[dict], prefixes: list[str], *, batch_size: int = 16) -> torch.Tensor:
    """Logits of the tokens '0'..'4' at the position right after prompt + prefix, shape (N, 5)."""
    device = next(model.parameters()).device
    digit_ids = _digit_ids(processor)
    rows = []
    for b in iter_batches(processor, samples, list(range(len(samples))), batch_size=batch_size):
        if b.errors:
            raise next(iter(b.errors.values()))
        enc = b.encode(processor, [prefixes[i] for i in b.indices]).to(device)
        rows.append(_digit_logits(model, enc, digit_ids))
    return torch.cat(rows) if rows else torch.zeros((0, len(SCORE_DIGITS)))


def _unreadable(why: str) -> dict:
    return {"completion": None, "prob": None, "numeric": None, "format_ok": False, "error": why}


def score_samples(model, processor, samples: list[dict], *, think: bool, tags="paper", max_new_tokens: int = 48,
                  batch_size: int = 16, progress=None, answers: bool = True, journal=None,
                  key: Callable[[dict, int], str] = _default_key, prefetch: int = DEFAULT_PREFETCH) -> list[dict]:
    """Both scores per sample: 'prob' (Eq. 8) and 'numeric' (the number written), plus the completion.

    With answers=False in no-think mode nothing is generated (the prob score needs only the forced prefix).
    Per batch the image processor runs once; generation and the probability pass share its pixel_values.
    An unreadable image gives a row with `error` (and None scores); it never stops the run. With `journal`,
    each batch's rows are appended there and samples already in it are not scored again.
    """
    style = prompts.get_tag_style(tags)
    device = next(model.parameters()).device
    digit_ids = _digit_ids(processor)
    generate_text = answers or think
    check = parsing.is_think_format if think else parsing.is_no_think_format
    out: dict[int, dict] = {}
    if journal is not None:
        for i, s in enumerate(samples):
            rec = journal.done.get(key(s, i))
            if rec is not None:
                out[i] = {k: v for k, v in rec.items() if k != "key"}
    todo = _pending(samples, journal, key)
    for b in iter_batches(processor, samples, todo, batch_size=batch_size, prefetch=prefetch):
        rows = []
        if b.indices:
            enc = b.encode(processor)
            completions = _generate_batch(model, processor, enc.to(device), max_new_tokens) if generate_text \
                else [""] * len(b.indices)
            # No-think: the answer format is fixed, so the prefix is forced; think: read where the model wrote it.
            prefixes = [score_prefix(c, style) if think else f"{style.answer_open}Score: " for c in completions]
            logits = _digit_logits(model, b.encode(processor, prefixes).to(device), digit_ids)
            prob = expected_score(logits).tolist()
            rows = [{"completion": c, "prob": p, "numeric": parsing.parse_score(c, style), "format_ok": check(c, style)}
                    for c, p in zip(completions, prob)]
        for i, r in zip(b.indices, rows):
            out[i] = r
        for i, e in b.errors.items():
            out[i] = _unreadable(_reason(e))
        if journal is not None:
            journal.append([{"key": key(samples[i], i), **out[i]} for i in list(b.indices) + list(b.errors)])
        if progress:
            progress(len(out), len(samples))
    return [out[i] for i in range(len(samples))]
