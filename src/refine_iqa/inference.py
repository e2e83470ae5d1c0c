"""Inference: the probability-based quality score (Eq. 8)."""

from __future__ import annotations

import torch

# Tokens "0".."4": the integer digit of a score in [0, 5).
SCORE_DIGITS = ("0", "1", "2", "3", "4")


def expected_score(digit_logits: torch.Tensor) -> torch.Tensor:
    """Eq. 8: Q = sum_j j * softmax(P)_j + 0.5, P = logits of tokens "0".."4" (last dimension, size 5).

    REFERENCE: the paper's "+5" is a typo for +0.5 (the centre of the integer bin, so Q lies in [0.5, 4.5]).
    Works on any leading batch shape; computed in float32 at least (bf16 logits would lose the decimals).
    """
    if not isinstance(digit_logits, torch.Tensor):
        raise TypeError(f"digit_logits must be a torch.Tensor, got {type(digit_logits).__name__}")
    if digit_logits.dim() == 0 or digit_logits.shape[-1] != len(SCORE_DIGITS):
        raise ValueError(
            f"digit_logits must have the logits of tokens {SCORE_DIGITS} in its last dimension (size 5), "
            f"got shape {tuple(digit_logits.shape)}"
        )
    logits = digit_logits if digit_logits.dtype == torch.float64 else digit_logits.float()
    probs = torch.softmax(logits, dim=-1)
    levels = torch.arange(len(SCORE_DIGITS), dtype=probs.dtype, device=probs.device)
    score = (probs * levels).sum(dim=-1) + 0.5
    if torch.isnan(score).any():
        # NaN, +inf or all -inf logits: no distribution over the digits exists.
        raise ValueError("digit_logits hold NaN, +inf or an all -inf row: no score can be computed")
    return score


# --- scoring images with a trained model ------------------------------------------------------------------

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def collect_images(inputs) -> list:
    """Files as given, folders expanded recursively to their image files (sorted)."""
    from pathlib import Path

    out = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES))
        else:
            out.append(p)
    return out


class Scorer:
    """Score images with a Refine-IQA model folder: `Scorer(model_dir).score(["a.jpg", ...])`.

    mode "prob" is the probability-based score (Eq. 8); "numeric" is the number the model writes. With
    think=True the model first writes its quality interpretation, returned as `interpretation`.
    Unreadable images are skipped: their results carry `error` and `score` None.
    """

    def __init__(self, model_dir, *, think: bool = False, mode: str = "prob", tags: str = "paper",
                 device: str = "cpu", dtype: str = "float32", batch_size: int = 8, max_new_tokens: int = 256):
        import transformers

        from refine_iqa.model.loading import load_model_and_processor

        transformers.utils.logging.disable_progress_bar()  # one line per image on stdout, nothing else
        if mode not in ("prob", "numeric"):
            raise ValueError(f"mode must be 'prob' or 'numeric', got {mode!r}")
        self.model, self.processor = load_model_and_processor(model_dir, dtype=dtype, device=device)
        self.model.eval()
        self.think, self.mode, self.tags = think, mode, tags
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens

    def score(self, images, progress=None, on_result=None) -> list[dict]:
        """Scores in input order. Files are decoded a batch at a time (shrunk to the processor's size), so a
        folder of any size costs the memory of a couple of batches; arrays / PIL images given in memory are used
        as they are. `on_result(result)` is called for each image, in input order, as soon as its batch is
        scored (the command line prints each score then, not after the last batch)."""
        from PIL import Image

        from refine_iqa import prompts
        from refine_iqa.generation import score_samples

        results, samples = [], []
        text = prompts.score_prompt(think=self.think, tags=self.tags)
        for i, img in enumerate(images):
            in_memory = isinstance(img, Image.Image) or hasattr(img, "shape")
            name = f"<image {i}>" if in_memory else str(img)
            sample = {"prompt": prompts.build_messages(text, 1)}
            if isinstance(img, Image.Image):
                sample["images"] = [img.convert("RGB")]
            elif in_memory:
                sample["images"] = [Image.fromarray(img).convert("RGB")]
            else:
                sample["image_paths"] = [str(img)]
            results.append({"path": name, "score": None})
            samples.append(sample)
        # A no-think answer is a dozen tokens; only think mode needs the long budget.
        budget = self.max_new_tokens if self.think else min(self.max_new_tokens, 24)
        style = prompts.get_tag_style(self.tags)

        def on_row(i: int, out: dict) -> None:
            self._fill(results[i], out, style)
            if on_result is not None:
                on_result(results[i])

        score_samples(self.model, self.processor, samples, think=self.think, tags=self.tags,
                      max_new_tokens=budget, batch_size=self.batch_size, progress=progress,
                      answers=self.think or self.mode == "numeric", journal=_BatchStream(on_row), key=_index_key)
        return results

    def _fill(self, r: dict, out: dict, style) -> None:
        if out.get("error") is not None:  # unreadable file: skipped, reported
            r["error"] = out["error"]
            return
        value = out["prob"] if self.mode == "prob" else out["numeric"]
        if value is None:
            r["error"] = "unparsable answer: " + out["completion"][:200]
        else:
            r["score"] = round(min(max(float(value), 0.0), 4.999), 4)
        if self.think:
            c = out["completion"]
            a, b = c.find(style.think_open), c.find(style.think_close)
            r["interpretation"] = c[a + len(style.think_open):b].strip() if 0 <= a < b else ""


def _index_key(sample: dict, index: int) -> str:
    return str(index)


class _BatchStream:
    """score_samples' journal interface (`done`, `append(records)` once per batch), used to hand each batch's
    rows on as soon as they exist: `on_row(i, row)` for sample i, in input order."""

    def __init__(self, on_row):
        self.done: dict = {}
        self._on_row = on_row

    def append(self, records: list[dict]) -> None:
        for rec in sorted(records, key=lambda r: int(r["key"])):
            self._on_row(int(rec["key"]), rec)


def run_score_cli(args) -> int:
    import json
    import sys

    paths = collect_images(args.images)
    if not paths:
        print("error: no image files found in " + " ".join(args.images), file=sys.stderr)
        return 1
    scorer = Scorer(args.model, think=args.think, mode=args.mode, tags=args.tags, batch_size=args.batch_size,
                    max_new_tokens=args.max_new_tokens)
    n_ok = 0

    def show(r: dict) -> None:  # each score as soon as its batch is done (a large folder shows progress)
        nonlocal n_ok
        if r["score"] is None:
            print(f"skipped {r['path']}: {r['error']}", file=sys.stderr, flush=True)
            return
        n_ok += 1
        if args.json:
            print(json.dumps(r, ensure_ascii=False), flush=True)
        else:
            line = f"{r['path']}\t{r['score']:.3f}"
            if args.think:
                line += "\t" + r.get("interpretation", "").replace("\t", " ").replace("\n", " ")
            print(line, flush=True)

    results = scorer.score(paths, on_result=show)
    print(f"scored {n_ok} of {len(results)} images", file=sys.stderr)
    return 0 if n_ok else 1
