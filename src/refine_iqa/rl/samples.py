"""Training and evaluation samples for both stages, in TRL's conversational VLM format.

Stage-1 (task builder): from Refine-Perception manifest items, description samples (object / distortion /
severity multiple choice) and grounding samples (the distorted box), each full-reference (reference image
first, then the distorted one) or no-reference. Stage-2: one scoring prompt per image.
Each sample: {"prompt": messages, "image_paths": [path...], <answer columns the rewards read>}. Samples hold
PATHS, never pixels: `refine_iqa.images` decodes and shrinks them when a batch is built (training: the
dataset's transform in rl/grpo.py; evaluation: generation.py). Image sizes come from the manifest's
width/height (or the file header), never from a decode.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

from refine_iqa import prompts
from refine_iqa.boxes import resized_size_from_processor, to_model_box
from refine_iqa.images import check_readable, image_size
from refine_iqa.io_utils import ImageReadError


def _path(path: str | Path, root: str | Path | None = None) -> str:
    p = Path(path)
    if root is not None and not p.is_absolute():
        p = Path(root) / p
    return str(p)


def _dist_size(item: dict, dist: str) -> tuple[int, int]:
    """(width, height) of the distorted image: the manifest's (written from the decoded array), else the
    file header (EXIF orientation applied, as the decode will)."""
    w, h = item.get("width"), item.get("height")
    if isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0:
        return w, h
    return image_size(dist)


def stage1_sample(item: dict, task: str, full_reference: bool, processor, tags="paper", root=None,
                  templates: dict | None = None) -> dict:
    """One Stage-1 sample for a manifest item."""
    templates = templates or {}
    dist = _path(item["dist_path"], root)
    paths = [_path(item["ref_path"], root), dist] if full_reference else [dist]
    w, h = _dist_size(item, dist)
    model_wh = resized_size_from_processor(processor, w, h)
    if task == "description":
        text = prompts.description_prompt(item["objects"], full_reference=full_reference, tags=tags,
                                          template=templates.get("description"))
    elif task == "grounding":
        text = prompts.grounding_prompt(full_reference=full_reference, tags=tags, template=templates.get("grounding"))
    else:
        raise ValueError(f"unknown Stage-1 task {task!r}; use description or grounding")
    return {
        "prompt": prompts.build_messages(text, len(paths)),
        "image_paths": paths,
        "task": task,
        "full_reference": full_reference,
        "objects": list(item["objects"]),
        "answer_object": item["object"],
        "answer_family": prompts.display_family(item["family"]),
        "answer_severity": prompts.severity_word(int(item["level"])),
        "box_model": list(to_model_box(item["box"], (w, h), model_wh)),
        "model_wh": list(model_wh),
        "family": item["family"],
        "stratum": f"{task}:{item['family']}",  # answer class for balanced batches (rl/sampling.py)
        "type": item["type"],
        "level": int(item["level"]),
        "item_id": item["id"],
    }


def build_stage1_train(items: list[dict], processor, *, task_mix: dict, fr_fraction: float, seed: int,
                       tags="paper", root=None) -> list[dict]:
    """Every item gives one description and one grounding sample (FR with probability fr_fraction); the
    over-represented task is then subsampled to the configured mix; all tasks are shuffled together."""
    rng = random.Random(seed)
    by_task: dict[str, list[dict]] = {"description": [], "grounding": []}
    for item in items:
        for task in by_task:
            by_task[task].append(stage1_sample(item, task, rng.random() < fr_fraction, processor, tags, root))
    total = sum(task_mix.values())
    shares = {t: task_mix[t] / total for t in by_task}
    # Largest sample count n such that n * share_t <= available_t for every task with a positive share.
    n = min(len(by_task[t]) / shares[t] for t in by_task if shares[t] > 0)
    out = []
    for t, samples in by_task.items():
        k = int(round(n * shares[t]))
        out.extend(rng.sample(samples, k) if k < len(samples) else samples)
    rng.shuffle(out)
    return out


def build_stage1_eval(items: list[dict], processor, *, tags="paper", root=None) -> list[dict]:
    """Every test item under all four settings: description/grounding x FR/NR (reported separately)."""
    return [stage1_sample(it, task, fr, processor, tags, root)
            for it in items for task in ("description", "grounding") for fr in (True, False)]


def stage2_sample(record: dict, *, think: bool, tags="paper", root=None, template: str | None = None) -> dict:
    text = prompts.score_prompt(think=think, tags=tags, template=template)
    return {
        "prompt": prompts.build_messages(text, 1),
        "image_paths": [_path(record["image_path"], root)],
        "mos_scaled": float(record["mos_scaled"]),
        "stratum": f"mos:{math.floor(float(record['mos_scaled']))}",  # score class for balanced batches
        "think": think,
        "item_id": str(record.get("id", record["image_path"])),
    }


def build_stage2(records: list[dict], *, think: bool, tags="paper", root=None,
                 skipped: list | None = None) -> list[dict]:
    """Scoring samples (paths only). With `skipped` given, each file's HEADER is checked (no decode) and an
    unusable one (missing, empty, not an image, size limits) is recorded there as (record, reason) and left out
    (a corrupt file in a pool of thousands must not stop a run); a body that is truncated shows only when its
    batch is decoded, where the trainer / evaluation skips and reports it too."""
    out = []
    for r in records:
        try:
            sample = stage2_sample(r, think=think, tags=tags, root=root)
            if skipped is not None:
                check_readable(sample["image_paths"][0])
            out.append(sample)
        except ImageReadError as e:
            if skipped is None:
                raise
            skipped.append((r, f"{e.reason}: {e.detail}" if e.detail else e.reason))
    return out


def random_answer(sample: dict, rng: random.Random, tags="paper", think_words: int = 8, think: bool | None = None,
                  families: tuple[str, ...] | None = None,
                  boxes: tuple[tuple[float, float, float, float], ...] | None = None) -> str:
    """A well-formed answer with RANDOM content (the embedded warm start teaches format, never the task).
    `families`: the family display names to draw from (default all of them). `boxes`: relative boxes
    (x1, y1, x2, y2 as fractions of the image) to draw a grounding answer from, scaled to this sample's model
    size (default: two random corners). Both are drawn independently of the sample: still image-blind."""
    style = prompts.get_tag_style(tags)
    a, b = style.answer_open, style.answer_close
    if "task" in sample:
        if sample["task"] == "description":
            obj = rng.choice(sample["objects"])
            fam = rng.choice(list(families or prompts.FAMILY_DISPLAY_NAMES.values()))
            sev = rng.choice(list(prompts.SEVERITY_WORDS.values()))
            return f"{a}{obj} / {fam} / {sev}{b}"
        w, h = sample["model_wh"]
        if boxes:
            rx1, ry1, rx2, ry2 = rng.choice(boxes)
            x1, y1, x2, y2 = round(rx1 * w), round(ry1 * h), round(rx2 * w), round(ry2 * h)
        else:
            x1, x2 = sorted(rng.sample(range(w + 1), 2))
            y1, y2 = sorted(rng.sample(range(h + 1), 2))
        return f"{a}{x1},{y1},{x2},{y2}{b}"
    score = prompts.format_score(rng.randint(0, 49) / 10)
    if think:
        words = " ".join(rng.choice(THINK_VOCAB) for _ in range(think_words))
        return f"{style.think_open}{words}{style.think_close}{a}Score: {score}{b}"
    return f"{a}Score: {score}{b}"


THINK_VOCAB = (
    "the image is sharp clear bright dark noisy blurry colorful dull detailed quality good poor fair excellent "
    "bad visible distortions artifacts so score"
).split()
