"""Teacher-forcing inputs built exactly the way TRL 1.16's GRPOTrainer builds its loss forward.

One function, `prompt_completion_inputs`, turns (messages with their images, completion token ids) into the
model's keyword arguments. The PD reward (rl/pd.py) and the embedded warm start (rl/warmstart.py) both use it,
so neither can drift from what the trainer feeds the policy. It mirrors `GRPOTrainer._generate_and_score_completions`:

- prompt text from `trl.data_utils.apply_chat_template({"prompt": messages}, processor)` (generation prompt on);
- the full processor call `processor(images=..., text=..., padding=True)`; EVERY field it returns other than
  input_ids / attention_mask is passed to the forward (for Qwen2.5-VL: pixel_values, image_grid_thw and
  mm_token_type_ids; without mm_token_type_ids the model silently falls back to sequential positions instead of
  its 3-D mrope positions);
- prompts left-padded, completions appended and right-padded; per-token fields (mm_token_type_ids,
  token_type_ids) extended with zeros over the completion.
"""

from __future__ import annotations

import torch

_PER_TOKEN_FIELDS = ("mm_token_type_ids", "token_type_ids")


def images_of(messages) -> list:
    """The images held in a conversation's content parts, in order (TRL's `_tokenize_prompts` rule)."""
    out = []
    for m in messages:
        if isinstance(m.get("content"), list):
            out.extend(part["image"] for part in m["content"] if part.get("type") == "image" and "image" in part)
    return out


def prompt_texts(processor, conversations: list) -> list[str]:
    from trl.data_utils import apply_chat_template, prepare_multimodal_messages

    return [apply_chat_template({"prompt": prepare_multimodal_messages(c)}, processor)["prompt"] for c in conversations]


def prompt_completion_inputs(processor, conversations: list, completion_ids: list[list[int]]) -> tuple[dict, int]:
    """Model inputs for prompt + completion, as TRL's loss forward sees them; returns (inputs, prompt length P).

    Completion token j of row i sits at position P + j (completions start right after the left-padded prompts);
    the logits at position P + j - 1 predict it.
    """
    if len(conversations) != len(completion_ids):
        raise ValueError(f"{len(conversations)} conversations but {len(completion_ids)} completions")
    images = [images_of(c) for c in conversations]
    has_images = any(images)
    enc = processor(images=[im or None for im in images] if has_images else None, text=prompt_texts(processor, conversations),
                    padding=True, padding_side="left", return_tensors="pt")
    prompt_ids, prompt_mask = enc["input_ids"], enc["attention_mask"]
    pad = processor.tokenizer.pad_token_id
    width = max((len(c) for c in completion_ids), default=0)
    comp = torch.full((len(completion_ids), width), pad, dtype=prompt_ids.dtype)
    comp_mask = torch.zeros((len(completion_ids), width), dtype=prompt_mask.dtype)
    for i, ids in enumerate(completion_ids):  # right padding, as TRL pads completions
        comp[i, : len(ids)] = torch.tensor(ids, dtype=prompt_ids.dtype)
        comp_mask[i, : len(ids)] = 1
    inputs = {k: v for k, v in enc.items() if k not in ("input_ids", "attention_mask")}
    for k in _PER_TOKEN_FIELDS:
        if k in inputs:
            inputs[k] = torch.cat([inputs[k], inputs[k].new_zeros(comp.shape)], dim=1)
    inputs["input_ids"] = torch.cat([prompt_ids, comp], dim=1)
    inputs["attention_mask"] = torch.cat([prompt_mask, comp_mask], dim=1)
    return inputs, prompt_ids.shape[1]


def to_device(inputs: dict, device) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
