"""Table 4: Q-Bench (LLVisionQA) multiple-choice accuracy by question type and concern, think or no-think.

The question and its lettered options are asked inside the paper's answer format: in think mode the model
reasons in the think block first, as Refine-IQA-S2 does in the paper's Table 4.
"""

from __future__ import annotations

from refine_iqa import prompts
from refine_iqa.data.qbench import build_mcq_prompt, parse_choice, qbench_accuracy
from refine_iqa.generation import generate

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
        out.append({"prompt": prompts.build_messages(text, 1), "image_paths": [str(r["image_path"])],
                    "item_id": str(r["id"])})
    return out


def evaluate_qbench(model, processor, records: list[dict], *, think: bool, tags="paper", max_new_tokens: int = 64,
                    batch_size: int = 16, progress=None, journal=None) -> tuple[dict, list[dict]]:
    """Greedy answers; returns (accuracies as qbench_accuracy gives them, per-question predictions). Images are
    decoded a batch at a time; a question whose image cannot be decoded counts as unanswered and is listed in
    `skipped_unreadable`. With `journal`, finished batches are kept and a re-run asks only the rest."""
    samples = qbench_samples(records, think=think, tags=tags)
    errors: dict[int, str] = {}
    completions = generate(model, processor, samples, max_new_tokens=max_new_tokens, batch_size=batch_size,
                           progress=progress, errors=errors, journal=journal)
    choices = [parse_choice(c, r["candidates"]) for c, r in zip(completions, records)]
    acc = qbench_accuracy(records, choices)
    acc["skipped_unreadable"] = [str(records[i]["image_path"]) for i in sorted(errors)]
    preds = [{"id": r["id"], "completion": c, "choice": k, "answer": r.get("answer_index"), "type": r["type_name"],
              "concern": r["concern_name"]} for r, c, k in zip(records, completions, choices)]
    return acc, preds
