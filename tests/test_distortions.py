"""Tests of the distortion library: catalogue, every type at every level, boxes, seeds, bad input,
and hand-worked values of the formulas on tiny arrays."""

from __future__ import annotations

import itertools
import math
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from refine_iqa import distortions as D
from refine_iqa.distortions import blur, noise, quantization

EXPECTED_NAMES = [
    "blur.gaussian", "blur.motion", "blur.glass", "blur.lens", "blur.zoom", "blur.jitter",
    "noise.gaussian_rgb", "noise.gaussian_ycrcb", "noise.speckle", "noise.spatially_correlated",
    "noise.poisson", "noise.impulse",
    "compression.jpeg", "compression.jpeg2000",
    "brighten.shift_hsv", "brighten.shift_rgb", "brighten.gamma_hsv", "brighten.gamma_rgb",
    "darken.shift_hsv", "darken.shift_rgb", "darken.gamma_hsv", "darken.gamma_rgb",
    "contrast_strengthen.scale", "contrast_strengthen.stretch", "contrast_weaken.scale", "contrast_weaken.stretch",
    "saturate_strengthen.hsv", "saturate_strengthen.ycrcb", "saturate_weaken.hsv", "saturate_weaken.ycrcb",
    "oversharpen.unsharp", "pixelate.box",
    "quantization.otsu", "quantization.median_cut", "quantization.histogram",
]
RANDOM_TYPES = {"blur.motion", "blur.glass", "blur.jitter", "noise.gaussian_rgb", "noise.gaussian_ycrcb",
                "noise.speckle", "noise.spatially_correlated", "noise.poisson", "noise.impulse"}
# Deterministic filters and stat-free pointwise maps: inside a box, the result must equal the full-image
# result (the padded crop gives the filter the real surroundings).
SAME_AS_FULL_IMAGE = ["blur.gaussian", "blur.motion", "blur.lens", "oversharpen.unsharp", "brighten.shift_hsv",
                      "brighten.shift_rgb", "brighten.gamma_hsv", "brighten.gamma_rgb", "darken.shift_hsv",
                      "darken.shift_rgb", "darken.gamma_hsv", "darken.gamma_rgb", "saturate_strengthen.hsv",
                      "saturate_strengthen.ycrcb", "saturate_weaken.hsv", "saturate_weaken.ycrcb"]
# Distortions of the region itself (statistics, block grid, zoom centre): inside a box, the result must
# equal the distortion of the cropped box alone.
SAME_AS_CROP_ALONE = ["blur.zoom", "compression.jpeg", "compression.jpeg2000", "contrast_strengthen.scale",
                      "contrast_strengthen.stretch", "contrast_weaken.scale", "contrast_weaken.stretch",
                      "pixelate.box", "quantization.otsu", "quantization.median_cut", "quantization.histogram"]
