"""Object backends and the paper's object rules; the VLM + detector path on tiny random models built here."""

import string

import numpy as np
import pytest

from refine_iqa.data.objects import (
    OBJECT_LISTING_PROMPT,
    AnnotationObjects,
    ObjectRules,
    VlmObjects,
    VlmSettings,
    _match_phrase,
    apply_object_rules,
    box_iou,
    make_object_backend,
    normalise_name,
    parse_object_list,
    pixel_box,
)
from refine_iqa.data.scenes import generate_scene
from refine_iqa.data.sources import SourceItem

# ------------------------------------------------------------------------------------------------ geometry


def test_box_iou_by_hand():
    assert box_iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(50 / 150)
    assert box_iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0
    assert box_iou([0, 0, 10, 10], [10, 0, 20, 10]) == 0.0  # touching edges share no pixel
    assert box_iou([0, 0, 4, 4], [1, 1, 3, 3]) == pytest.approx(4 / 16)
    assert box_iou([5, 5, 5, 9], [5, 5, 5, 9]) == 0.0  # empty boxes


def test_pixel_box_rounds_outwards_and_clips():
    assert pixel_box(10.5, 20.25, 40.5, 60.75, 100, 80) == [10, 20, 41, 61]
    assert pixel_box(-5, -3, 200, 90, 100, 80) == [0, 0, 100, 80]
    assert pixel_box(10.0000001, 5, 19.9999999, 9, 100, 80) == [10, 5, 20, 9]
    assert pixel_box(30, 5, 30, 9, 100, 80) is None
    assert pixel_box(120, 5, 130, 9, 100, 80) is None


def test_normalise_name():
    assert normalise_name('  "Red   Car". ') == "red car"
    assert normalise_name("\u27e8dog\u27e9") == "dog"
    assert normalise_name("- man") == "man"


# ------------------------------------------------------------------------------------------------ rules


def _o(name, box):
    return {"name": name, "box": box}


def test_rules_keep_good_objects_in_order():
    cands = [_o("dog", [0, 0, 30, 30]), _o("Red Car", [50, 50, 90, 90]), _o("man", [0, 60, 20, 100])]
    r = apply_object_rules(cands, 100, 100, ObjectRules())
    assert r.ok and r.objects == [_o("dog", [0, 0, 30, 30]), _o("red car", [50, 50, 90, 90]), _o("man", [0, 60, 20, 100])]


def test_rules_box_size_limits():
    base = [_o("cat", [0, 0, 10, 10])]
    rules = ObjectRules(min_objects=2, min_box_side=8, max_box_frac=0.9, max_iou=1.0)
    # exactly 90% of a 100x100 image is allowed, above is dropped
    assert apply_object_rules(base + [_o("sofa", [0, 0, 100, 90])], 100, 100, rules).ok
    r = apply_object_rules(base + [_o("sofa", [0, 0, 100, 91])], 100, 100, rules)
    assert r.reason == "too_few_objects" and "sofa: box covers 91% of the image" in r.detail
    # a side of 8 px is allowed, 7 is dropped
    assert apply_object_rules(base + [_o("cup", [50, 50, 58, 90])], 100, 100, rules).ok
    r = apply_object_rules(base + [_o("cup", [50, 50, 57, 90])], 100, 100, rules)
    assert not r.ok and "cup: box side 7 < 8" in r.detail
    # a box outside the image is no box
    r = apply_object_rules(base + [_o("cup", [120, 0, 130, 10])], 100, 100, rules)
    assert not r.ok and "cup: no box inside the image" in r.detail


def test_rules_overlap_threshold_by_hand():
    a, b = _o("dog", [0, 0, 10, 10]), _o("cat", [5, 0, 15, 10])  # IoU 1/3
    third = _o("man", [50, 50, 60, 60])
    r = apply_object_rules([a, b, third], 100, 100, ObjectRules(max_iou=0.3, min_box_side=1))
    assert [o["name"] for o in r.objects] == ["dog", "man"]
    assert "cat: IoU 0.33 > 0.3 with a kept object" in r.raw["dropped"]
    r = apply_object_rules([a, b, third], 100, 100, ObjectRules(max_iou=0.34, min_box_side=1))
    assert [o["name"] for o in r.objects] == ["dog", "cat", "man"]


