"""Prompt templates of the paper's appendix ("Prompts Used for Training and Evaluation"), and the tag style.

The template constants reproduce the paper's text word for word, with three mechanical changes (all in
docs/rewards.md): the tags are placeholders so one setting switches between the paper's `[think]`/`[answer]`
and the authors' code's `<think>`/`<answer>`; the image markers "[Ref.]"/"[Dist.]" are dropped because the
images go first in the chat message (reference, then distorted); the opening quote of 'oversharpen',
'pixelate' and 'quantization' is the same curly quote as the other nine (the paper mixes two by accident).

Templates are `str.format` strings; every builder takes an optional `template` so the configuration can
replace the text. Literal braces in a custom template must be doubled (`{{`, `}}`).
"""

from __future__ import annotations

from refine_iqa.distortions.spec import FAMILY_DISPLAY_NAMES as _CATALOGUE_DISPLAY_NAMES

import math
import string
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class TagStyle:
    """The four tag strings a prompt asks for and the parsers look for."""

    name: str
    think_open: str
    think_close: str
    answer_open: str
    answer_close: str

    def placeholders(self) -> dict[str, str]:
        return {
            "think_open": self.think_open,
            "think_close": self.think_close,
            "answer_open": self.answer_open,
            "answer_close": self.answer_close,
        }


PAPER_TAGS = TagStyle("paper", "[think]", "[/think]", "[answer]", "[/answer]")
XML_TAGS = TagStyle("xml", "<think>", "</think>", "<answer>", "</answer>")
TAG_STYLES = {"paper": PAPER_TAGS, "xml": XML_TAGS}


def get_tag_style(tags: TagStyle | str = "paper") -> TagStyle:
    """`TagStyle` from a style or its name ("paper" or "xml")."""
    if isinstance(tags, TagStyle):
        return tags
    if isinstance(tags, str) and tags in TAG_STYLES:
        return TAG_STYLES[tags]
    raise ValueError(f"unknown tag style {tags!r}: use one of {sorted(TAG_STYLES)}")


# Model-facing names of the 12 distortion families, in the paper's order.
DISTORTION_NAMES: tuple[str, ...] = (
    "blur", "noise", "compression", "overexposure", "underexposure", "high contrast", "low contrast",
    "oversaturate", "desaturate", "oversharpen", "pixelate", "quantization",
)

# Family names of the distortion catalogue (REFERENCE section 3) -> the paper's display names, keyed with
# spaces ("contrast strengthen"); the catalogue itself is the source (distortions/spec.py).
FAMILY_DISPLAY_NAMES: dict[str, str] = {k.replace("_", " "): v for k, v in _CATALOGUE_DISPLAY_NAMES.items()}

# Severity level (1..5) -> the word the model chooses from.
SEVERITY_WORDS: dict[int, str] = {
    1: "slight", 2: "noticeable", 3: "relatively obvious", 4: "severe", 5: "catastrophic",
}


def display_family(family: str) -> str:
    """The paper's display name for a catalogue family ('contrast_strengthen' -> 'high contrast').

    Accepts the catalogue name with spaces, '_' or '-' between words, or a display name itself.
    """
    key = " ".join(str(family).replace("_", " ").replace("-", " ").split()).casefold()
    if key in FAMILY_DISPLAY_NAMES:
        return FAMILY_DISPLAY_NAMES[key]
    if key in DISTORTION_NAMES:
        return key
    raise ValueError(
        f"unknown distortion family {family!r}: use one of {sorted(FAMILY_DISPLAY_NAMES)} "
        f"or a display name {list(DISTORTION_NAMES)}"
    )


def severity_word(level: int) -> str:
    if isinstance(level, bool) or not isinstance(level, int) or level not in SEVERITY_WORDS:
        raise ValueError(f"severity level must be an integer 1..5, got {level!r}")
    return SEVERITY_WORDS[level]


_DESCRIPTION_QUESTIONS = (
    "please answer the following three questions one by one: "
    "1. What object appears to have visual distortions? Select only one from {objects}. "
    "2. What visual distortion appears on this object? Choose only one from "
    "\u2018blur\u2019, \u2018noise\u2019, \u2018compression\u2019, \u2018overexposure\u2019, "
    "\u2018underexposure\u2019, \u2018high contrast\u2019, \u2018low contrast\u2019, \u2018oversaturate\u2019, "
    "\u2018desaturate\u2019, \u2018oversharpen\u2019, \u2018pixelate\u2019, and \u2018quantization\u2019. "
    "3. How is the severity of the visual distortion? Select only one from "
    "\u2018slight\u2019, \u2018noticeable\u2019, \u2018relatively obvious\u2019, \u2018severe\u2019, "
    "\u2018catastrophic\u2019. "
    "Please answer the questions in the following format: "
    "{answer_open}chosen object / chosen distortion type / chosen severity{answer_close}"
)
DESCRIPTION_FR_TEMPLATE = "Given the original image and the distorted image, " + _DESCRIPTION_QUESTIONS
DESCRIPTION_NR_TEMPLATE = "Given the distorted image, " + _DESCRIPTION_QUESTIONS

_GROUNDING_REQUEST = (
    "please provide the exact bounding box coordinates of the localized visual distortion area in the "
    "distorted image, represented by the top-left corner coordinates (x1,y1) and the bottom-right corner "
    "coordinates (x2,y2). Directly give your answer within the {answer_open} {answer_close} tags. "
    "The final output should be strictly with the following format: {answer_open} x1,y1,x2,y2 {answer_close}, "
    "and the accuracy should be represented as an integer."
)
GROUNDING_FR_TEMPLATE = "Given the original image and the distorted image, " + _GROUNDING_REQUEST
GROUNDING_NR_TEMPLATE = "Given the distorted image, " + _GROUNDING_REQUEST