ALL_CASES = list(itertools.product(EXPECTED_NAMES, D.LEVELS))


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A natural colour photo (skimage's astronaut), 128 x 128."""
    from skimage import data

    return cv2.resize(data.astronaut(), (128, 128), interpolation=cv2.INTER_AREA)


def mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


def const(value, h=4, w=4) -> np.ndarray:
    return np.full((h, w, 3), value, dtype=np.uint8)


# ------------------------------------------------------------------ catalogue
def test_catalog_has_35_types_x_5_levels_with_exact_names():
    specs = D.catalog()
    assert [s.name for s in specs] == EXPECTED_NAMES == D.names()
    assert len(specs) == 35
    for s in specs:
        assert s.name == f"{s.family}.{s.type}"
        assert len(s.levels) == 5 and all(isinstance(p, dict) and p for p in s.levels)
        assert s.description
        assert s.display_name == D.FAMILY_DISPLAY_NAMES[s.family]
    assert D.FAMILIES == ("blur", "noise", "compression", "brighten", "darken", "contrast_strengthen",
                          "contrast_weaken", "saturate_strengthen", "saturate_weaken", "oversharpen",
                          "pixelate", "quantization")
    assert {s.family for s in specs} == set(D.FAMILIES)
    assert D.EASY_FAMILIES == ("blur", "noise", "compression", "brighten", "darken")
    assert set(D.HARD_FAMILIES) == set(D.FAMILIES) - set(D.EASY_FAMILIES)
    assert D.FAMILY_DISPLAY_NAMES["brighten"] == "overexposure"
    assert D.FAMILY_DISPLAY_NAMES["contrast_weaken"] == "low contrast"
    assert D.FAMILY_DISPLAY_NAMES["saturate_weaken"] == "desaturate"
    assert set(D.FAMILY_DISPLAY_NAMES) == set(D.FAMILIES)


def test_reference_parameters_spot_checks():
    assert [D.params_for("blur.lens", lv)["radius"] for lv in D.LEVELS] == [2, 3, 4, 6, 8]
    assert D.params_for("blur.motion", 4) == {"radius": 15, "sigma": 9}
    assert D.params_for("blur.glass", 3) == {"sigma": 1.2, "shift": 2, "iterations": 2}
    assert D.params_for("noise.gaussian_ycrcb", 5) == {"sigma_y": 0.09, "chroma_factor": 2.8}
    assert [D.params_for("noise.poisson", lv)["lam"] for lv in D.LEVELS] == [80, 60, 40, 25, 15]
    assert D.params_for("compression.jpeg2000", 2) == {"psnr_db": 27.5}
    assert D.params_for("darken.gamma_rgb", 5) == {"gamma": 3.2}
    assert D.params_for("quantization.otsu", 1) == {"classes": 15}
    assert D.params_for("blur.gaussian", 4) == {"sigma": 4}


def test_catalog_and_params_are_copies():
    D.catalog()[0].levels[0]["sigma"] = 99
    D.params_for("blur.gaussian", 1)["sigma"] = 99
    assert D.params_for("blur.gaussian", 1) == {"sigma": 1}


# ------------------------------------------------------------------ every type, every level
@pytest.mark.parametrize("name,level", ALL_CASES)
def test_every_type_and_level_changes_the_image_and_keeps_shape(photo, name, level):
    before = photo.copy()
    out = D.apply(photo, name, level, seed=3)
    assert out.shape == photo.shape and out.dtype == np.uint8
    assert out is not photo
    assert np.array_equal(photo, before), "input was modified"
    assert mad(out, photo) > 0.5


@pytest.mark.parametrize("name", EXPECTED_NAMES)
def test_strength_grows_strictly_with_level(photo, name):
    """Mean absolute difference to the input strictly increases from level 1 to 5, same seed.
    Holds for all 35 types with the REFERENCE parameters on this photo; no exception is needed."""
    diffs = [mad(D.apply(photo, name, level, seed=11), photo) for level in D.LEVELS]
    assert all(b > a for a, b in itertools.pairwise(diffs)), diffs


@pytest.mark.parametrize("name", EXPECTED_NAMES)
def test_same_seed_same_output_and_seed_use(photo, name):
    a = D.apply(photo, name, 3, seed=123)
    b = D.apply(photo, name, 3, seed=123)
    assert np.array_equal(a, b)
    c = D.apply(photo, name, 3, seed=124)
    if name in RANDOM_TYPES:
        assert not np.array_equal(a, c)
    else:  # deterministic types ignore the seed
        assert np.array_equal(a, c)
        assert np.array_equal(a, D.apply(photo, name, 3, seed=None))


def test_seed_none_is_nondeterministic(photo):
    a = D.apply(photo, "noise.gaussian_rgb", 1)
    b = D.apply(photo, "noise.gaussian_rgb", 1)
    assert not np.array_equal(a, b)


# ------------------------------------------------------------------ boxes
@pytest.mark.parametrize("name,level", ALL_CASES)
def test_box_changes_only_the_box(photo, name, level):
    box = (30, 40, 90, 100)
    before = photo.copy()
    out = D.apply(photo, name, level, seed=5, box=box)
    assert np.array_equal(photo, before), "input was modified"
    inside = np.zeros(photo.shape[:2], dtype=bool)
    inside[40:100, 30:90] = True
    assert np.array_equal(out[~inside], photo[~inside])
    assert mad(out[inside], photo[inside]) > 0.5


@pytest.mark.parametrize("name", SAME_AS_FULL_IMAGE)
def test_box_filters_see_the_real_surroundings(photo, name):
    full = D.apply(photo, name, 5, seed=9)
    for box in [(30, 40, 90, 100), (0, 0, 20, 128), (100, 110, 128, 128), (64, 64, 65, 65)]:
        x1, y1, x2, y2 = box
        boxed = D.apply(photo, name, 5, seed=9, box=box)
        assert np.array_equal(boxed[y1:y2, x1:x2], full[y1:y2, x1:x2]), box


@pytest.mark.parametrize("name", SAME_AS_CROP_ALONE)
def test_box_statistics_are_those_of_the_box(photo, name):
    x1, y1, x2, y2 = (30, 40, 90, 100)
    boxed = D.apply(photo, name, 4, seed=9, box=(x1, y1, x2, y2))
    alone = D.apply(photo[y1:y2, x1:x2].copy(), name, 4, seed=9)
    assert np.array_equal(boxed[y1:y2, x1:x2], alone)


def test_whole_image_box_equals_no_box(photo):
    for name in EXPECTED_NAMES:
        assert np.array_equal(D.apply(photo, name, 2, seed=1, box=(0, 0, 128, 128)), D.apply(photo, name, 2, seed=1)), name


@settings(max_examples=30, deadline=None)
@given(x1=st.integers(0, 47), y1=st.integers(0, 31), w=st.integers(1, 48), h=st.integers(1, 32),
       name=st.sampled_from(EXPECTED_NAMES), level=st.integers(1, 5))
def test_any_box_leaves_the_outside_exactly(x1, y1, w, h, name, level):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(32, 48, 3), dtype=np.uint8)
    x2, y2 = min(48, x1 + w), min(32, y1 + h)
    out = D.apply(img, name, level, seed=2, box=[x1, y1, x2, y2])
    mask = np.ones((32, 48), dtype=bool)
    mask[y1:y2, x1:x2] = False
    assert np.array_equal(out[mask], img[mask])