def test_rules_names():
    boxes = [[0, 0, 20, 20], [30, 0, 50, 20], [60, 0, 80, 20], [0, 30, 20, 50], [30, 30, 50, 50], [60, 30, 80, 50]]
    names = ["sky", "big red car", "cat/dog", "", "dog", "man"]
    r = apply_object_rules([_o(n, b) for n, b in zip(names, boxes)], 100, 100, ObjectRules())
    assert [o["name"] for o in r.objects] == ["dog", "man"]
    assert r.raw["dropped"] == ["sky: background", "big red car: more than 2 words",
                                "cat/dog: '/' separates answer fields in the prompts", "empty name"]


def test_rules_ambiguous_names_and_max_objects():
    cands = [_o("dog", [0, 0, 20, 20]), _o("Dog ", [40, 40, 60, 60]), _o("cat", [70, 0, 90, 20]),
             _o("man", [0, 70, 20, 90]), _o("cup", [70, 70, 90, 90]), _o("hat", [40, 0, 60, 20])]
    r = apply_object_rules(cands, 100, 100, ObjectRules())
    assert [o["name"] for o in r.objects] == ["cat", "man", "cup"]  # dog is ambiguous, hat is the 4th
    assert "dog: ambiguous (2 boxes)" in r.raw["dropped"] and "hat: beyond max_objects=3" in r.raw["dropped"]
    r = apply_object_rules(cands, 100, 100, ObjectRules(drop_ambiguous=False, max_objects=2))
    assert r.objects == [_o("dog", [0, 0, 20, 20]), _o("cat", [70, 0, 90, 20])]


def test_rules_too_few_and_settings_checked():
    r = apply_object_rules([_o("dog", [0, 0, 20, 20])], 100, 100, ObjectRules())
    assert not r.ok and r.objects == [] and r.detail.startswith("kept 1 < 2 (dog)")
    for bad in [dict(min_objects=0), dict(min_objects=4, max_objects=3), dict(max_iou=1.5), dict(max_box_frac=0),
                dict(min_box_side=0)]:
        with pytest.raises(ValueError, match="objects"):
            ObjectRules(**bad)


# ------------------------------------------------------------------------------------------------ listing answers


@pytest.mark.parametrize(
    "text, expected",
    [
        ("dog|red car|man", ["dog", "red car", "man"]),
        ("  Dog | Red Car  ", ["dog", "red car"]),
        ("NAN", None),
        ("nan.", None),
        ("[answer]cat|dog[/answer]", ["cat", "dog"]),
        ("<answer>\ncat | dog\n</answer>", ["cat", "dog"]),
        ("Here are the subjects:\n\u27e8cat|dog\u27e9", ["cat", "dog"]),
        ("```\n1. cat | 2. dog\n```", ["cat", "dog"]),
        ("cat|Cat|dog|", ["cat", "dog"]),
        ("cat", ["cat"]),
        ("cat|NAN", ["cat"]),
        ("", []),
        (None, []),
    ],
)
def test_parse_object_list(text, expected):
    assert parse_object_list(text) == expected


def test_prompt_is_the_papers():
    assert OBJECT_LISTING_PROMPT.startswith("Analyze the image carefully and identify all distinct visual subjects that:")
    assert "separated by a |" in OBJECT_LISTING_PROMPT and OBJECT_LISTING_PROMPT.endswith("output: NAN.")
    assert "(e.g., sky, grass, wall, floor, etc.)" in OBJECT_LISTING_PROMPT


def test_match_grounding_phrase():
    names = ["red car", "car", "dog"]
    assert _match_phrase("red car", names) == "red car"
    assert _match_phrase("car red car", names) == "red car"  # the longest contained name
    assert _match_phrase("DOG.", names) == "dog"
    assert _match_phrase("tree", names) is None


# ------------------------------------------------------------------------------------------------ annotations


def test_annotation_backend_orders_by_area_and_checks_size():
    objs = [_o("cat", [0, 0, 20, 20]), _o("dog", [30, 30, 90, 90]), _o("sky", [0, 0, 100, 10])]
    item = SourceItem("coco-1", "coco", "x.jpg", objs, meta={"width": 100, "height": 100})
    image = np.zeros((100, 100, 3), np.uint8)
    r = AnnotationObjects()(item, image)
    assert r.objects == [_o("dog", [30, 30, 90, 90]), _o("cat", [0, 0, 20, 20])]
    rotated = np.zeros((80, 100, 3), np.uint8)
    assert AnnotationObjects()(item, rotated).reason == "size_mismatch"
    assert AnnotationObjects()(SourceItem("folder-x", "folder", "x.jpg"), image).reason == "no_annotations"


