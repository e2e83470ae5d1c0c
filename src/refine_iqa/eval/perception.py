"""Tables 1 and 2: description accuracy and grounding IoU per distortion family, easy/hard/overall.

A description is correct only when object, distortion family and severity are all right (Table 1). Grounding
is the IoU between the predicted box and the distorted box in the processor's resized pixels (Table 2).
Full-reference and no-reference samples are reported separately and together. Beside the tables: how many
answers parse at all, and how varied the answers are (a policy that writes one string for every image has
collapsed, whatever its accuracy).
"""

from __future__ import annotations

import math
from collections import Counter
from statistics import mean

from refine_iqa import parsing, prompts
from refine_iqa.boxes import iou
from refine_iqa.generation import generate

from refine_iqa.distortions.spec import EASY_FAMILIES

# Column order of the paper's Tables 1-2 (catalogue family names).
TABLE_FAMILIES = ("blur", "noise", "compression", "brighten", "darken", "saturate_strengthen", "saturate_weaken",
                  "oversharpen", "contrast_strengthen", "contrast_weaken", "pixelate", "quantization")


def score_completion(sample: dict, completion: str, tags="paper") -> dict:
    """Per-sample outcome: all-three-correct and per-field matches (description) or IoU (grounding), and
    whether the answer parsed at all (an unparsable answer counts as wrong / IoU 0)."""
    style = prompts.get_tag_style(tags)
    if sample["task"] == "description":
        pred = parsing.parse_choices(completion, style)
        gt = (sample["answer_object"], sample["answer_family"], sample["answer_severity"])
        fields = [pred is not None and parsing.normalise_choice(p) == parsing.normalise_choice(g)
                  for p, g in zip(pred or ("", "", ""), gt)]
        return {"correct": all(fields), "object_ok": fields[0], "family_ok": fields[1], "severity_ok": fields[2],
                "parsed": pred is not None}
    box = parsing.parse_box(completion, style)
    value = iou(box, sample["box_model"], sample["model_wh"]) if box is not None else 0.0
    return {"iou": value, "parsed": box is not None}


def _agg(values: list[float]) -> float:
    return mean(values) if values else math.nan


def summarise(samples: list[dict], outcomes: list[dict]) -> dict:
    """Nested tables: {"description"|"grounding": {"all"|"fr"|"nr": {family..., easy, hard, overall}}}."""
    out: dict = {}
    for task, key in (("description", "correct"), ("grounding", "iou")):
        out[task] = {}
        for ref in ("all", "fr", "nr"):
            rows = [(s, o) for s, o in zip(samples, outcomes) if s["task"] == task
                    and (ref == "all" or s["full_reference"] == (ref == "fr"))]
            table = {}
            for fam in TABLE_FAMILIES:
                table[fam] = _agg([float(o[key]) for s, o in rows if s["family"] == fam])
            table["easy"] = _agg([float(o[key]) for s, o in rows if s["family"] in EASY_FAMILIES])
            table["hard"] = _agg([float(o[key]) for s, o in rows if s["family"] not in EASY_FAMILIES])
            table["overall"] = _agg([float(o[key]) for _, o in rows])
            table["n"] = len(rows)
            table["parse_rate"] = _agg([float(o["parsed"]) for _, o in rows])
            if task == "description":
                for f in ("object_ok", "family_ok", "severity_ok"):
                    table[f.replace("_ok", "_accuracy")] = _agg([float(o[f]) for _, o in rows])
            out[task][ref] = table
    return out


def answer_variety(samples: list[dict], completions: list[str]) -> dict:
    """Per task: number of distinct answers (whitespace-trimmed), the most frequent one and its share."""
    out = {}
    for task in ("description", "grounding"):
        answers = [c.strip() for s, c in zip(samples, completions) if s["task"] == task]
        if not answers:
            out[task] = {"n": 0, "distinct": 0, "top_answer": None, "top_share": math.nan}
            continue
        top, count = Counter(answers).most_common(1)[0]
        out[task] = {"n": len(answers), "distinct": len(set(answers)), "top_answer": top,
                     "top_share": count / len(answers)}
    return out


def sample_key(sample: dict, index: int = 0) -> str:
    """An item's four test samples (task x FR/NR) each have their own key (for the resumable journal)."""
    return f"{sample['item_id']}|{sample['task']}|{'fr' if sample['full_reference'] else 'nr'}"


def evaluate_perception(model, processor, samples: list[dict], *, tags="paper", max_new_tokens: int = 32,
                        batch_size: int = 16, progress=None, journal=None) -> tuple[dict, list[dict]]:
    """Greedy answers for every Stage-1 test sample; returns (summary tables, per-sample predictions).
    Samples whose images cannot be decoded are left out and listed (item ids) in `skipped_unreadable`."""
    errors: dict[int, str] = {}
    completions = generate(model, processor, samples, max_new_tokens=max_new_tokens, batch_size=batch_size,
                           progress=progress, errors=errors, journal=journal, key=sample_key)
    skipped = sorted({samples[i]["item_id"] for i in errors})
    if errors:
        keep = [i for i in range(len(samples)) if i not in errors]
        samples, completions = [samples[i] for i in keep], [completions[i] for i in keep]
    outcomes = [score_completion(s, c, tags) for s, c in zip(samples, completions)]
    preds = [{"item_id": s["item_id"], "task": s["task"], "full_reference": s["full_reference"],
              "family": s["family"], "level": s["level"], "completion": c, **o}
             for s, c, o in zip(samples, completions, outcomes)]
    return {**summarise(samples, outcomes), "answers": answer_variety(samples, completions),
            "skipped_unreadable": skipped}, preds
