"""The CPU-runnable parts of benchmarks/gpu_check.py: the 3B architecture's dimensions and size, the builder on
a scaled-down architecture with the real vocabulary, and the summary's ratios."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import gpu_check  # noqa: E402
import scale_model as S  # noqa: E402


def test_3b_architecture_has_the_published_dimensions_and_size():
    from refine_iqa.model.build_tiny import build_tokenizer

    cfg = S.qwen_config(S.QWEN25_VL_3B, build_tokenizer())
    t, v = cfg.text_config, cfg.vision_config
    assert (t.hidden_size, t.num_hidden_layers, t.num_attention_heads, t.num_key_value_heads, t.intermediate_size,
            t.vocab_size) == (2048, 36, 16, 2, 11008, 151936)
    assert t.rope_parameters["mrope_section"] == [16, 24, 24]  # sums to head_dim / 2 = 64
    assert (v.depth, v.hidden_size, v.out_hidden_size) == (32, 1280, 2048)
    # Qwen2.5-VL-3B-Instruct has 3.75B parameters (tied embeddings), counted on the meta device.
    assert 3.70e9 < S.count_parameters(S.QWEN25_VL_3B) < 3.80e9


def test_narrow_model_builds_loads_and_has_the_real_vocabulary(tmp_path):
    import torch
    from PIL import Image

    from refine_iqa.model.loading import load_model_and_processor

    folder = S.build_model(tmp_path / "narrow", S.NARROW, device="cpu", dtype="float32", max_pixels=1920 * 1080)
    model, processor = load_model_and_processor(folder, max_pixels=1920 * 1080)
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Score"}]}]
    text = processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    photo = S.photos(tmp_path / "photos", 1, 640, 360)[0]
    enc = processor(text=[text], images=[Image.open(photo)], return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc, logits_to_keep=1).logits
    assert logits.shape[-1] == 151936 and torch.isfinite(logits).all()
    assert enc["image_grid_thw"].tolist() == [[1, 26, 46]]  # 640x360 -> 644x364 at the paper's pixel limit


def test_summary_reports_ratios(tmp_path):
    for trainer, step, mem in (("refine", 12.0, 45.0), ("plain", 10.0, 30.0)):
        (tmp_path / f"stage2-{trainer}-448x448.json").write_text(json.dumps(
            {"size": "448x448", "trainer": trainer, "steps": 3, "median_step_after_first_s": step, "peak_gpu_gib": mem}))
    text = gpu_check.summary(tmp_path)
    assert "| 448x448 | refine | 3 | 12.00 | 45.0 | 1.20 | 1.50 |" in text
    with pytest.raises(SystemExit, match="WIDTHxHEIGHT"):
        gpu_check.parse_size("1920by1080")
