"""Images decoded per batch at the processor's size: exact pixels, bounded memory, one image-processor call
per batch, same scores whatever the batch composition."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from refine_iqa import images as I
from refine_iqa import prompts
from refine_iqa.boxes import resized_size_from_processor
from refine_iqa.generation import encode_texts, generate, score_samples
from refine_iqa.io_utils import load_rgb


def _smooth(w: int, h: int, seed: int = 0) -> np.ndarray:
    """A photo-like image (smooth gradients plus mild noise) that JPEG compresses to a realistic size."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(h // 100, 3), max(w // 100, 3), 3), dtype=np.uint8)
    big = np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BILINEAR), dtype=np.int16)
    return np.clip(big + rng.integers(-6, 7, big.shape), 0, 255).astype(np.uint8)


def _score_sample(path) -> dict:
    return {"prompt": prompts.build_messages(prompts.score_prompt(think=False), 1), "image_paths": [str(path)],
            "item_id": str(path), "mos_scaled": 2.0, "think": False}


@pytest.fixture(scope="module")
def full_size_dir(tmp_path_factory):
    """12 full-size (4000x3000) JPEGs: one encoded, copied under distinct names (each is decoded on its own)."""
    d = tmp_path_factory.mktemp("full")
    Image.fromarray(_smooth(4000, 3000)).save(d / "p00.jpg", quality=90)
    for i in range(1, 12):
        shutil.copyfile(d / "p00.jpg", d / f"p{i:02d}.jpg")
    return d


@pytest.mark.parametrize("wh", [(1000, 700), (333, 517), (56, 40)])
@pytest.mark.parametrize("max_pixels", [12544, 2073600])
def test_shrunk_image_gives_the_processors_exact_pixel_values(tiny_model_dir, tmp_path, wh, max_pixels):
    from refine_iqa.model.loading import load_processor

    processor = load_processor(tiny_model_dir, max_pixels=max_pixels)
    Image.fromarray(_smooth(*wh, seed=wh[0])).save(tmp_path / "a.png")
    small = I.load_for_model(tmp_path / "a.png", processor)
    assert small.size == resized_size_from_processor(processor, *wh)  # boxes.py agrees with what the model sees
    full = processor.image_processor(images=[Image.open(tmp_path / "a.png")], return_tensors="pt")
    mine = processor.image_processor(images=[small], return_tensors="pt")
    assert torch.equal(mine["image_grid_thw"], full["image_grid_thw"])
    assert torch.equal(mine["pixel_values"], full["pixel_values"])


def test_image_size_reads_the_header_with_exif_rotation(tmp_path):
    im = Image.fromarray(_smooth(120, 80))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees: width and height swap when decoded
    im.save(tmp_path / "rot.jpg", exif=exif)
    h, w = load_rgb(tmp_path / "rot.jpg").shape[:2]
    assert I.image_size(tmp_path / "rot.jpg") == (w, h) == (80, 120)


def test_encode_texts_equals_a_full_processor_call(tiny):
    _, processor = tiny
    imgs = [[Image.fromarray(_smooth(112, 84, 1))], [Image.fromarray(_smooth(60, 150, 2)), Image.fromarray(_smooth(90, 90, 3))]]
    msgs = [prompts.build_messages("rate it", 1), prompts.build_messages("compare", 2)]
    texts = [processor.apply_chat_template(m, add_generation_prompt=True, tokenize=False) + "[answer]Score: " for m in msgs]
    processor.tokenizer.padding_side = "left"
    want = processor(text=texts, images=imgs, padding=True, return_tensors="pt")
    vision = processor.image_processor(images=[i for row in imgs for i in row], return_tensors="pt")
    got = encode_texts(processor, texts, dict(vision))
    assert set(got) == set(want)
    for k in want:
        assert torch.equal(got[k], want[k]), k


