"""Box maths: the processor's resize rule, original <-> model pixel boxes, IoU (hand-worked values)."""

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from transformers import Qwen2VLImageProcessor

from refine_iqa.boxes import (
    box_area,
    clip_box,
    iou,
    resize_settings,
    resized_size_from_processor,
    smart_resize_size,
    to_model_box,
    to_original_box,
)

TINY = {"min_pixels": 28 * 28 * 4, "max_pixels": 28 * 28 * 16}  # the embedded model's bounds (3136, 12544)


def test_smart_resize_size_hand_values():
    # 448x336: rounded 448x336 = 150528 px > 12544 -> beta = sqrt(12); h = floor(336/beta/28)*28 = 3*28 = 84,
    # w = floor(448/beta/28)*28 = 4*28 = 112.
    assert smart_resize_size(448, 336, factor=28, **TINY) == (112, 84)
    # Wide image within bounds: h = round(200/28)*28 = 196, w = round(1000/28)*28 = 36*28 = 1008 (order matters).
    assert smart_resize_size(1000, 200, min_pixels=3136, max_pixels=28 * 28 * 1280) == (1008, 196)
    assert smart_resize_size(200, 1000, min_pixels=3136, max_pixels=28 * 28 * 1280) == (196, 1008)
    # Too small: 28x28 < 3136 -> beta = sqrt(3136/600); h = ceil(20*beta/28)*28 = 56, w = ceil(30*beta/28)*28 = 84.
    assert smart_resize_size(30, 20, min_pixels=3136, max_pixels=28 * 28 * 1280) == (84, 56)


def test_smart_resize_size_errors():
    with pytest.raises(ValueError, match="width must be a positive integer"):
        smart_resize_size(0, 10, **TINY)
    with pytest.raises(ValueError, match="height must be a positive integer"):
        smart_resize_size(10, 2.5, **TINY)
    with pytest.raises(ValueError, match="must not exceed"):
        smart_resize_size(10, 10, min_pixels=100, max_pixels=10)
    with pytest.raises(ValueError, match="aspect ratio"):  # the processor's own rule refuses it
        smart_resize_size(5000, 20, **TINY)


@pytest.mark.parametrize("width, height", [(448, 336), (112, 112), (1000, 200), (50, 300), (640, 480), (33, 57)])
def test_resized_size_matches_what_the_processor_does(width, height):
    processor = Qwen2VLImageProcessor(**TINY)
    image = Image.fromarray(np.zeros((height, width, 3), np.uint8))
    _, grid_h, grid_w = processor(images=[image], return_tensors="pt")["image_grid_thw"][0].tolist()
    expected = (grid_w * processor.patch_size, grid_h * processor.patch_size)
    assert resized_size_from_processor(processor, width, height) == expected
    # A full processor exposes the same rule through its image_processor.
    assert resized_size_from_processor(SimpleNamespace(image_processor=processor), width, height) == expected


def test_resize_settings():
    assert resize_settings(Qwen2VLImageProcessor(**TINY)) == {"min_pixels": 3136, "max_pixels": 12544, "factor": 28}
    legacy = SimpleNamespace(min_pixels=100, max_pixels=1000, patch_size=16, merge_size=2)  # older attribute names
    assert resize_settings(legacy) == {"min_pixels": 100, "max_pixels": 1000, "factor": 32}
    with pytest.raises(ValueError, match="lacks .*patch_size"):
        resize_settings(SimpleNamespace(size={"shortest_edge": 1, "longest_edge": 2}, merge_size=2))


def test_to_model_and_back_hand_values():
    # 448x336 -> 112x84 is a scale of 1/4 on both axes; 130/4 = 32.5 rounds half up to 33.
    assert to_model_box([100, 40, 200, 130], (448, 336), (112, 84)) == (25, 10, 50, 33)
    assert to_original_box([25, 10, 50, 33], (112, 84), (448, 336)) == (100, 40, 200, 132)
    # Different scales per axis: x * 1008/1000, y * 196/200.
    assert to_model_box((10, 10, 990, 190), (1000, 200), (1008, 196)) == (10, 10, 998, 186)


