"""The 35 distortion types: parameters of the 5 levels (REFERENCE.md section 3) and their functions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import blur, compression, contrast, exposure, noise, pixelate, quantization, saturation, sharpen
from .spec import FAMILIES


def _no_pad(**_params) -> int:
    return 0


@dataclass(frozen=True)
class _Entry:
    name: str
    levels: tuple[dict[str, Any], ...]
    description: str
    fn: Callable[..., Any]
    pad: Callable[..., int] = _no_pad  # filter support in pixels: how far outside a box the filter reads


def _levels(**columns) -> tuple[dict[str, Any], ...]:
    """_levels(a=[1, 2, 3, 4, 5], b=[...]) -> ({"a": 1, "b": ...}, ...), one dict per level."""
    keys = list(columns)
    rows = list(zip(*columns.values()))
    assert len(rows) == 5 and all(len(v) == 5 for v in columns.values()), columns
    return tuple(dict(zip(keys, row)) for row in rows)


_ENTRIES: tuple[_Entry, ...] = (
    # ---- blur
    _Entry("blur.gaussian", _levels(sigma=[1, 2, 3, 4, 5]),
           "Gaussian filter, kernel size floor(4 sigma) + 1", blur.gaussian, blur.gaussian_pad),
    _Entry("blur.motion", _levels(radius=[5, 10, 15, 15, 20], sigma=[3, 5, 7, 9, 12]),
           "one-sided line kernel of 2r+1 Gaussian-weighted taps at a random angle in [-90, 90) degrees",
           blur.motion, blur.motion_pad),
    _Entry("blur.glass", _levels(sigma=[0.7, 0.9, 1.2, 1.4, 1.6], shift=[1, 2, 2, 3, 4], iterations=[1, 1, 2, 2, 2]),
           "Gaussian, then every pixel swapped with a random neighbour within `shift` (per iteration), Gaussian",
           blur.glass, blur.glass_pad),
    _Entry("blur.lens", _levels(radius=[2, 3, 4, 6, 8]), "mean over a flat disk of the given radius",
           blur.lens, blur.lens_pad),
    _Entry("blur.zoom", _levels(max_zoom=[1.02, 1.06, 1.10, 1.14, 1.20], step=[0.02] * 5),
           "mean of the image and its centre zooms 1, 1.02, ..., max_zoom (bilinear)", blur.zoom, blur.zoom_pad),
    _Entry("blur.jitter", _levels(shift=[1, 2, 3, 4, 5]),
           "each pixel takes the pixel at a random offset in [-shift, shift] on both axes", blur.jitter, blur.jitter_pad),
    # ---- noise
    _Entry("noise.gaussian_rgb", _levels(sigma=[0.05, 0.10, 0.15, 0.20, 0.25]),
           "additive Gaussian noise on each RGB channel", noise.gaussian_rgb),
    _Entry("noise.gaussian_ycrcb",
           _levels(sigma_y=[0.05, 0.06, 0.07, 0.08, 0.09], chroma_factor=[1.0, 1.45, 1.9, 2.35, 2.8]),
           "additive Gaussian noise in YCbCr: sigma_y on Y, sigma_y * chroma_factor on Cb and Cr", noise.gaussian_ycrcb),
    _Entry("noise.speckle", _levels(sigma=[0.14, 0.21, 0.28, 0.35, 0.42]),
           "multiplicative Gaussian noise, x + x * N(0, sigma)", noise.speckle),
    _Entry("noise.spatially_correlated", _levels(sigma=[0.08, 0.11, 0.14, 0.18, 0.22]),
           "additive Gaussian noise, then a 3x3 mean filter", noise.spatially_correlated, noise.spatially_correlated_pad),
    _Entry("noise.poisson", _levels(lam=[80, 60, 40, 25, 15]),
           "photon noise, Poisson(x * lam) / lam", noise.poisson),
    _Entry("noise.impulse", _levels(amount=[0.01, 0.03, 0.05, 0.07, 0.10]),
           "salt and pepper: a fraction `amount` of the pixels set to black or white", noise.impulse),
    # ---- compression
    _Entry("compression.jpeg", _levels(quality=[25, 18, 12, 8, 5]), "JPEG encode/decode at this quality",
           compression.jpeg),
    _Entry("compression.jpeg2000", _levels(psnr_db=[29.0, 27.5, 26.0, 24.5, 23.0]),
           "JPEG 2000 encode/decode at a target PSNR (dB)", compression.jpeg2000),
    # ---- brighten
    _Entry("brighten.shift_hsv", _levels(delta=[0.1, 0.2, 0.3, 0.4, 0.5]), "V + delta in HSV", exposure.shift_hsv),
    _Entry("brighten.shift_rgb", _levels(delta=[0.1, 0.15, 0.2, 0.27, 0.35]), "x + delta in RGB", exposure.shift_rgb),
    _Entry("brighten.gamma_hsv", _levels(gamma=[0.7, 0.58, 0.47, 0.36, 0.25]), "V ** gamma in HSV", exposure.gamma_hsv),
    _Entry("brighten.gamma_rgb", _levels(gamma=[0.8, 0.7, 0.6, 0.45, 0.3]), "x ** gamma in RGB", exposure.gamma_rgb),
    # ---- darken
    _Entry("darken.shift_hsv", _levels(delta=[-0.1, -0.2, -0.3, -0.4, -0.5]), "V + delta in HSV", exposure.shift_hsv),
    _Entry("darken.shift_rgb", _levels(delta=[-0.1, -0.15, -0.2, -0.27, -0.35]), "x + delta in RGB", exposure.shift_rgb),
    _Entry("darken.gamma_hsv", _levels(gamma=[1.5, 1.8, 2.2, 2.7, 3.5]), "V ** gamma in HSV", exposure.gamma_hsv),
    _Entry("darken.gamma_rgb", _levels(gamma=[1.4, 1.7, 2.1, 2.6, 3.2]), "x ** gamma in RGB", exposure.gamma_rgb),
    # ---- contrast
    _Entry("contrast_strengthen.scale", _levels(factor=[1.4, 1.7, 2.1, 2.6, 4.0]),
           "mean grey + factor * (x - mean grey)", contrast.scale),
    _Entry("contrast_strengthen.stretch", _levels(exponent=[2, 4, 6, 8, 10]),
           "sigmoid y = 1 / (1 + (mu / x) ** f), mu = channel mean", contrast.stretch),
    _Entry("contrast_weaken.scale", _levels(factor=[0.75, 0.6, 0.45, 0.3, 0.2]),
           "mean grey + factor * (x - mean grey)", contrast.scale),
    _Entry("contrast_weaken.stretch", _levels(exponent=[1.0, 0.9, 0.8, 0.6, 0.4]),
           "sigmoid y = 1 / (1 + (mu / x) ** f), mu = channel mean", contrast.stretch),
    # ---- saturation
    _Entry("saturate_strengthen.hsv", _levels(factor=[3, 6, 12, 20, 64]), "S * factor in HSV, clipped to 1",
           saturation.hsv),
    _Entry("saturate_strengthen.ycrcb", _levels(factor=[2, 3, 5, 8, 16]), "Cb, Cr = 128 + (C - 128) * factor",
           saturation.ycrcb),
    _Entry("saturate_weaken.hsv", _levels(factor=[0.7, 0.55, 0.4, 0.2, 0.0]), "S * factor in HSV", saturation.hsv),
    _Entry("saturate_weaken.ycrcb", _levels(factor=[0.6, 0.4, 0.2, 0.1, 0.0]), "Cb, Cr = 128 + (C - 128) * factor",
           saturation.ycrcb),
    # ---- the rest
    _Entry("oversharpen.unsharp", _levels(alpha=[2.0, 2.8, 4.0, 6.0, 8.0]),
           "unsharp mask (1 + alpha) x - alpha * gaussian_5x5(x), saturating", sharpen.unsharp, sharpen.unsharp_pad),
    _Entry("pixelate.box", _levels(scale=[0.5, 0.4, 0.3, 0.25, 0.2]),
           "box-filter downscale by `scale`, nearest-neighbour upscale", pixelate.box),
    _Entry("quantization.otsu", _levels(classes=[15, 11, 8, 5, 3]),
           "per-channel multi-Otsu classes, levels spread evenly over the channel's [min, max]", quantization.otsu),
    _Entry("quantization.median_cut", _levels(colors=[20, 15, 10, 6, 3]),
           "per-channel 1-D median cut palette, each range mapped to its mean", quantization.median_cut),
    _Entry("quantization.histogram", _levels(bins=[24, 16, 8, 6, 4]),
           "global histogram in equal bins, each bin mapped to its normalised CDF (equalised levels)",
           quantization.histogram),
)

ENTRIES: dict[str, _Entry] = {e.name: e for e in _ENTRIES}

assert len(ENTRIES) == 35 and all(e.name.split(".")[0] in FAMILIES for e in _ENTRIES)