# ------------------------------------------------------------------ bad arguments and conversions
def test_unknown_name_lists_close_matches():
    with pytest.raises(KeyError, match="blur.gaussian"):
        D.apply(const(10), "blur.gausian", 1)
    with pytest.raises(KeyError, match="noise.gaussian_rgb"):
        D.apply(const(10), "noise.gaussian", 1)
    with pytest.raises(KeyError, match="pixelate.box"):
        D.params_for("pixelate", 1)
    with pytest.raises(KeyError, match="unknown distortion 'xyz'"):
        D.apply(const(10), "xyz", 1)
    with pytest.raises(TypeError):
        D.apply(const(10), None, 1)


@pytest.mark.parametrize("level", [0, 6, -1, 2.0, True, "3", None])
def test_level_outside_1_to_5_raises(level):
    with pytest.raises(ValueError, match="level must be an integer from 1"):
        D.apply(const(10), "blur.gaussian", level)


def test_numpy_integer_level_is_accepted():
    D.apply(const(10), "blur.gaussian", np.int64(2))


@pytest.mark.parametrize("bad", [np.zeros((4, 4, 3), np.float32), np.zeros((4, 4, 3), np.float64),
                                 np.zeros((4, 4, 3), np.int32), np.zeros((4, 4, 3), bool)])
def test_non_uint8_dtypes_raise(bad):
    with pytest.raises(TypeError, match="dtype must be uint8"):
        D.apply(bad, "blur.gaussian", 1)


@pytest.mark.parametrize("shape", [(4, 4, 2), (4, 4, 5), (2, 4, 4, 3), (12,), (0, 4, 3)])
def test_wrong_shapes_raise(shape):
    with pytest.raises(ValueError, match="shape"):
        D.apply(np.zeros(shape, np.uint8), "blur.gaussian", 1)


def test_not_an_array_raises():
    with pytest.raises(TypeError, match="numpy array"):
        D.apply([[1, 2], [3, 4]], "blur.gaussian", 1)


def test_grey_rgba_and_uint16_are_converted(photo):
    grey = photo[..., 1].copy()
    as_rgb = np.repeat(grey[..., None], 3, axis=2)
    expect = D.apply(as_rgb, "blur.lens", 3)
    assert np.array_equal(D.apply(grey, "blur.lens", 3), expect)
    assert np.array_equal(D.apply(grey[..., None], "blur.lens", 3), expect)
    rgba = np.dstack([photo, np.full(photo.shape[:2], 7, np.uint8)])
    assert np.array_equal(D.apply(rgba, "blur.lens", 3), D.apply(photo, "blur.lens", 3))
    wide = photo.astype(np.uint16) * 257  # exact uint16 version of the photo
    assert np.array_equal(D.apply(wide, "blur.lens", 3), D.apply(photo, "blur.lens", 3))
    # round(v * 255 / 65535): 65535 -> 255, 128 -> 0 (0.498), 129 -> 1 (0.502)
    from refine_iqa.distortions._region import as_rgb_uint8

    assert as_rgb_uint8(np.array([[65535, 128, 129]], np.uint16))[0, :, 0].tolist() == [255, 0, 1]