def test_box_conversion_clips_and_keeps_thin_boxes():
    assert to_model_box((-10, -5, 500, 400), (448, 336), (112, 84)) == (0, 0, 112, 84)
    # 200..201 -> 50..50.25 collapses to 50..50: widened to one pixel.
    assert to_model_box((200, 40, 201, 130), (448, 336), (112, 84)) == (50, 10, 51, 33)
    # At the right/bottom border the one pixel goes inwards.
    assert to_model_box((447, 335, 448, 336), (448, 336), (112, 84)) == (111, 83, 112, 84)
    # An empty box stays empty; a box wholly outside the image clips to an empty box.
    assert to_model_box((8, 8, 8, 20), (448, 336), (112, 84)) == (2, 2, 2, 5)
    assert to_model_box((500, 0, 600, 10), (448, 336), (112, 84)) == (112, 0, 112, 3)


@pytest.mark.parametrize("box, message", [((1, 2, 3), r"\[x1, y1, x2, y2\]"), ((5, 0, 1, 4), "x2 < x1"),
                                          ((0, 0, float("nan"), 4), "finite"), (("a", 0, 1, 1), "four numbers"),
                                          ("0,0,1,1", r"\[x1, y1, x2, y2\]")])
def test_box_conversion_rejects_bad_boxes(box, message):
    with pytest.raises(ValueError, match=message):
        to_model_box(box, (448, 336), (112, 84))


def test_box_conversion_rejects_bad_sizes():
    with pytest.raises(ValueError, match="orig_wh width must be a positive integer"):
        to_model_box((0, 0, 1, 1), (0, 336), (112, 84))
    with pytest.raises(ValueError, match=r"model_wh must be \(width, height\)"):
        to_original_box((0, 0, 1, 1), (112,), (448, 336))
    with pytest.raises(ValueError, match="orig_wh height"):
        to_original_box((0, 0, 1, 1), (112, 84), (448, 33.6))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 112), st.integers(0, 112), st.integers(0, 84), st.integers(0, 84))
def test_model_box_survives_a_round_trip_through_the_larger_original(a, b, c, d):
    # Going up by 4x and back down by 1/4 returns the same model box (the scale-down error is below 0.5 px).
    box = (min(a, b), min(c, d), max(a, b), max(c, d))
    assert to_model_box(to_original_box(box, (112, 84), (448, 336)), (448, 336), (112, 84)) == box
    # Also for non-integer ratios (1000x700 original, 504x364 model).
    box2 = (min(a, b) * 4, min(c, d) * 4, max(a, b) * 4, max(c, d) * 4)
    assert to_model_box(to_original_box(box2, (504, 364), (1000, 700)), (1000, 700), (504, 364)) == box2


def test_iou_hand_values():
    assert iou((0, 0, 10, 10), (5, 5, 15, 15)) == pytest.approx(25 / 175)
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (2, 2, 4, 4)) == pytest.approx(4 / 100)
    assert iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0  # touching edges share no pixel (exclusive x2)
    assert iou((0, 0, 10, 10), (9, 0, 20, 10)) == pytest.approx(10 / 200)  # one shared column
    assert iou((0.5, 0, 2.5, 1), (1.5, 0, 3.5, 1)) == pytest.approx(1 / 3)  # floats work


def test_iou_degenerate_boxes():
    assert iou((5, 5, 5, 10), (0, 0, 10, 10)) == 0.0  # zero width
    assert iou((0, 0, 10, 10), (10, 10, 0, 0)) == 0.0  # inverted
    assert iou((3, 3, 3, 3), (3, 3, 3, 3)) == 0.0  # empty union
    with pytest.raises(ValueError, match="first box"):
        iou((0, 0, 1), (0, 0, 1, 1))


def test_iou_clips_to_the_image():
    assert iou((-10, -10, 10, 10), (0, 0, 10, 10)) == pytest.approx(100 / 400)
    assert iou((-10, -10, 10, 10), (0, 0, 10, 10), image_wh=(20, 20)) == 1.0
    assert iou((15, 15, 40, 40), (10, 10, 20, 20), image_wh=(20, 20)) == pytest.approx(25 / 100)
    assert iou((30, 30, 40, 40), (10, 10, 20, 20), image_wh=(20, 20)) == 0.0  # wholly outside


def test_clip_and_area():
    assert clip_box((-3, 5, 50, 12), (20, 10)) == (0, 5, 20, 10)
    assert box_area((0, 0, 4, 3)) == 12
    assert box_area((4, 0, 0, 3)) == 0
