"""The embedded model: deterministic build, Qwen structure, one token per digit, loads via from_pretrained."""

import hashlib

import pytest

from refine_iqa.model.build_tiny import build_tiny_model, check_digit_tokens
from refine_iqa.model.loading import ModelFolderError, load_model_and_processor


def _weights_hash(folder):
    return hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()


def test_build_is_deterministic(tiny_model_dir, tmp_path):
    again = build_tiny_model(tmp_path / "again", seed=0)
    assert _weights_hash(again) == _weights_hash(tiny_model_dir)
    other = build_tiny_model(tmp_path / "other", seed=1)
    assert _weights_hash(other) != _weights_hash(tiny_model_dir)


def test_folder_has_the_real_checkpoint_layout(tiny_model_dir):
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        assert (tiny_model_dir / name).exists(), name
    assert not tiny_model_dir.with_name(tiny_model_dir.name + ".tmp").exists()


def test_loads_through_from_pretrained_and_digits_are_single_tokens(tiny):
    model, processor = tiny
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert type(processor).__name__ == "Qwen2_5_VLProcessor"
    tok = processor.tokenizer
    check_digit_tokens(tok)
    pieces = [tok.decode([i]) for i in tok("[answer]Score: 3.7[/answer]", add_special_tokens=False)["input_ids"]]
    assert "3" in pieces and "7" in pieces and "." in pieces
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"


def test_chat_template_places_images_then_text(tiny):
    _, processor = tiny
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "hi"}]}]
    text = processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    assert text.count("<|vision_start|><|image_pad|><|vision_end|>") == 2
    assert text.endswith("hi<|im_end|>\n<|im_start|>assistant\n")


def test_missing_model_folder_is_one_clear_error(tmp_path):
    with pytest.raises(ModelFolderError, match="model folder .*nope.* not found"):
        load_model_and_processor(tmp_path / "nope")