@pytest.mark.parametrize("box,why", [
    ((0, 0, 200, 10), "outside"), ((-1, 0, 10, 10), "outside"), ((0, 0, 10, 129), "outside"),
    ((10, 10, 10, 20), "empty or inverted"), ((20, 10, 10, 20), "empty or inverted"),
    ((10, 30, 20, 20), "empty or inverted"), ((1, 2, 3), "4 integers"), ((1.5, 2, 3, 4), "whole pixels"),
    (("a", 2, 3, 4), "integers"), (5, "4 integers"),
])
def test_bad_boxes_raise_with_box_and_size(photo, box, why):
    with pytest.raises(ValueError, match=why) as err:
        D.apply(photo, "blur.gaussian", 1, box=box)
    assert "128x128" in str(err.value)
    assert "box" in str(err.value)


def test_float_whole_box_coordinates_are_accepted(photo):
    out = D.apply(photo, "brighten.shift_rgb", 1, box=[1.0, 2.0, 10.0, 12.0])
    assert np.array_equal(out, D.apply(photo, "brighten.shift_rgb", 1, box=(1, 2, 10, 12)))


# ------------------------------------------------------------------ formulas worked out by hand
def test_shift_rgb_on_constant_images():
    # level 2: +0.15 = +38.25 grey levels: 100 -> 138.25 -> 138
    assert np.all(D.apply(const(100), "brighten.shift_rgb", 2) == 138)
    # darken level 5: -0.35 = -89.25: 100 -> 10.75 -> 11; and clipping at both ends
    assert np.all(D.apply(const(100), "darken.shift_rgb", 5) == 11)
    assert np.all(D.apply(const(250), "brighten.shift_rgb", 1) == 255)
    assert np.all(D.apply(const(20), "darken.shift_rgb", 1) == 0)


def test_gamma_rgb_values():
    # 255 * (128 / 255) ** 0.8: ln(0.50196) = -0.68923; * 0.8 = -0.55138; exp = 0.57617 -> 146.92 -> 147
    assert np.all(D.apply(const(128), "brighten.gamma_rgb", 1) == 147)
    # darken level 1, gamma 1.4: exp(1.4 * -0.68923) = 0.38106 -> 97.17 -> 97
    assert np.all(D.apply(const(128), "darken.gamma_rgb", 1) == 97)
    assert np.all(D.apply(const(0), "brighten.gamma_rgb", 5) == 0)
    assert np.all(D.apply(const(255), "darken.gamma_rgb", 5) == 255)


def test_hsv_value_shift_and_gamma_keep_hue_and_saturation():
    px = np.array([[[200, 120, 40], [0, 0, 0]]], dtype=np.uint8)
    # V 200 -> 200 + 0.2 * 255 = 251, ratio 1.255: (251, 150.6, 50.2) -> (251, 151, 50); black -> grey 51
    out = D.apply(px, "brighten.shift_hsv", 2)
    assert out[0, 0].tolist() == [251, 151, 50]
    assert out[0, 1].tolist() == [51, 51, 51]
    # V ** 0.7: 255 * (200 / 255) ** 0.7 = 215.12, ratio 1.07561: (215.12, 129.07, 43.02)
    assert D.apply(px, "brighten.gamma_hsv", 1)[0, 0].tolist() == [215, 129, 43]
    # darken -0.5: V 200 -> 72.5, ratio 0.3625: (72.5, 43.5, 14.5) -> ties to even (72, 44, 14)
    assert D.apply(px, "darken.shift_hsv", 5)[0, 0].tolist() == [72, 44, 14]
    assert D.apply(px, "darken.shift_hsv", 5)[0, 1].tolist() == [0, 0, 0]


def test_hsv_shift_matches_a_colour_space_round_trip(photo):
    """Against skimage's rgb2hsv / hsv2rgb, the explicit route."""
    from skimage.color import hsv2rgb, rgb2hsv

    hsv = rgb2hsv(photo)
    hsv[..., 2] = np.clip(hsv[..., 2] + 0.3, 0, 1)
    expect = np.rint(hsv2rgb(hsv) * 255)
    got = D.apply(photo, "brighten.shift_hsv", 3).astype(np.float64)
    assert np.abs(got - expect).max() <= 1
    hsv = rgb2hsv(photo)
    hsv[..., 1] = np.clip(hsv[..., 1] * 6, 0, 1)
    expect = np.rint(hsv2rgb(hsv) * 255)
    got = D.apply(photo, "saturate_strengthen.hsv", 2).astype(np.float64)
    assert np.abs(got - expect).max() <= 1


