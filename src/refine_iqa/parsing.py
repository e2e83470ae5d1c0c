"""Parsers and format checks for model answers. None of them raises on any text: bad text gives None / False.

The "answer block" is the LAST complete one: the last close tag and the last open tag before it. Text after
it (a truncated second block, chatter) does not hide an earlier complete answer. The rules and their reasons
are written out in docs/rewards.md.
"""

from __future__ import annotations

import math
import re
import string
from functools import lru_cache

from refine_iqa.prompts import TagStyle, get_tag_style

# A plain decimal number: '3', '3.7', '.5', '3.', optional sign. No exponent: a model writing '1e3' as a
# score is not giving a one-decimal rating.
_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"
# A score must not run on into a letter or digit ('1e3', '3.7x' are unparsable, not 1 and 3.7); the atomic
# group stops the regex from backing off to a shorter prefix ('3.7x' -> '3').
_SCORE_NUMBER_RE = re.compile(rf"(?>{_NUMBER})(?!\w)")
_SCORE_KEY_RE = re.compile(r"score\s*:", re.IGNORECASE)
_BOX_RE = re.compile(rf"\s*({_NUMBER})\s*,\s*({_NUMBER})\s*,\s*({_NUMBER})\s*,\s*({_NUMBER})\s*")
_BOX_BRACKETS = str.maketrans("", "", "[]()")
# Coordinates beyond this are nonsense for any image (and would overflow later maths): reject the box.
MAX_BOX_COORD = 1e6

_END_CHARS = string.whitespace + string.punctuation + "\u2018\u2019\u201c\u201d\u00ab\u00bb\u201e\u201a\u2039\u203a"


def _answer_span(text: str, tags: TagStyle) -> tuple[int, int] | None:
    """Character span of the content of the last complete answer block."""
    end = text.rfind(tags.answer_close)
    if end < 0:
        return None
    start = text.rfind(tags.answer_open, 0, end)
    if start < 0:
        return None
    return start + len(tags.answer_open), end


def answer_span(text: str, tags: TagStyle | str = "paper") -> tuple[int, int] | None:
    """Character span (in `text`) of the content of the last complete answer block, or None."""
    return _answer_span(text, get_tag_style(tags)) if isinstance(text, str) else None


def answer_content(text: str, tags: TagStyle | str = "paper") -> str | None:
    """Text inside the last complete answer block, or None."""
    span = answer_span(text, tags)
    return None if span is None else text[span[0] : span[1]]


def score_span(text: str, tags: TagStyle | str = "paper") -> tuple[int, int] | None:
    """Span (in `text`) of the number after the last 'Score:' (any case) inside the last answer block.

    Only whitespace may separate 'Score:' and the number, and no letter or digit may follow it ('1e3', '3.7x'
    are unparsable); if the last 'Score:' has no such number, the answer is unparsable (an earlier 'Score:' in
    the same block is not used).
    """
    if not isinstance(text, str):
        return None
    span = _answer_span(text, get_tag_style(tags))
    if span is None:
        return None
    content = text[span[0] : span[1]]
    last_key = None
    for last_key in _SCORE_KEY_RE.finditer(content):
        pass
    if last_key is None:
        return None
    pos = last_key.end()
    while pos < len(content) and content[pos].isspace():
        pos += 1
    number = _SCORE_NUMBER_RE.match(content, pos)
    if number is None:
        return None
    return span[0] + number.start(), span[0] + number.end()


def parse_score(text: str, tags: TagStyle | str = "paper") -> float | None:
    """The predicted score (see `score_span`), or None when absent, unparsable or not finite."""
    span = score_span(text, tags)
    if span is None:
        return None
    value = float(text[span[0] : span[1]])
    return value if math.isfinite(value) else None


def choice_spans(text: str, tags: TagStyle | str = "paper") -> list[tuple[int, int]] | None:
    """Character spans (in `text`) of the 'object / distortion / severity' fields of the last answer block,
    each stripped of surrounding whitespace: exactly three non-empty fields, or None."""
    span = answer_span(text, tags)
    if span is None:
        return None
    spans, start = [], span[0]
    for end in [i for i in range(span[0], span[1]) if text[i] == "/"] + [span[1]]:
        a, b = start, end
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        spans.append((a, b))
        start = end + 1
    if len(spans) != 3 or any(a == b for a, b in spans):
        return None
    return spans