def test_annotation_backend_on_scenes():
    for seed in range(10):
        img, objs = generate_scene(seed)
        r = AnnotationObjects(ObjectRules(max_iou=0.1))(SourceItem("s", "scenes", "s.png", objs), img)
        assert r.ok and sorted(o["name"] for o in r.objects) == sorted(o["name"] for o in objs)


def test_make_backend_errors(tmp_path):
    with pytest.raises(ValueError, match="'annotations' or 'vlm'"):
        make_object_backend("gemini")
    with pytest.raises(ValueError, match="needs objects.vlm"):
        make_object_backend("vlm")
    with pytest.raises(FileNotFoundError, match="objects.vlm: model folder"):
        make_object_backend("vlm", vlm=VlmSettings(str(tmp_path / "none"), str(tmp_path)))


# ------------------------------------------------------------------------------------------------ tiny models


def build_tiny_owlvit(out_dir):
    """A random OWL-ViT with a character-level CLIP tokenizer, saved like a downloaded model folder.

    The box head's last layer is zeroed so every patch predicts its own grid cell (OWL-ViT's box bias):
    boxes then have a known size, which checks the scaling to image pixels.
    """
    import torch
    from transformers import (
        CLIPTokenizer,
        OwlViTConfig,
        OwlViTForObjectDetection,
        OwlViTImageProcessor,
        OwlViTProcessor,
    )

    vocab = {}
    for ch in string.ascii_lowercase + string.digits + string.punctuation:
        vocab[ch] = len(vocab)
        vocab[ch + "</w>"] = len(vocab)
    # OWL-ViT masks a query whose first token id is 0, so the specials go last (as in CLIP's vocabulary).
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=16)
    image_processor = OwlViTImageProcessor(size={"height": 64, "width": 64}, crop_size={"height": 64, "width": 64})
    processor = OwlViTProcessor(image_processor=image_processor, tokenizer=tokenizer)
    config = OwlViTConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=16, bos_token_id=vocab["<|startoftext|>"],
                         eos_token_id=vocab["<|endoftext|>"], pad_token_id=vocab["<|endoftext|>"]),
        vision_config=dict(image_size=64, patch_size=16, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2),
        projection_dim=32,
    )
    torch.manual_seed(0)
    model = OwlViTForObjectDetection(config).eval()
    with torch.no_grad():
        model.box_head.dense2.weight.zero_()
        model.box_head.dense2.bias.zero_()
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    pytest.importorskip("transformers")
    from refine_iqa.model.build_tiny import build_tiny_model

    root = tmp_path_factory.mktemp("models")
    vlm = build_tiny_model(root / "vlm", seed=0)
    det = build_tiny_owlvit(root / "owl")
    return str(vlm), str(det)


@pytest.fixture(scope="module")
def backend(tiny_models):
    return VlmObjects(VlmSettings(*tiny_models, box_threshold=0.0), ObjectRules())


IMAGE_H, IMAGE_W = 112, 100


@pytest.fixture(scope="module")
def image():
    img, _ = generate_scene(5, width=IMAGE_W, height=IMAGE_H)
    return img


def test_vlm_lists_with_the_papers_prompt(backend, image, monkeypatch):
    model, processor = backend._load_vlm()
    seen = {}
    real_template = processor.apply_chat_template

    def spy(messages, **kw):
        seen["messages"] = messages
        return real_template(messages, **kw)

    monkeypatch.setattr(processor, "apply_chat_template", spy)
    names, text = backend.list_objects(image)
    content = seen["messages"][0]["content"]
    assert content[0] == {"type": "image"} and content[1] == {"type": "text", "text": OBJECT_LISTING_PROMPT}
    assert isinstance(text, str) and names == parse_object_list(text)  # random weights: garbage, but parsed
    assert backend._load_vlm()[0] is model  # loaded once, then reused


def _script_answer(backend, monkeypatch, answer):
    """Make the tiny VLM 'answer' `answer`: generate returns the prompt followed by its tokens."""
    import torch

    model, processor = backend._load_vlm()
    ids = processor.tokenizer(answer, add_special_tokens=False)["input_ids"]
    eos = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")

    def generate(input_ids, **kw):
        return torch.cat([input_ids, torch.tensor([ids + [eos]])], dim=1)

    monkeypatch.setattr(model, "generate", generate)