def test_saturation_values():
    px = np.array([[[200, 120, 40]]], dtype=np.uint8)
    # HSV: S = 160 / 200 = 0.8; x3 -> clipped to 1, ratio 1.25: c' = 200 - (200 - c) * 1.25 = (200, 100, 0)
    assert D.apply(px, "saturate_strengthen.hsv", 1)[0, 0].tolist() == [200, 100, 0]
    assert D.apply(px, "saturate_weaken.hsv", 5)[0, 0].tolist() == [200, 200, 200]  # S x 0: grey at V
    # YCbCr: Y = 0.299 * 200 + 0.587 * 100 + 0.114 * 50 = 124.2
    px = np.array([[[200, 100, 50]]], dtype=np.uint8)
    assert D.apply(px, "saturate_weaken.ycrcb", 5)[0, 0].tolist() == [124, 124, 124]
    # x2: Y + 2 (c - Y) = (275.8, 75.8, -24.2) -> (255, 76, 0)
    assert D.apply(px, "saturate_strengthen.ycrcb", 1)[0, 0].tolist() == [255, 76, 0]


def test_contrast_values():
    img = np.zeros((2, 2, 3), np.uint8)
    img[0] = 100
    img[1] = 200
    # grey mean 150; factor 1.4: 150 -/+ 1.4 * 50 = 80, 220
    out = D.apply(img, "contrast_strengthen.scale", 1)
    assert out[0].ravel().tolist() == [80] * 6 and out[1].ravel().tolist() == [220] * 6
    # factor 0.2: 150 -/+ 10 = 140, 160
    out = D.apply(img, "contrast_weaken.scale", 5)
    assert out[0].ravel().tolist() == [140] * 6 and out[1].ravel().tolist() == [160] * 6
    assert np.all(D.apply(const(90), "contrast_strengthen.scale", 5) == 90)  # nothing to scale
    # stretch f = 4, channel mean 128: 1 / (1 + 2^4) = 1/17 -> 15.0; 1 / (1 + (2/3)^4) = 81/97 -> 212.9 -> 213
    img[0], img[1] = 64, 192
    out = D.apply(img, "contrast_strengthen.stretch", 2)
    assert out[0].ravel().tolist() == [15] * 6 and out[1].ravel().tolist() == [213] * 6
    assert np.all(D.apply(const(0), "contrast_weaken.stretch", 3) == 0)  # mean 0: left as is


def test_impulse_changes_exactly_the_amount_fraction():
    img = const(128, 100, 100)
    for level, amount in zip(D.LEVELS, [0.01, 0.03, 0.05, 0.07, 0.10]):
        out = D.apply(img, "noise.impulse", level, seed=level)
        changed = np.any(out != 128, axis=2)
        assert changed.sum() == round(amount * 10000)
        values = out[changed]
        assert np.all((values == 0).all(axis=1) | (values == 255).all(axis=1))
    salt = (out[changed] == 255).all(axis=1).mean()
    assert 0.35 < salt < 0.65


def test_pixelate_block_values():
    img = np.zeros((4, 4, 3), np.uint8)
    img[..., 0] = [[10, 20, 100, 100], [30, 40, 100, 100], [0, 0, 8, 8], [4, 4, 8, 8]]
    out = D.apply(img, "pixelate.box", 1)[..., 0]  # scale 0.5: 2x2 blocks, each its mean
    assert out.tolist() == [[25, 25, 100, 100], [25, 25, 100, 100], [2, 2, 8, 8], [2, 2, 8, 8]]
    # 5 x 5 at scale 0.4: round(2.0) = 2 blocks per side; INTER_AREA weights the shared middle pixel
    img = np.zeros((5, 5, 3), np.uint8)
    img[..., 0] = 100
    img[:, 3:, 0] = 200  # columns 0-2 are 100, 3-4 are 200: block 1 = cols 0, 1, half of 2 -> 100
    # block 2 = half of col 2 + cols 3-4: (50 + 400) / 2.5 = 180. Nearest up samples at pixel centres:
    # output x reads block floor((x + 0.5) * 2 / 5) = 0, 0, 1, 1, 1
    out = D.apply(img, "pixelate.box", 2)[..., 0]
    assert out[0].tolist() == [100, 100, 180, 180, 180]


def test_gaussian_and_lens_kernels():
    assert [blur.gaussian_ksize(s) for s in (1, 2, 3, 4, 5, 0.7, 1.6)] == [5, 9, 13, 17, 21, 3, 7]
    k = blur.disk_kernel(2)
    assert (k > 0).sum() == 13 and math.isclose(k.sum(), 1.0, rel_tol=1e-6)


