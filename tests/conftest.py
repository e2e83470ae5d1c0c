"""Shared fixtures: the embedded tiny model (built once per session) and small generated image sets."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    from refine_iqa.model.build_tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny", seed=0)


@pytest.fixture(scope="session")
def tiny(tiny_model_dir):
    """(model, processor) loaded through the project's loader; tests must not train this shared copy."""
    import torch

    from refine_iqa.model.loading import load_model_and_processor

    torch.set_num_threads(1)
    return load_model_and_processor(tiny_model_dir)


@pytest.fixture(scope="session")
def brightness_records(tmp_path_factory):
    """Images whose score is their brightness (the easy learnable signal), as scoring records."""
    from refine_iqa.data.scoring_set import build_brightness_set
    from refine_iqa.io_utils import read_jsonl

    out = tmp_path_factory.mktemp("brightness")
    build_brightness_set(out, n_train=48, n_test=16, seed=0, size=112)
    return read_jsonl(out / "scoring_train.jsonl"), read_jsonl(out / "scoring_test.jsonl")


def rgb(seed: int = 0, size: int = 112) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
