"""Build the embedded default model: a tiny, randomly initialised Qwen2.5-VL saved like a real checkpoint.

Nothing can be downloaded, so the embedded configuration trains a ~0.4M-parameter Qwen2.5-VL whose
tokenizer, processor, chat template and config have the real model's structure. Every consumer loads it
through `from_pretrained(<folder>)`, exactly the path a local Qwen2.5-VL-7B folder takes.

The tokenizer is a byte-level BPE trained on the project's own prompts and answers, with Qwen2's
pre-tokenisation rule (every digit is its own token, which the PD reward relies on).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

QWEN_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]

# The Qwen2-VL chat template (system prompt, image/video placeholders, generation prompt).
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Words the embedded model must be able to write cheaply (answers, think text); prompts are added at build time.
_EXTRA_CORPUS = [
    "You are a helpful assistant.",
    "Score: 0.0 1.1 2.2 3.3 4.4 4.9 0,0,111,111",
    "slight noticeable relatively obvious severe catastrophic",
    "blur noise compression overexposure underexposure high contrast low contrast oversaturate desaturate "
    "oversharpen pixelate quantization",
    "red green blue yellow purple orange white black circle square triangle star ring cross diamond",
    "The image is sharp clear bright dark noisy blurry colorful dull detailed, the quality is good poor fair "
    "excellent bad, with visible distortions artifacts, so the score is",
]


def training_corpus() -> list[str]:
    """Texts the BPE is trained on: the project's prompts in both tag styles, plus answer vocabulary."""
    from refine_iqa import prompts

    texts = list(_EXTRA_CORPUS)
    objects = ["red circle", "blue square", "green triangle"]
    for style in ("paper", "xml"):
        for fr in (True, False):
            texts.append(prompts.description_prompt(objects, full_reference=fr, tags=style))
            texts.append(prompts.grounding_prompt(full_reference=fr, tags=style))
        for think in (True, False):
            texts.append(prompts.score_prompt(think=think, tags=style))
        texts.append(prompts.no_think_reference_completion(3.7, tags=style))
    return texts


def build_tokenizer(vocab_size: int = 1024):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_SPLIT_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = training_corpus()
    tok.train_from_iterator(corpus * 4, trainer=trainer)
    hf = Qwen2Tokenizer(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        bos_token=None,
        errors="replace",
        clean_up_tokenization_spaces=False,
        model_max_length=32768,
        split_special_tokens=False,
    )
    hf.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[1:]})
    hf.chat_template = CHAT_TEMPLATE
    check_digit_tokens(hf)
    return hf


def check_digit_tokens(tokenizer) -> None:
    """The PD reward and Eq. 8 read one digit per token: refuse a tokenizer that merges digits."""
    for text in ("Score: 3.7", "Score:0.0", "4.9", "12,34,56,78"):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        for d in "0123456789":
            if d in text and len(tokenizer(d, add_special_tokens=False)["input_ids"]) != 1:
                raise ValueError(f"tokenizer: digit {d!r} is not a single token")
        pieces = [tokenizer.decode([i]) for i in ids]
        for p in pieces:
            if any(c.isdigit() for c in p) and len(p.strip()) > 1:
                raise ValueError(f"tokenizer merges digits with other characters: {text!r} -> {pieces}")


def build_tiny_model(out_dir: str | Path, seed: int = 0, *, min_pixels: int = 28 * 28 * 4,
                     max_pixels: int = 28 * 28 * 16, vocab_size: int = 1024, hidden_size: int = 64,
                     num_layers: int = 2) -> Path:
    """Write tokenizer, processor, config and random weights into `out_dir` (replaced atomically)."""
    import torch
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)

    tokenizer = build_tokenizer(vocab_size)
    image_processor = Qwen2VLImageProcessor(min_pixels=min_pixels, max_pixels=max_pixels)
    processor = Qwen2_5_VLProcessor(
        image_processor=image_processor, tokenizer=tokenizer, video_processor=Qwen2VLVideoProcessor(),
        chat_template=CHAT_TEMPLATE,
    )
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    heads = 4
    head_dim = hidden_size // heads
    # mrope_section must sum to head_dim / 2 (temporal, height, width rotary sections).
    half = head_dim // 2
    mrope = [half - 2 * (half // 3), half // 3, half // 3]
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": hidden_size,
            "intermediate_size": 2 * hidden_size,
            "num_hidden_layers": num_layers,
            "num_attention_heads": heads,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": mrope},
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
            "tie_word_embeddings": False,
        },
        vision_config={
            "depth": 2, "hidden_size": hidden_size, "intermediate_size": 2 * hidden_size, "num_heads": 2,
            "out_hidden_size": hidden_size, "fullatt_block_indexes": [1], "window_size": 56,
            "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.generation_config.bos_token_id = ids["<|endoftext|>"]
    _smoke_forward(model, processor)
    model.save_pretrained(tmp, safe_serialization=True)
    processor.save_pretrained(tmp)
    (tmp / "refine_iqa_build.json").write_text(
        json.dumps({"kind": "embedded-tiny-qwen2.5-vl", "seed": seed, "parameters": sum(p.numel() for p in model.parameters())}, indent=2)
    )
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    return out_dir


def _smoke_forward(model, processor) -> None:
    import numpy as np
    import torch

    img = np.zeros((56, 56, 3), dtype=np.uint8)
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Score"}]}]
    text = processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    batch = processor(text=[text], images=[img], return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    if not torch.isfinite(logits).all():
        raise RuntimeError("tiny model smoke forward produced NaN/inf logits")