def test_motion_kernel_is_a_one_sided_gaussian_line():
    k, anchor = blur.motion_kernel(5, 3, 0.0)
    assert k.shape == (1, 11) and anchor == (0, 0)
    w = np.exp(-np.arange(11) ** 2 / 18.0)
    np.testing.assert_allclose(k[0], w / w.sum(), rtol=1e-6)
    k, anchor = blur.motion_kernel(5, 3, 90.0)
    assert k.shape == (11, 1) and anchor == (0, 0)
    # -45 degrees: tap i at distance i along the diagonal, offsets round(i / sqrt 2) = 0..7, upwards
    k, anchor = blur.motion_kernel(5, 3, -45.0)
    assert k.shape == (8, 8) and anchor == (0, 7) and math.isclose(k.sum(), 1.0, rel_tol=1e-6)
    # Applied: output(x) = sum_i w_i * input(x + i), so a bright dot smears towards lower x only.
    img = np.zeros((3, 40, 3), np.float32)
    img[1, 30] = 255
    out = cv2.filter2D(img, -1, blur.motion_kernel(5, 3, 0.0)[0], anchor=(0, 0), borderType=cv2.BORDER_CONSTANT)
    assert set(np.flatnonzero(out[1, :, 0])) == set(range(20, 31))


def test_zoom_factors_and_centre():
    assert blur.zoom_factors(1.06, 0.02) == pytest.approx([1.0, 1.02, 1.04, 1.06])
    assert len(blur.zoom_factors(1.20, 0.02)) == 11
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (31, 41, 3), dtype=np.uint8)
    out = D.apply(img, "blur.zoom", 5)
    assert np.array_equal(out[15, 20], img[15, 20])  # the centre maps to itself in every zoom
    assert np.all(D.apply(const(77, 9, 9), "blur.zoom", 5) == 77)


def test_jitter_takes_pixels_from_within_shift():
    h, w = 40, 50
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.dstack([xx, yy, np.zeros_like(xx)]).astype(np.uint8)  # each pixel encodes where it came from
    for level in (1, 3):
        out = D.apply(img, "blur.jitter", level, seed=4).astype(int)
        assert np.abs(out[..., 0] - xx).max() <= level and np.abs(out[..., 1] - yy).max() <= level
    moved = np.any(D.apply(img, "blur.jitter", 1, seed=4) != img, axis=2)[1:-1, 1:-1].mean()
    assert abs(moved - 8 / 9) < 0.03  # interior: 8 of the 9 offsets move the pixel


def test_glass_swaps_are_a_local_permutation():
    h, w = 23, 31
    for shift, iters in [(1, 1), (2, 2), (4, 2)]:
        perm = blur.local_swaps(h, w, np.random.default_rng(shift), shift, iters)
        assert np.array_equal(np.sort(perm), np.arange(h * w))
        src_y, src_x = np.divmod(perm, w)
        yy, xx = np.divmod(np.arange(h * w), w)
        dist = np.maximum(np.abs(src_y - yy), np.abs(src_x - xx))
        # Swaps are sequential, so a pixel moved early can be moved again by a later swap (as in the
        # classic loop): typical displacements are of the order of `shift`, not bounded by it.
        assert np.median(dist) <= shift * iters
        assert (dist == 0).mean() < 0.2


def test_gaussian_noise_statistics():
    img = const(128, 200, 200)
    out = D.apply(img, "noise.gaussian_rgb", 1, seed=0).astype(np.float64)
    assert abs(out.std() - 0.05 * 255) < 0.3 and abs(out.mean() - 128) < 0.3
    # speckle: 128 * N(0, 0.14) -> std 17.92
    out = D.apply(img, "noise.speckle", 1, seed=0).astype(np.float64)
    assert abs(out.std() - 0.14 * 128) < 0.4
    # correlated: the 3x3 mean of 9 independent values has std sigma / 3, neighbours strongly correlated
    out = D.apply(img, "noise.spatially_correlated", 5, seed=0).astype(np.float64)[2:-2, 2:-2, 0]
    assert abs(out.std() - 0.22 * 255 / 3) < 0.5
    assert np.corrcoef(out[:, :-1].ravel(), out[:, 1:].ravel())[0, 1] > 0.5


