"""The one place models are loaded: `from_pretrained(<local folder>)`, for the tiny and the 7B model alike."""

from __future__ import annotations

import os
from pathlib import Path

_DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


class ModelFolderError(FileNotFoundError):
    pass


def check_model_folder(path: str | Path, setting: str = "model.path") -> Path:
    path = Path(path)
    if not path.is_dir():
        raise ModelFolderError(f"{setting}: model folder '{path}' not found; set {setting} to a local Qwen2.5-VL folder")
    if not (path / "config.json").exists():
        raise ModelFolderError(f"{setting}: '{path}' has no config.json; point {setting} at a Hugging Face model folder")
    return path


def load_processor(path: str | Path, *, min_pixels: int | None = None, max_pixels: int | None = None):
    from transformers import AutoProcessor

    path = check_model_folder(path)
    processor = AutoProcessor.from_pretrained(str(path))
    # transformers 5 keeps Qwen2-VL's pixel bounds in size={"shortest_edge": min, "longest_edge": max}.
    size = dict(processor.image_processor.size)
    if min_pixels is not None:
        size["shortest_edge"] = min_pixels
    if max_pixels is not None:
        size["longest_edge"] = max_pixels
    processor.image_processor.size = size
    # Generation batches are left-padded so every prompt ends at the same position.
    processor.tokenizer.padding_side = "left"
    check_digit_tokens(processor.tokenizer, path)
    return processor


def check_digit_tokens(tokenizer, where) -> None:
    """Eq. 8 and the PD reward read the probability of single digit tokens ("0".."4" for the integer part,
    "0".."9" for the tenths): every digit must be one token of its own, or those probabilities mean nothing."""
    for d in "0123456789":
        ids = tokenizer(d, add_special_tokens=False)["input_ids"]
        if len(ids) != 1 or tokenizer.decode(ids) != d:
            raise ModelFolderError(
                f"{where}: the tokenizer encodes the digit {d!r} as {ids}, not as one token of its own; the "
                "probability score (Eq. 8) and the PD reward need a tokenizer that splits every digit (Qwen2.5-VL's does)")


def local_device(device: str = "cpu") -> str:
    """This process's own device: `cuda` means cuda:LOCAL_RANK (each process of `accelerate launch` drives one
    GPU; the launcher sets LOCAL_RANK), an explicit `cuda:N` or `cpu` is kept."""
    if device == "cuda":
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device


def load_model(path: str | Path, *, dtype: str = "float32", attn_implementation: str = "sdpa", device: str = "cpu"):
    """Load onto this process's own device. Under DeepSpeed ZeRO-3 the model is left where `from_pretrained`
    put it: partitioned across processes at load, provided the DeepSpeed config was alive before this call
    (create the GRPOConfig first: `rl.grpo.grpo_config`); the Trainer places it."""
    import torch
    from transformers import AutoModelForImageTextToText
    from transformers.integrations import is_deepspeed_zero3_enabled

    path = check_model_folder(path)
    model = AutoModelForImageTextToText.from_pretrained(
        str(path), dtype=getattr(torch, _DTYPES[dtype]), attn_implementation=attn_implementation
    )
    if is_deepspeed_zero3_enabled():
        return model
    target = local_device(device)
    if target.startswith("cuda"):
        torch.cuda.set_device(torch.device(target))
    return model.to(target)


def load_model_and_processor(path: str | Path, *, dtype: str = "float32", attn_implementation: str = "sdpa",
                             device: str = "cpu", min_pixels: int | None = None, max_pixels: int | None = None):
    return (
        load_model(path, dtype=dtype, attn_implementation=attn_implementation, device=device),
        load_processor(path, min_pixels=min_pixels, max_pixels=max_pixels),
    )


def save_model_and_processor(model, processor, out_dir: str | Path) -> Path:
    """Save into a temporary sibling folder, then swap it in (never a half-written checkpoint)."""
    import shutil

    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    processor.save_pretrained(tmp)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    return out_dir
