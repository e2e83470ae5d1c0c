"""Refine-IQA through pyiqa's own interface: the same numbers as `Scorer`, beside a built-in pyiqa metric."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

pyiqa = pytest.importorskip("pyiqa")

from refine_iqa import pyiqa_metric  # noqa: E402  (the import registers the metric)
from refine_iqa.inference import Scorer  # noqa: E402
from refine_iqa.io_utils import save_image  # noqa: E402


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Three PNGs of one size (a tensor batch) and one of another size (scored by path)."""
    out = tmp_path_factory.mktemp("pyiqa_images")
    rng = np.random.default_rng(7)
    paths = []
    for i, (h, w) in enumerate([(64, 80), (64, 80), (64, 80), (120, 90)]):
        base = rng.integers(0, 256, (1, 1, 3)) * np.ones((h, w, 3))
        img = np.clip(base + rng.normal(0, 20 * i + 1, (h, w, 3)), 0, 255).astype(np.uint8)
        paths.append(out / f"img{i}.png")
        save_image(paths[-1], img)
    return paths


@pytest.fixture(scope="module")
def metric(tiny_model_dir):
    torch.set_num_threads(1)
    return pyiqa.create_metric("refine_iqa", pretrained_model_path=str(tiny_model_dir), device="cpu")


def _as_tensor(path) -> torch.Tensor:
    from refine_iqa.io_utils import load_rgb

    return torch.from_numpy(load_rgb(path)).permute(2, 0, 1).float() / 255.0


def test_metric_properties_like_pyiqa_own(metric):
    assert "refine_iqa" in pyiqa.list_models(metric_mode="NR")
    assert metric.lower_better is False
    assert metric.score_range == "0, 5"
    assert metric.metric_mode == "NR"
    assert isinstance(metric.net, pyiqa_metric.RefineIQA)


def test_same_numbers_as_scorer_next_to_piqe(metric, tiny_model_dir, images):
    """One loop over two pyiqa metrics (a built-in offline one and ours), then the same images through Scorer."""
    piqe = pyiqa.create_metric("piqe", device="cpu")
    by_path = {"piqe": [], "refine_iqa": []}
    for path in images:
        for name, m in (("piqe", piqe), ("refine_iqa", metric)):
            s = m(str(path))  # pyiqa reads the file itself
            assert s.dtype == torch.float32 and s.numel() == 1
            by_path[name].append(float(s.flatten()[0]))
    batch = torch.stack([_as_tensor(p) for p in images[:3]])  # (3, 3, 64, 80) in [0, 1]
    by_tensor = metric(batch)
    assert by_tensor.shape == (3,) and by_tensor.dtype == torch.float32

    expected = [r["score"] for r in Scorer(tiny_model_dir).score(images)]
    # Identical, not close: pyiqa's float32 tensor holds exactly float32(Scorer's score).
    assert torch.equal(torch.tensor(by_path["refine_iqa"]), torch.tensor(expected, dtype=torch.float32))
    assert torch.equal(by_tensor, torch.tensor(expected[:3], dtype=torch.float32))
    assert all(0.5 <= s <= 4.5 for s in expected)  # Eq. 8's range, inside the stated 0, 5
    assert len(set(expected)) > 1  # the images really differ for the model (else the test proves little)
    assert all(math.isfinite(v) for v in by_path["piqe"]) and len(set(by_path["piqe"])) > 1


def test_think_and_numeric_options_reach_the_scorer(tiny_model_dir, images):
    m = pyiqa.create_metric("refine_iqa", pretrained_model_path=str(tiny_model_dir), device="cpu",
                            think=True, mode="numeric", max_new_tokens=12)
    assert m.net.scorer.think is True and m.net.scorer.mode == "numeric"
    x = torch.stack([_as_tensor(p) for p in images[:2]])
    got = m(x).tolist()
    want = [r["score"] for r in Scorer(tiny_model_dir, think=True, mode="numeric", max_new_tokens=12).score(
        [p for p in images[:2]])]
    # An unparsable written number is NaN in pyiqa's tensor (None in Scorer's records), never a made-up score.
    assert [None if math.isnan(v) else v for v in got] == want
    assert all("interpretation" in r for r in m.net.last_results)


def test_clear_errors(tiny_model_dir):
    with pytest.raises(ValueError, match="pretrained_model_path"):
        pyiqa.create_metric("refine_iqa", device="cpu")
    with pytest.raises(FileNotFoundError, match="not found"):
        pyiqa.create_metric("refine_iqa", pretrained_model_path=str(tiny_model_dir / "missing"), device="cpu")
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        pyiqa_metric.tensor_to_images(torch.zeros(3, 8, 8))


def test_tensor_conversion_is_exact_for_8bit_images():
    u8 = np.random.default_rng(0).integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    x = torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 255.0
    back = pyiqa_metric.tensor_to_images(x)
    assert all(np.array_equal(a, b) for a, b in zip(back, u8))
    # Other floats go to the NEAREST 8-bit level (hand-worked: 0.4 of a step rounds down, 0.6 up).
    k = torch.tensor([0.0, 10.0, 200.0, 254.0])
    near = torch.stack([(k + 0.4) / 255, (k + 0.6) / 255, k / 255]).reshape(1, 3, 1, 4)
    got = pyiqa_metric.tensor_to_images(near)[0][0]  # (4, 3): pixel, channel
    assert got[:, 0].tolist() == [0, 10, 200, 254] and got[:, 1].tolist() == [1, 11, 201, 255]
    assert got[:, 2].tolist() == [0, 10, 200, 254]
    gray = pyiqa_metric.tensor_to_images(x[:, :1])
    assert gray[0].shape == (5, 7, 3) and np.array_equal(gray[0][..., 2], u8[0][..., 0])


def test_import_refine_iqa_registers_when_pyiqa_is_loaded():
    import importlib

    import refine_iqa
    from pyiqa.default_model_configs import DEFAULT_CONFIGS

    del DEFAULT_CONFIGS["refine_iqa"]
    importlib.reload(refine_iqa)  # what `import refine_iqa` does after `import pyiqa`
    assert DEFAULT_CONFIGS["refine_iqa"]["lower_better"] is False
