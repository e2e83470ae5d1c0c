"""Random-weight Qwen2.5-VL models at chosen sizes, and the Stage-2 step runner the GPU check and the CPU
rehearsal share. Importable (tests use the builder on a scaled-down architecture on the CPU).

The tokenizer and processor are the embedded tiny model's (no real tokenizer can be downloaded); the model's
vocabulary is the real one (151,936 rows), so every output-head cost is paper-sized. Tokens above the
tokenizer's ~600 ids decode to nothing: random-weight rollouts are empty text, which is what a random model
writes anyway; the timing and memory figures are the point.
"""

from __future__ import annotations

import json
import math
import os
import resource
import time
from pathlib import Path

QWEN_VOCAB = 151936

# Qwen2.5-VL-3B-Instruct's published config.json dimensions.
QWEN25_VL_3B = {
    "text": {"hidden_size": 2048, "num_hidden_layers": 36, "num_attention_heads": 16, "num_key_value_heads": 2,
             "intermediate_size": 11008, "vocab_size": QWEN_VOCAB, "tie_word_embeddings": True},
    "vision": {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16, "out_hidden_size": 2048,
               "fullatt_block_indexes": [7, 15, 23, 31], "window_size": 112},
}
# Same structure, narrow and shallow: a few steps fit on 2 CPU cores; the vocabulary stays real.
NARROW = {
    "text": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
             "intermediate_size": 128, "vocab_size": QWEN_VOCAB, "tie_word_embeddings": False},
    "vision": {"depth": 2, "hidden_size": 64, "intermediate_size": 128, "num_heads": 2, "out_hidden_size": 64,
               "fullatt_block_indexes": [1], "window_size": 112},
}