def test_vlm_answer_is_decoded_and_parsed(backend, image, monkeypatch):
    _script_answer(backend, monkeypatch, "red circle|blue square")
    names, text = backend.list_objects(image)
    assert text == "red circle|blue square" and names == ["red circle", "blue square"]
    _script_answer(backend, monkeypatch, "NAN")
    r = backend(None, image)
    assert r.reason == "vlm_nan" and r.raw["vlm_answer"] == "NAN"
    _script_answer(backend, monkeypatch, "dog")
    assert backend(None, image).reason == "too_few_objects"


def test_detector_boxes_are_image_pixels(backend, image):
    dets = backend.locate(image, ["red circle", "blue square"])
    assert dets, "a zero threshold keeps every grid cell"
    for d in dets:
        x1, y1, x2, y2 = d["box"]
        assert d["name"] in ("red circle", "blue square") and all(isinstance(v, int) for v in d["box"])
        assert 0 <= x1 < x2 <= IMAGE_W and 0 <= y1 < y2 <= IMAGE_H
        # a 4x4 grid cell of the 100x112 image is 25x28 (+2 for outward rounding); edge cells are clipped
        assert x2 - x1 <= 27 and y2 - y1 <= 30
        assert x2 - x1 >= 12 and y2 - y1 >= 14
    names = [d["name"] for d in dets]
    assert names == sorted(names, key=["red circle", "blue square"].index)  # listing order
    for name in set(names):
        mine = [d for d in dets if d["name"] == name]
        assert [d["score"] for d in mine] == sorted((d["score"] for d in mine), reverse=True)
        assert all(box_iou(a["box"], b["box"]) <= 0.5 for i, a in enumerate(mine) for b in mine[i + 1:])


def test_vlm_backend_applies_the_rules(backend, tiny_models, image, monkeypatch):
    _script_answer(backend, monkeypatch, "red circle|blue square|sky")
    r = backend(None, image)
    assert r.raw["vlm_answer"] == "red circle|blue square|sky" and r.raw["dropped_names"] == ["sky: background"]
    dets = r.raw["detections"]
    assert {d["name"] for d in dets} <= {"red circle", "blue square"}  # sky was never sent to the detector
    # A zero threshold keeps every grid cell: a name on several separate boxes is ambiguous and dropped.
    counts = {n: sum(d["name"] == n for d in dets) for n in ("red circle", "blue square")}
    assert max(counts.values()) > 1
    assert r.reason == "too_few_objects"
    for name, n in counts.items():
        assert (f"{name}: ambiguous ({n} boxes)" in r.detail) == (n > 1)

    lenient = VlmObjects(VlmSettings(*tiny_models, box_threshold=0.0), ObjectRules(drop_ambiguous=False, max_iou=0.05))
    lenient._vlm, lenient._detector = backend._load_vlm(), backend._load_detector()
    r = lenient(None, image)
    assert r.ok and [o["name"] for o in r.objects] == ["red circle", "blue square"]  # sky: background
    top = {n: next(d for d in r.raw["detections"] if d["name"] == n)["box"] for n in ("red circle", "blue square")}
    assert [o["box"] for o in r.objects] == [top["red circle"], top["blue square"]]

    strict = VlmObjects(VlmSettings(*tiny_models, box_threshold=0.999999), ObjectRules())
    strict._vlm, strict._detector = backend._load_vlm(), backend._load_detector()
    r = strict(None, image)
    assert r.reason == "too_few_objects" and r.objects == []


def test_owlv2_boxes_scale_to_the_padded_square(backend, image, monkeypatch):
    model, _ = backend._load_detector()
    normal = backend.locate(image, ["red circle"])
    monkeypatch.setattr(model.config, "model_type", "owlv2")
    padded = backend.locate(image, ["red circle"])
    # 112x112 square instead of 112 high x 100 wide: x coordinates grow by 112/100 (then clip to 100)
    a = next(d for d in normal if d["box"][0] > 0)
    b = next(d for d in padded if d["score"] == a["score"])
    assert b["box"][0] == pytest.approx(a["box"][0] * 1.12, abs=2)
    assert b["box"][1] == a["box"][1]