_SCORE_QUESTION = (
    "Answer the question: \u201cWhat is your overall rating of the visual quality of this picture? "
    "The rating should be a float between 0 and 5, rounded to one decimal place, with 0-1 representing "
    "very poor quality and 4-5 representing excellent quality,\u201d according to the content of the image. "
)
SCORE_THINK_TEMPLATE = _SCORE_QUESTION + (
    "Firstly, give a thorough thought on this and then output your thought and analysis process within the "
    "{think_open} {think_close} tags and provide your score within the {answer_open} {answer_close} tags "
    "(formatted as Score: Your score). The final output should be in the following format: "
    "{think_open}Your think{think_close}{answer_open}Score:Your score{answer_close}"
)
SCORE_NO_THINK_TEMPLATE = _SCORE_QUESTION + (
    "Directly give your score within the {answer_open} {answer_close} tags (formatted as Score: Your score). "
    "The final output should be in the following format: {answer_open}Score: Your score{answer_close}"
)


def _fill(template: str, values: dict[str, str], what: str) -> str:
    """`template.format(**values)` with an error that names the bad placeholder and the allowed ones."""
    if not isinstance(template, str) or not template.strip():
        raise ValueError(f"{what} template must be a non-empty string, got {template!r}")
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as exc:
        raise ValueError(f"{what} template is not a valid format string ({exc}); double literal braces") from exc
    unknown = sorted(f for f in fields if f not in values)
    if unknown:
        raise ValueError(
            f"{what} template uses unknown placeholder(s) {unknown}; allowed: {sorted(values)} "
            "(double literal braces: '{{' and '}}')"
        )
    return template.format(**values)


def format_candidates(names: Sequence[str]) -> str:
    """Candidate list in the paper's style: ‘red car’, ‘dog’, ‘man’."""
    return ", ".join(f"\u2018{n}\u2019" for n in names)


def _check_objects(objects: Sequence[str]) -> list[str]:
    if isinstance(objects, str) or not isinstance(objects, Sequence) or len(objects) == 0:
        raise ValueError(f"objects must be a non-empty list of object names, got {objects!r}")
    names = []
    for name in objects:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"object names must be non-empty strings, got {name!r} in {list(objects)!r}")
        if "/" in name:
            # '/' separates the three answer fields; a name containing it could never be parsed back.
            raise ValueError(f"object name {name!r} contains '/', which separates the answer fields; rename it")
        names.append(name.strip())
    folded = [" ".join(n.casefold().split()) for n in names]
    if len(set(folded)) != len(folded):
        raise ValueError(f"object names must be distinct (case and spacing ignored), got {names!r}")
    return names


def description_prompt(
    objects: Sequence[str], *, full_reference: bool, tags: TagStyle | str = "paper", template: str | None = None
) -> str:
    """Stage-1 description task: object / distortion / severity multiple choice."""
    style = get_tag_style(tags)
    if template is None:
        template = DESCRIPTION_FR_TEMPLATE if full_reference else DESCRIPTION_NR_TEMPLATE
    values = {**style.placeholders(), "objects": format_candidates(_check_objects(objects))}
    return _fill(template, values, "description")


def grounding_prompt(*, full_reference: bool, tags: TagStyle | str = "paper", template: str | None = None) -> str:
    """Stage-1 grounding task: the box of the distorted region in the (resized) distorted image."""
    style = get_tag_style(tags)
    if template is None:
        template = GROUNDING_FR_TEMPLATE if full_reference else GROUNDING_NR_TEMPLATE
    return _fill(template, style.placeholders(), "grounding")


def score_prompt(*, think: bool, tags: TagStyle | str = "paper", template: str | None = None) -> str:
    """Stage-2 scoring prompt, think or no-think mode."""
    style = get_tag_style(tags)
    if template is None:
        template = SCORE_THINK_TEMPLATE if think else SCORE_NO_THINK_TEMPLATE
    return _fill(template, style.placeholders(), "score")


def build_messages(text: str, n_images: int) -> list[dict]:
    """One user message: `n_images` image slots first (FR: reference then distorted), then the text.

    This is the conversational format TRL's GRPOTrainer and Qwen2.5-VL's chat template take; the images
    themselves travel in the dataset's `images` column in the same order.
    """
    if not isinstance(text, str) or not text:
        raise ValueError("prompt text must be a non-empty string")
    if isinstance(n_images, bool) or not isinstance(n_images, int) or n_images < 0:
        raise ValueError(f"n_images must be a non-negative integer, got {n_images!r}")
    content: list[dict] = [{"type": "image"} for _ in range(n_images)]
    content.append({"type": "text", "text": text})
    return [{"role": "user", "content": content}]


def format_score(s: float) -> str:
    """A score with one decimal ('3.7'): one integer digit and one tenths digit, as the PD reward needs."""
    try:
        value = float(s)
    except (TypeError, ValueError):
        raise ValueError(f"score must be a number, got {s!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"score must be finite, got {s!r}")
    text = f"{value:.1f}"
    if text == "-0.0":
        text = "0.0"
    if not (0.0 <= float(text) <= 9.9):
        raise ValueError(f"score must lie in [0, 9.9] after rounding to one decimal, got {s!r}")
    return text


def no_think_reference_completion(score: float, tags: TagStyle | str = "paper") -> str:
    """The fixed no-think completion used for r_ref of the PD reward: '[answer]Score: 3.7[/answer]'."""
    style = get_tag_style(tags)
    return f"{style.answer_open}Score: {format_score(score)}{style.answer_close}"
