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


# --- learnability recipes: started in the background when the session starts ---------------------------------
# The learnability tests each train for minutes on one thread. Run inline they would add their full time
# to the suite; started at collection time in ONE background process (one recipe after another, one thread),
# they use the second core while the rest of the suite runs, and each test only waits for its result.
# The recipe, its seed and its numbers are exactly those of an inline run (tests/learnability.py).
LEARNABILITY_TESTS = {"test_learnability_stage1.py": "stage1", "test_learnability_stage2.py": "stage2",
                      "test_learnability_think.py": "stage2_think", "test_learnability_grounding.py": "grounding"}
LEARNABILITY_SEED = 0
_background: dict = {}


def pytest_collection_modifyitems(session, config, items):
    """The learnability tests last: they only wait for the background run, which by then has had the whole suite
    to train beside it (at the lowest priority, tests/learnability_background.py)."""
    items.sort(key=lambda item: item.path.name in LEARNABILITY_TESTS)  # stable: the rest keep their order


def pytest_collection_finish(session):
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    if session.config.option.collectonly:
        return
    recipes = [r for f, r in LEARNABILITY_TESTS.items() if any(item.path.name == f for item in session.items)]
    if not recipes:
        return
    out = Path(tempfile.mkdtemp(prefix="learnability-"))
    log = open(out / "log.txt", "w")
    cmd = [sys.executable, str(Path(__file__).parent / "learnability_background.py"), str(out),
           str(LEARNABILITY_SEED), *recipes]
    _background.update(dir=out, log=log, proc=subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                                               stdin=subprocess.DEVNULL, start_new_session=True))


def pytest_sessionfinish(session, exitstatus):
    import shutil

    proc = _background.get("proc")
    if proc is None:
        return
    if proc.poll() is None:
        proc.kill()  # a deselected or interrupted run: do not leave training behind
        proc.wait()
    _background["log"].close()
    shutil.rmtree(_background["dir"], ignore_errors=True)


def learnability_result(recipe: str, timeout_s: float = 3600) -> dict:
    """The result of `recipe` (seed LEARNABILITY_SEED) from the background run; waits for it."""
    import json
    import time

    if "dir" not in _background:
        raise RuntimeError("the learnability background run was not started (run the test through pytest)")
    path = _background["dir"] / f"{recipe}.json"
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        proc = _background["proc"]
        if proc.poll() is not None and not path.exists():
            tail = (_background["dir"] / "log.txt").read_text()[-4000:]
            raise RuntimeError(f"the background learnability run ended (exit {proc.returncode}) without a result "
                               f"for {recipe}; its log ends:\n{tail}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no result for {recipe} after {timeout_s:.0f} s")
        time.sleep(2)
    result = json.loads(path.read_text())
    if "error" in result:
        raise RuntimeError(f"the {recipe} recipe raised in the background run:\n{result['error']}")
    return result


@pytest.fixture
def learnability_run():
    """learnability_run(recipe) -> the recipe's result dict from the background run (seed LEARNABILITY_SEED)."""
    return learnability_result
