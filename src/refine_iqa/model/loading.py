"""The one place models are loaded: `from_pretrained(<local folder>)`, for the tiny and the 7B model alike."""

from __future__ import annotations

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
    return processor


def load_model(path: str | Path, *, dtype: str = "float32", attn_implementation: str = "sdpa", device: str = "cpu"):
    import torch
    from transformers import AutoModelForImageTextToText

    path = check_model_folder(path)
    model = AutoModelForImageTextToText.from_pretrained(
        str(path), dtype=getattr(torch, _DTYPES[dtype]), attn_implementation=attn_implementation
    )
    return model.to(device)


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
