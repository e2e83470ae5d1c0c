"""Names of the distortion families and the record that describes one distortion type."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# The 12 families, in the order of the paper's prompt.
FAMILIES: tuple[str, ...] = (
    "blur",
    "noise",
    "compression",
    "brighten",
    "darken",
    "contrast_strengthen",
    "contrast_weaken",
    "saturate_strengthen",
    "saturate_weaken",
    "oversharpen",
    "pixelate",
    "quantization",
)

# The words the paper's prompts use for each family.
FAMILY_DISPLAY_NAMES: dict[str, str] = {
    "blur": "blur",
    "noise": "noise",
    "compression": "compression",
    "brighten": "overexposure",
    "darken": "underexposure",
    "contrast_strengthen": "high contrast",
    "contrast_weaken": "low contrast",
    "saturate_strengthen": "oversaturate",
    "saturate_weaken": "desaturate",
    "oversharpen": "oversharpen",
    "pixelate": "pixelate",
    "quantization": "quantization",
}

# Table 1's split: families common in natural photos ("easy") and the rest ("hard").
EASY_FAMILIES: tuple[str, ...] = ("blur", "noise", "compression", "brighten", "darken")
HARD_FAMILIES: tuple[str, ...] = tuple(f for f in FAMILIES if f not in EASY_FAMILIES)

LEVELS: tuple[int, ...] = (1, 2, 3, 4, 5)


@dataclass(frozen=True)
class DistortionSpec:
    """One distortion type: `name` is "family.type"; `levels[i]` holds the parameters of level i + 1."""

    family: str
    type: str
    name: str
    levels: tuple[dict[str, Any], ...]
    description: str

    @property
    def display_name(self) -> str:
        return FAMILY_DISPLAY_NAMES[self.family]