def test_think_mode_runs_the_image_processor_once_per_batch(tiny, full_size_dir, monkeypatch):
    model, processor = tiny
    calls = []
    cls = type(processor.image_processor)
    real = cls.__call__
    monkeypatch.setattr(cls, "__call__", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    samples = [{**_score_sample(full_size_dir / f"p{i:02d}.jpg"),
                "prompt": prompts.build_messages(prompts.score_prompt(think=True), 1)} for i in range(4)]
    outs = score_samples(model, processor, samples, think=True, max_new_tokens=6, batch_size=2)
    assert len(outs) == 4 and all(o["prob"] is not None for o in outs)
    assert len(calls) == 2  # 2 batches; generation and the probability pass share pixel_values


def test_mixed_image_sizes_in_a_batch_score_as_one_at_a_time(tiny, tmp_path):
    model, processor = tiny
    sizes = [(112, 84), (40, 200), (300, 300), (90, 60), (200, 120)]
    for k, wh in enumerate(sizes):
        Image.fromarray(_smooth(*wh, seed=k)).save(tmp_path / f"m{k}.png")
    samples = [_score_sample(tmp_path / f"m{k}.png") for k in range(len(sizes))]
    together = score_samples(model, processor, samples, think=False, max_new_tokens=6, batch_size=5)
    alone = score_samples(model, processor, samples, think=False, max_new_tokens=6, batch_size=1, prefetch=0)
    assert [o["completion"] for o in together] == [o["completion"] for o in alone]
    assert [o["prob"] for o in together] == pytest.approx([o["prob"] for o in alone], abs=1e-5)


def _peak_alive_while_scoring(model, processor, paths) -> int:
    I.reset_peak()
    outs = score_samples(model, processor, [_score_sample(p) for p in paths], think=False, answers=False,
                         max_new_tokens=4, batch_size=2)
    assert all(o["prob"] is not None for o in outs)
    return I.peak_live_images()


def test_scoring_memory_does_not_grow_with_the_number_of_images(tiny, full_size_dir):
    """Decoded images alive at once, N = 3 vs 4N = 12 full-size photos: at most the batch being built and the
    one prefetched (2 x batch size 2). Before: every image of the set was decoded up front (3 vs 12)."""
    model, processor = tiny
    paths = sorted(full_size_dir.glob("*.jpg"))
    base = I.live_images()  # images other tests still reference
    small = _peak_alive_while_scoring(model, processor, paths[:3]) - base
    large = _peak_alive_while_scoring(model, processor, paths) - base
    assert small <= 3 and large <= 4


def test_training_dataset_holds_paths_and_decodes_one_batch(tiny, full_size_dir, monkeypatch):
    from refine_iqa.rl.grpo import lazy_dataset
    from refine_iqa.rl.samples import build_stage2

    _, processor = tiny
    paths = sorted(full_size_dir.glob("*.jpg"))
    decoded = []
    real = I.load_rgb
    monkeypatch.setattr(I, "load_rgb", lambda p, **k: decoded.append(str(p)) or real(p, **k))
    for n in (3, 12):
        base = I.live_images()
        I.reset_peak()
        records = [{"id": f"r{i}", "image_path": str(p), "mos_scaled": 1.0 + i % 3} for i, p in enumerate(paths[:n])]
        ds = lazy_dataset(build_stage2(records, think=False), processor)
        assert decoded == [] and I.peak_live_images() - base == 0  # construction decodes nothing
        # TRL reads a generation batch through __getitems__: G = 4 repeats of 2 prompts
        rows = ds.__getitems__([0, 0, 0, 0, 2, 2, 2, 2])
        assert [r["images"][0].size for r in rows] == [resized_size_from_processor(processor, 4000, 3000)] * 8
        assert decoded == [str(paths[0]), str(paths[2])]  # each file decoded once for its G repeats
        del rows, ds
        assert I.peak_live_images() - base <= 2
        decoded.clear()


def test_unreadable_training_image_is_reported_and_replaced(tiny, tmp_path):
    from refine_iqa.rl.grpo import lazy_dataset
    from refine_iqa.rl.samples import build_stage2

    _, processor = tiny
    Image.fromarray(_smooth(64, 64)).save(tmp_path / "good.png")
    Image.fromarray(_smooth(64, 64)).save(tmp_path / "cut.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "cut.png").read_bytes()[:200])  # header fine, body truncated
    recs = [{"id": "a", "image_path": str(tmp_path / "cut.png"), "mos_scaled": 1.0},
            {"id": "b", "image_path": str(tmp_path / "good.png"), "mos_scaled": 3.0}]
    reports = []
    ds = lazy_dataset(build_stage2(recs, think=False), processor, report=reports.append)
    rows = ds.__getitems__([0, 0, 1])
    assert [r["mos_scaled"] for r in rows] == [3.0, 3.0, 3.0]  # the whole row is replaced, answers included
    assert len(reports) == 1 and "cut.png" in reports[0] and "truncated" in reports[0]


def test_perception_eval_decodes_each_file_once_for_its_four_samples(tiny, tmp_path, monkeypatch):
    from refine_iqa.rl.samples import build_stage1_eval

    model, processor = tiny
    items = []
    for k in range(3):
        Image.fromarray(_smooth(96, 80, k)).save(tmp_path / f"ref{k}.png")
        Image.fromarray(_smooth(96, 80, 10 + k)).save(tmp_path / f"dist{k}.png")
        items.append({"id": f"it{k}", "ref_path": str(tmp_path / f"ref{k}.png"), "dist_path": str(tmp_path / f"dist{k}.png"),
                      "width": 96, "height": 80, "objects": ["a", "b"], "object": "a", "box": [0, 0, 40, 40],
                      "family": "blur", "type": "blur.gaussian", "level": 3})
    decoded = []
    real = I.load_rgb
    monkeypatch.setattr(I, "load_rgb", lambda p, **k: decoded.append(str(p)) or real(p, **k))
    samples = build_stage1_eval(items, processor)
    assert decoded == []  # sizes come from the manifest
    generate(model, processor, samples, max_new_tokens=2, batch_size=3)  # an item's 4 samples straddle batches
    assert sorted(decoded) == sorted(str(tmp_path / f"{n}{k}.png") for k in range(3) for n in ("ref", "dist"))
