"""Procedural scenes: deterministic, named objects, tight boxes, the size and overlap rules, COCO output."""

import numpy as np
import pytest

from refine_iqa.data.objects import box_iou
from refine_iqa.data.scenes import COLOURS, SHAPES, category_names, generate_scene, scene_seed, write_scene_dataset
from refine_iqa.io_utils import load_rgb, read_json

# Object pixels stay within 43 (max abs channel difference) of their nominal colour and background pixels
# at least 47 away from every object colour (measured over 1000 seeds); 45 separates them.
NEAR = 45
SEEDS = range(40)


def _near(img, colour):
    return np.abs(img.astype(int) - np.asarray(COLOURS[colour])).max(-1) < NEAR


def test_same_seed_same_scene_and_different_seeds_differ():
    a, oa = generate_scene(7)
    b, ob = generate_scene(7)
    c, _ = generate_scene(8)
    assert np.array_equal(a, b) and oa == ob
    assert not np.array_equal(a, c)
    assert a.dtype == np.uint8 and a.shape == (112, 112, 3)


@pytest.mark.parametrize("seed", SEEDS)
def test_objects_names_counts_sizes_and_overlap(seed):
    _, objs = generate_scene(seed, n_objects=(2, 3), max_iou=0.1, min_box_frac=0.15)
    assert 2 <= len(objs) <= 3
    names = [o["name"] for o in objs]
    colours = [n.split()[0] for n in names]
    shapes = [n.split()[1] for n in names]
    assert len(set(names)) == len(names) and len(set(shapes)) == len(shapes) and len(set(colours)) == len(colours)
    assert all(c in COLOURS for c in colours) and all(s in SHAPES for s in shapes)
    for o in objs:
        x1, y1, x2, y2 = o["box"]
        assert all(isinstance(v, int) for v in o["box"])
        assert 0 <= x1 < x2 <= 112 and 0 <= y1 < y2 <= 112
        assert min(x2 - x1, y2 - y1) >= 17  # ceil(0.15 * 112)
    for i in range(len(objs)):
        for j in range(i + 1, len(objs)):
            assert box_iou(objs[i]["box"], objs[j]["box"]) < 0.1


@pytest.mark.parametrize("seed", SEEDS)
def test_boxes_are_tight_around_the_drawn_object(seed):
    img, objs = generate_scene(seed)
    in_any_box = np.zeros(img.shape[:2], bool)
    for o in objs:
        x1, y1, x2, y2 = o["box"]
        in_any_box[y1:y2, x1:x2] = True
    for o in objs:
        near = _near(img, o["name"].split()[0])
        x1, y1, x2, y2 = o["box"]
        # Every edge row/column of the box touches the object ...
        assert near[y1, x1:x2].any() and near[y2 - 1, x1:x2].any()
        assert near[y1:y2, x1].any() and near[y1:y2, x2 - 1].any()
        # ... and no pixel of that colour lies outside every box (the background is neutral).
        assert not (near & ~in_any_box).any()


def test_scene_size_and_count_settings():
    img, objs = generate_scene(3, width=200, height=120, n_objects=(3, 3), min_box_frac=0.2)
    assert img.shape == (120, 200, 3) and len(objs) == 3
    assert all(min(o["box"][2] - o["box"][0], o["box"][3] - o["box"][1]) >= 24 for o in objs)
    for bad in [dict(n_objects=(0, 2)), dict(n_objects=(3, 2)), dict(n_objects=(2, 9)), dict(width=8)]:
        with pytest.raises(ValueError):
            generate_scene(0, **bad)


def test_impossible_layout_is_a_clear_error():
    with pytest.raises(RuntimeError, match="could not place"):
        generate_scene(0, width=40, height=40, n_objects=(3, 3), min_box_frac=0.9, max_box_frac=0.95)


def test_scene_seed_is_stable_and_distinct():
    assert scene_seed(0, 1) == scene_seed(0, 1)
    assert len({scene_seed(0, i) for i in range(100)} | {scene_seed(1, i) for i in range(100)}) == 200


def test_write_scene_dataset_coco(tmp_path):
    ann = write_scene_dataset(tmp_path / "scenes", 5, seed=11, width=96, height=80)
    coco = read_json(ann)
    assert [im["file_name"] for im in coco["images"]] == [f"scene-{i:06d}.png" for i in range(5)]
    assert [c["name"] for c in coco["categories"]] == category_names()
    assert [c["id"] for c in coco["categories"]] == list(range(1, len(category_names()) + 1))
    cat = {c["id"]: c["name"] for c in coco["categories"]}
    for k, im in enumerate(coco["images"]):
        pixels = load_rgb(tmp_path / "scenes" / "images" / im["file_name"])
        expected_img, expected_objs = generate_scene(scene_seed(11, k), 96, 80)
        assert np.array_equal(pixels, expected_img)  # PNG is lossless
        anns = [a for a in coco["annotations"] if a["image_id"] == im["id"]]
        got = [{"name": cat[a["category_id"]], "box": [a["bbox"][0], a["bbox"][1],
                a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]} for a in anns]
        assert got == expected_objs
        assert all(a["iscrowd"] == 0 and a["area"] == a["bbox"][2] * a["bbox"][3] for a in anns)
    assert len({a["id"] for a in coco["annotations"]}) == len(coco["annotations"])