def parse_choices(text: str, tags: TagStyle | str = "paper") -> tuple[str, str, str] | None:
    """'object / distortion / severity' from the last answer block: exactly three non-empty fields."""
    spans = choice_spans(text, tags)
    if spans is None:
        return None
    return tuple(text[a:b] for a, b in spans)


def _round_half_up(value: float) -> int:
    return math.floor(value + 0.5)


def parse_box(text: str, tags: TagStyle | str = "paper") -> tuple[int, int, int, int] | None:
    """'x1,y1,x2,y2' from the last answer block -> integers (x1 <= x2, y1 <= y2).

    Brackets and parentheses are ignored ('[1,2,3,4]', '(1,2),(3,4)'); floats are rounded half up;
    swapped corners are put in order; negative values are kept (IoU clips to the image); any |value| >
    1e6, a non-finite value or anything other than four numbers gives None.
    """
    content = answer_content(text, tags)
    if content is None:
        return None
    match = _BOX_RE.fullmatch(content.translate(_BOX_BRACKETS))
    if match is None:
        return None
    values = [float(v) for v in match.groups()]
    if not all(math.isfinite(v) and abs(v) <= MAX_BOX_COORD for v in values):
        return None
    x1, y1, x2, y2 = (_round_half_up(v) for v in values)
    return min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)


def normalise_choice(s: str) -> str:
    """Casefold, collapse whitespace, strip quotes and punctuation at both ends ("'Red  Car'." -> 'red car')."""
    if not isinstance(s, str):
        return ""
    return " ".join(s.casefold().strip(_END_CHARS).split())


@lru_cache(maxsize=16)
def _format_regexes(tags: TagStyle) -> dict[str, re.Pattern]:
    to, tc = re.escape(tags.think_open), re.escape(tags.think_close)
    ao, ac = re.escape(tags.answer_open), re.escape(tags.answer_close)
    score = r"Score: ?\d\.\d"
    return {
        "think": re.compile(rf"\s*{to}(?P<think>.*?){tc}\s*{ao}{score}{ac}\s*", re.DOTALL),
        "no_think": re.compile(rf"\s*{ao}{score}{ac}\s*"),
        "choice": re.compile(rf"\s*{ao}(?P<body>[^/]+/[^/]+/[^/]+){ac}\s*", re.DOTALL),
        "box": re.compile(rf"\s*{ao}\s*\d+\s*,\s*\d+\s*,\s*\d+\s*,\s*\d+\s*{ac}\s*"),
    }


def _contains_tag(text: str, tags: TagStyle) -> bool:
    return any(t in text for t in (tags.think_open, tags.think_close, tags.answer_open, tags.answer_close))


def is_think_format(text: str, tags: TagStyle | str = "paper") -> bool:
    """Whole text = think block with non-blank content (no tags inside) + answer block 'Score: d.d'.

    Only whitespace is allowed before, between and after the blocks; the space after 'Score:' is optional.
    """
    if not isinstance(text, str):
        return False
    style = get_tag_style(tags)
    match = _format_regexes(style)["think"].fullmatch(text)
    if match is None:
        return False
    think = match.group("think")
    return bool(think.strip()) and not _contains_tag(think, style)


def is_no_think_format(text: str, tags: TagStyle | str = "paper") -> bool:
    """Whole text = answer block 'Score: d.d' (surrounding whitespace allowed)."""
    if not isinstance(text, str):
        return False
    return _format_regexes(get_tag_style(tags))["no_think"].fullmatch(text) is not None


def is_choice_format(text: str, tags: TagStyle | str = "paper") -> bool:
    """Whole text = answer block with three non-blank '/'-separated fields and no tags inside."""
    if not isinstance(text, str):
        return False
    style = get_tag_style(tags)
    match = _format_regexes(style)["choice"].fullmatch(text)
    if match is None:
        return False
    body = match.group("body")
    return all(f.strip() for f in body.split("/")) and not _contains_tag(body, style)


def is_box_format(text: str, tags: TagStyle | str = "paper") -> bool:
    """Whole text = answer block with four non-negative integers 'x1,y1,x2,y2' (spaces allowed, no brackets)."""
    if not isinstance(text, str):
        return False
    return _format_regexes(get_tag_style(tags))["box"].fullmatch(text) is not None
