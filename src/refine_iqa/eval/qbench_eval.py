"""Table 4: Q-Bench (LLVisionQA) multiple-choice accuracy by question type and concern, think or no-think.

The question and its lettered options are asked inside the paper's answer format: in think mode the model
reasons in the think block first, as Refine-IQA-S2 does in the paper's Table 4.
"""

from __future__ import annotations

from PIL import Image

from refine_iqa import prompts
from refine_iqa.data.qbench import build_mcq_prompt, parse_choice, qbench_accuracy
from refine_iqa.generation import generate
from refine_iqa.io_utils import load_rgb

THINK_SUFFIX = ("Firstly, give a thorough thought on this and then output your thought and analysis process within "
                "the {think_open} {think_close} tags and provide the letter of your choice within the {answer_open} "
                "{answer_close} tags.")
NO_THINK_SUFFIX = "Directly give the letter of your choice within the {answer_open} {answer_close} tags."


def qbench_samples(records: list[dict], *, think: bool, tags="paper") -> list[dict]:
    style = prompts.get_tag_style(tags)
    suffix = (THINK_SUFFIX if think else NO_THINK_SUFFIX).format(**style.placeholders())
    out = []
    for r in records:
        text = build_mcq_prompt(r["question"], r["candidates"], instruction=suffix)
        out.append({"prompt": prompts.build_messages(text, 1), "images": [Image.fromarray(load_rgb(r["image_path"]))],
                    "item_id": r["id"]})
    return out


def evaluate_qbench(model, processor, records: list[dict], *, think: bool, tags="paper", max_new_tokens: int = 64,
                    batch_size: int = 16, progress=None) -> tuple[dict, list[dict]]:
    """Greedy answers; returns (accuracies as qbench_accuracy gives them, per-question predictions)."""
    samples = qbench_samples(records, think=think, tags=tags)
    completions = generate(model, processor, samples, max_new_tokens=max_new_tokens, batch_size=batch_size,
                           progress=progress)
    choices = [parse_choice(c, r["candidates"]) for c, r in zip(completions, records)]
    acc = qbench_accuracy(records, choices)
    preds = [{"id": r["id"], "completion": c, "choice": k, "answer": r.get("answer_index"), "type": r["type_name"],
              "concern": r["concern_name"]} for r, c, k in zip(records, completions, choices)]
    return acc, preds