def test_ycrcb_noise_goes_to_luma_and_chroma_with_their_sigmas():
    img = const(128, 200, 200)
    # level 2: sigma_y .06, chroma x1.45 (small enough that clipping at 0 / 255 is negligible)
    out = D.apply(img, "noise.gaussian_ycrcb", 2, seed=0).astype(np.float64)
    r, g, b = out[..., 0], out[..., 1], out[..., 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = (b - y) / 1.772
    cr = (r - y) / 1.402
    assert abs(y.std() - 0.06 * 255) < 0.4
    assert abs(cb.std() - 0.06 * 1.45 * 255) < 0.5 and abs(cr.std() - 0.06 * 1.45 * 255) < 0.5
    assert abs(np.corrcoef(cb.ravel(), cr.ravel())[0, 1]) < 0.03


def test_poisson_sampler_matches_the_poisson_law():
    values = np.full(200_000, 128, np.uint8)
    u = np.random.default_rng(0).random(values.shape, dtype=np.float32)
    k = noise.poisson_counts(values, 40.0, u)
    mu = 128 / 255 * 40  # 20.078
    assert abs(k.mean() - mu) < 0.05 and abs(k.var() - mu) < 0.3
    observed = np.bincount(k, minlength=60)[:60]
    expected = stats.poisson.pmf(np.arange(60), mu) * values.size
    keep = expected > 20
    chi2 = ((observed[keep] - expected[keep]) ** 2 / expected[keep]).sum()
    assert chi2 < stats.chi2.ppf(0.999, keep.sum() - 1)
    # the inverse CDF by hand: smallest k with cdf(k) > u
    for uu in (0.0, 0.3, 0.9999):
        assert noise.poisson_counts(np.array([128], np.uint8), 40.0, np.array([uu], np.float32))[0] == \
            int(np.argmax(stats.poisson.cdf(np.arange(100), mu).astype(np.float32) > np.float32(uu)))
    assert np.all(noise.poisson_counts(np.zeros(10, np.uint8), 15.0, np.full(10, 0.99, np.float32)) == 0)


def test_poisson_noise_scale():
    out = D.apply(const(128, 200, 200), "noise.poisson", 5, seed=0).astype(np.float64)  # lam 15
    mu = 128 / 255 * 15
    assert abs(out.mean() - 128) < 0.5
    assert abs(out.std() - math.sqrt(mu) * 255 / 15) < 0.6


def test_multi_otsu_dp_equals_exhaustive_search():
    rng = np.random.default_rng(0)
    for trial in range(20):
        counts = np.zeros(256)
        present = rng.choice(256, size=rng.integers(4, 9), replace=False)
        counts[present] = rng.integers(1, 50, size=present.size)
        values = np.flatnonzero(counts)
        for classes in (2, 3, 4):
            def score(starts, counts=counts, values=values):
                edges = [0, *starts, values.size]
                total = 0.0
                for a, b in itertools.pairwise(edges):
                    wgt = counts[values[a:b]].sum()
                    total += (counts[values[a:b]] * values[a:b]).sum() ** 2 / wgt
                return total

            best = max(score(list(c)) for c in itertools.combinations(range(1, values.size), classes - 1))
            got = quantization.multi_otsu_groups(counts, classes)
            assert len(got) == classes - 1
            assert math.isclose(score(got), best, rel_tol=1e-12)


def test_multi_otsu_agrees_with_skimage(photo):
    """skimage's search (float32 sums) returns the same thresholds up to near-ties of ~1e-7 relative,
    where the exact DP is at least as good."""
    from skimage.filters import threshold_multiotsu

    def between_class(counts, thresholds):  # sum_k S_k^2 / W_k, class k = values in (t_{k-1}, t_k]
        v = np.arange(256)
        edges = [-1, *thresholds, 255]
        total = 0.0
        for a, b in itertools.pairwise(edges):
            m = (v > a) & (v <= b)
            if counts[m].sum() > 0:
                total += (counts[m] * v[m]).sum() ** 2 / counts[m].sum()
        return total

    for c in range(3):
        counts = np.bincount(photo[..., c].ravel(), minlength=256).astype(np.float64)
        values = np.flatnonzero(counts)
        for classes in (3, 4):  # skimage's search is exponential in classes: 5 already takes seconds
            theirs = [int(t) for t in threshold_multiotsu(hist=(counts, np.arange(256)), classes=classes)]
            ours = [int(values[s - 1]) for s in quantization.multi_otsu_groups(counts, classes)]  # last of lower
            assert max(abs(a - b) for a, b in zip(ours, theirs)) <= 1
            assert between_class(counts, ours) >= between_class(counts, theirs) * (1 - 1e-12)


def test_otsu_levels_spread_over_channel_range():
    img = np.zeros((1, 6, 3), np.uint8)
    img[0, :, :] = np.array([10, 12, 100, 102, 200, 202])[:, None]
    out = D.apply(img, "quantization.otsu", 5)  # 3 classes: {10,12}, {100,102}, {200,202} -> 10, 106, 202
    assert out[0, :, 0].tolist() == [10, 10, 106, 106, 202, 202]


def test_median_cut_by_hand():
    counts = np.zeros(256)
    counts[[10, 20, 200, 210]] = 1
    lut = quantization.median_cut_lut(counts, 2)
    assert lut[[10, 20, 200, 210]].tolist() == [15, 15, 205, 205]
    lut = quantization.median_cut_lut(counts, 3)  # widest range next: both are 10 wide, the lower is split
    assert lut[[10, 20, 200, 210]].tolist() == [10, 20, 205, 205]
    assert quantization.median_cut_lut(counts, 20)[[10, 20, 200, 210]].tolist() == [10, 20, 200, 210]


def test_histogram_quantization_by_hand():
    # grey pixels 10 (x2), 70 (x1), 200 (x2); 4 bins of 64: counts 2, 1, 0, 2 (x3 channels)
    img = np.array([[[10] * 3, [10] * 3, [70] * 3, [200] * 3, [200] * 3]], np.uint8)
    out = D.apply(img, "quantization.histogram", 5)[0, :, 0]
    # cdf at bin ends 2, 3, 3, 5; first 2, total 5: 10 -> 0, 70 -> 255 / 3 = 85, 200 -> 255
    assert out.tolist() == [0, 0, 85, 255, 255]
    assert np.all(D.apply(const(40), "quantization.histogram", 5) == 40)  # one bin: left as is


def test_oversharpen_overshoots_at_an_edge_and_keeps_flat_areas():
    img = np.zeros((10, 20, 3), np.uint8)
    img[:, :10] = 60
    img[:, 10:] = 180
    out = D.apply(img, "oversharpen.unsharp", 1).astype(int)
    assert np.all(out[:, :6] == 60) and np.all(out[:, 14:] == 180)
    assert out[5, 9, 0] < 60 and out[5, 10, 0] > 180


def test_jpeg2000_reaches_its_psnr_target_roughly(photo):
    for level in D.LEVELS:
        target = D.params_for("compression.jpeg2000", level)["psnr_db"]
        mse = np.mean((D.apply(photo, "compression.jpeg2000", level).astype(np.float64) - photo) ** 2)
        assert abs(10 * math.log10(255**2 / mse) - target) < 1.5


def test_poisson_cdf_by_hand_and_against_scipy():
    # Poisson(2): P(X <= 0) = e^-2, P(X <= 1) = 3 e^-2, P(X <= 2) = 5 e^-2; Poisson(0) is all at 0.
    got = noise.poisson_cdf(np.array([2.0, 0.0]), 2)
    assert np.allclose(got[0], [math.exp(-2), 3 * math.exp(-2), 5 * math.exp(-2)], rtol=0, atol=1e-15)
    assert got[1].tolist() == [1.0, 1.0, 1.0]
    for lam in (80, 60, 40, 25, 15, 200):  # the catalogue's lam values and one far above
        kmax = int(np.ceil(lam + 12 * np.sqrt(lam) + 20))
        mu = np.arange(256) / 255.0 * lam
        ref = stats.poisson.cdf(np.arange(kmax + 1)[None, :], mu[:, None])
        ours = noise.poisson_cdf(mu, kmax)
        assert np.abs(ours - ref).max() < 1e-12
        assert np.array_equal(ours.astype(np.float32), ref.astype(np.float32))  # the sampler's tables: identical


def test_no_distortion_type_imports_a_heavy_library():
    """Issue 13: the first use of noise.poisson imported scipy.stats, 43 MB kept in every synthesis process that
    drew it. Every type is applied once in a fresh process; nothing from scipy may be imported."""
    code = ("import sys, numpy as np\nfrom refine_iqa import distortions as D\n"
            "img = (np.arange(48 * 64 * 3) % 251).astype(np.uint8).reshape(48, 64, 3)\n"
            "for n in D.names():\n    D.apply(img, n, 3, seed=0, box=[8, 8, 40, 40])\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'scipy'))")
    src = str(Path(D.__file__).resolve().parents[2])  # this checkout's code, whatever PYTHONPATH says
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "[]", out.stdout[:500]
