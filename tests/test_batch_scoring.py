"""Batched scoring equals one-at-a-time scoring when the images in a batch differ in size (left padding)."""

from __future__ import annotations

import numpy as np
import pytest

from refine_iqa.inference import Scorer
from refine_iqa.io_utils import save_image

# (height, width): 4, 16, 8 and 9 image tokens with the tiny processor (28 px per merged token).
SIZES = [(56, 56), (112, 112), (56, 112), (84, 84), (200, 60)]


@pytest.fixture(scope="module")
def mixed_images(tmp_path_factory):
    out = tmp_path_factory.mktemp("mixed")
    rng = np.random.default_rng(3)
    paths = []
    for i, (h, w) in enumerate(SIZES):
        paths.append(out / f"m{i}.png")
        save_image(paths[-1], rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    return paths


def test_mixed_sizes_batch_equals_one_at_a_time(tiny_model_dir, mixed_images):
    from PIL import Image

    from refine_iqa import prompts

    batched = Scorer(tiny_model_dir, batch_size=len(mixed_images))
    single = Scorer(tiny_model_dir, batch_size=1)
    # The batch really is left-padded by different amounts (else it would test nothing).
    proc = batched.processor
    text = proc.apply_chat_template(prompts.build_messages(prompts.score_prompt(think=False), 1),
                                    add_generation_prompt=True, tokenize=False)
    proc.tokenizer.padding_side = "left"
    enc = proc(text=[text] * len(mixed_images), images=[[Image.open(p).convert("RGB")] for p in mixed_images],
               padding=True, return_tensors="pt")
    pads = (enc["attention_mask"] == 0).sum(dim=1).tolist()
    assert len(set(pads)) >= 4 and min(pads) == 0
    assert (enc["attention_mask"][:, -1] == 1).all()  # left padding: every row ends on a real token

    a = [r["score"] for r in batched.score(mixed_images)]
    b = [r["score"] for r in single.score(mixed_images)]
    assert None not in a
    # Scores are rounded to 4 decimals; a float32 difference can only move one across a rounding edge.
    assert a == pytest.approx(b, abs=1.01e-4)
    assert len(set(b)) > 1
