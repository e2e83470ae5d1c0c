"""The distortion library: 12 families, 35 types, 5 severity levels each.

    from refine_iqa import distortions
    out = distortions.apply(image, "blur.gaussian", 3, seed=0, box=(10, 20, 110, 90))

See docs/distortions.md for every type's parameters, algorithm and the decisions taken.
"""

from ._api import apply, catalog, names, params_for
from .spec import EASY_FAMILIES, FAMILIES, FAMILY_DISPLAY_NAMES, HARD_FAMILIES, LEVELS, DistortionSpec

__all__ = [
    "EASY_FAMILIES",
    "FAMILIES",
    "FAMILY_DISPLAY_NAMES",
    "HARD_FAMILIES",
    "LEVELS",
    "DistortionSpec",
    "apply",
    "catalog",
    "names",
    "params_for",
]