def qwen_config(arch: dict, tokenizer):
    from transformers import Qwen2_5_VLConfig

    from refine_iqa.model.build_tiny import SPECIAL_TOKENS

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    t, v = arch["text"], arch["vision"]
    half = t["hidden_size"] // t["num_attention_heads"] // 2  # mrope sections sum to head_dim / 2
    mrope = [half - 2 * (half * 3 // 8), half * 3 // 8, half * 3 // 8]  # 3B: [16, 24, 24]
    return Qwen2_5_VLConfig(
        text_config={**t, "max_position_embeddings": 128000, "rms_norm_eps": 1e-6,
                     "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": mrope},
                     "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
                     "pad_token_id": ids["<|endoftext|>"]},
        vision_config={**v, "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "in_chans": 3},
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=t["tie_word_embeddings"],
    )


def count_parameters(arch: dict) -> int:
    """Parameters of the architecture, counted on the meta device (nothing allocated)."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    from refine_iqa.model.build_tiny import build_tokenizer

    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration(qwen_config(arch, build_tokenizer()))
    return sum(p.numel() for p in model.parameters())


def build_model(out_dir, arch: dict, *, device: str = "cpu", dtype: str = "bfloat16", min_pixels: int = 3136,
                max_pixels: int = 1920 * 1080, seed: int = 0) -> Path:
    """Random weights built directly ON `device` (a 3B model takes minutes on a CPU), saved as a model folder."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    from refine_iqa.model.build_tiny import CHAT_TEMPLATE, build_tokenizer

    out_dir = Path(out_dir)
    tokenizer = build_tokenizer()
    processor = Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(min_pixels=min_pixels, max_pixels=max_pixels),
                                    tokenizer=tokenizer, video_processor=Qwen2VLVideoProcessor(), chat_template=CHAT_TEMPLATE)
    torch.manual_seed(seed)
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration(qwen_config(arch, tokenizer)).to(getattr(torch, dtype))
    gc = model.generation_config
    gc.eos_token_id, gc.pad_token_id, gc.bos_token_id = tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>", "<|endoftext|>"])
    from refine_iqa.model.loading import save_model_and_processor

    return save_model_and_processor(model, processor, out_dir)  # atomic: temp folder, then swap


def photos(out_dir, n: int, width: int, height: int, seed: int = 0) -> list[Path]:
    """`n` JPEG photos of width x height (smooth gradients plus noise: a realistic JPEG size), cached on disk."""
    import numpy as np
    from PIL import Image

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = out_dir / f"photo-{width}x{height}-{seed}-{i}.jpg"
        if not p.exists():
            rng = np.random.default_rng(seed * 1000 + i)
            y, x = np.mgrid[0:height, 0:width].astype(np.float32)
            base = np.stack([x / width, y / height, (x + y) / (width + height)], -1) * 200 + rng.uniform(0, 40, 3)
            img = np.clip(base + rng.normal(0, 12, (height, width, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(p.with_suffix(".tmp.jpg"), quality=90)
            p.with_suffix(".tmp.jpg").rename(p)
        paths.append(p)
    return paths


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_stage2_steps(model_dir, image_paths: list, settings: dict, *, trainer: str = "refine", device: str = "cpu",
                     dtype: str = "bfloat16", max_pixels: int = 1920 * 1080, out_json=None) -> dict:
    """A few Stage-2 GRPO steps: `refine` = the project's path (args before load, PD + PM), `plain` = TRL's
    GRPOTrainer with the same settings, answer + format rewards and its default advantage. Returns figures."""
    import torch

    from refine_iqa.model.loading import load_model, load_processor
    from refine_iqa.rewards import get_stage2_reward_funcs
    from refine_iqa.rl.grpo import run_grpo, training_args
    from refine_iqa.rl.pd import PDReward
    from refine_iqa.rl.samples import build_stage2

    args = training_args(settings, seed=0, device=device)  # before the model: ZeRO-3 partitions at load
    t0 = time.perf_counter()
    model = load_model(model_dir, dtype=dtype, device=device)
    processor = load_processor(model_dir, max_pixels=max_pixels)
    load_s = time.perf_counter() - t0
    records = [{"id": f"img{i}", "image_path": str(p), "mos_scaled": round(0.5 + 4 * (i % 9) / 9, 1), "mos": 50.0}
               for i, p in enumerate(image_paths)]
    samples = build_stage2(records, think=True)
    funcs = get_stage2_reward_funcs("paper", mode="think", eps=0.5)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    t1 = time.perf_counter()
    curve = Path(out_json or "stage2_curve.json").with_suffix(".curve.jsonl")
    if trainer == "refine":
        pd = PDReward(processor, tags="paper")
        tr = run_grpo(model, processor, samples, funcs + [pd], settings, seed=0, curve_path=curve, device=device,
                      reward_weights=[1.0, 1.0, 1.0], pm={"delta": 0.02, "sigma_min": 0.1, "eps": 1e-4},
                      correct_from=("answer_reward", "format_reward"), bind=[pd], args=args)
    else:
        from datasets import Dataset
        from trl import GRPOTrainer

        args.output_dir = str(curve.parent / "plain-trl")
        tr = GRPOTrainer(model=model, reward_funcs=funcs, args=args, processing_class=processor,
                         train_dataset=Dataset.from_list(samples))
        tr.train()
    total_s = time.perf_counter() - t1
    step_times = [e["step_time"] for e in tr.state.log_history if "step_time" in e]
    res = {"trainer": trainer, "rank": int(os.environ.get("RANK", "0")), "device": device, "images": len(image_paths),
           "load_s": round(load_s, 2), "train_s": round(total_s, 2), "steps": len(step_times),
           "step_time_s": step_times, "median_step_after_first_s": _median(step_times[1:] or step_times),
           "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None,
           "peak_rss_mib": round(peak_rss_mib(), 1)}
    if out_json is not None:
        Path(out_json).parent.mkdir(parents=True, exist_ok=True)
        Path(out_json).write_text(json.dumps(res, indent=1))
    return res


def _median(xs):
    xs = sorted(xs)
    if not xs:
        return math.nan
    return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2
