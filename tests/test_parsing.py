"""Answer parsers and format checks: hand cases for every rule, and property tests that they never raise."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refine_iqa.parsing import (
    answer_content,
    is_box_format,
    is_choice_format,
    is_no_think_format,
    is_think_format,
    normalise_choice,
    parse_box,
    parse_choices,
    parse_score,
    score_span,
)
from refine_iqa.prompts import format_score, no_think_reference_completion

# ----------------------------------------------------------------------------------------------- scores


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[answer]Score: 3.7[/answer]", 3.7),
        ("[answer]Score:3.7[/answer]", 3.7),
        ("[think]fine[/think][answer]Score: 4.2[/answer]", 4.2),
        ("[answer]score:\n 2[/answer]", 2.0),  # any case, any whitespace, integer
        ("[answer]Score: .5[/answer]", 0.5),
        ("[answer]Score: 3.[/answer]", 3.0),
        ("[answer]Score: -1.5[/answer]", -1.5),
        ("[answer]Score: 3.7 out of 5[/answer]", 3.7),
        ("[answer]Score: 3.7/5[/answer]", 3.7),
        ("[answer]Score: 3.7.[/answer]", 3.7),
        ("[answer]Score: 1.0 Score: 2.0[/answer]", 2.0),  # last Score: in the block
        ("[answer]Score: 1.0[/answer] then [answer]Score: 2.0[/answer]", 2.0),  # last block
        ("[answer]Score: 1.0[/answer] then [answer]Score: 2.0", 1.0),  # unclosed block ignored
        ("[answer]Score: 1.0 [answer]Score: 4.0[/answer]", 4.0),  # innermost last block
        ("[think]Score: 4.9[/think][answer]Score: 1.1[/answer]", 1.1),
    ],
)
def test_parse_score(text, expected):
    assert parse_score(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    "text",
    [
        "", "Score: 3.7", "[answer]3.7[/answer]", "[answer]Score: [/answer]", "[answer]Score: high[/answer]",
        "[answer]Score: 3.7", "Score: 3.7[/answer]", "[/answer][answer]Score: 3.7",
        "[answer]Score: 2.0 Score: none[/answer]",  # the last Score: has no number: no fallback
        "[think]Score: 3.7[/think]", "[answer]Score: " + "9" * 400 + "[/answer]",  # overflows to inf
        "[answer]Score: 1e3[/answer]", "[answer]Score: 3.7x[/answer]", "[answer]Score: 3.7_[/answer]",
        "[answer]Score: 3.7é[/answer]", "<answer>Score: 3.7</answer>",
    ],
)
def test_parse_score_none(text):
    assert parse_score(text) is None


def test_parse_score_xml_tags_and_span():
    text = "<think>ok</think><answer>Score: 3.7</answer>"
    assert parse_score(text, "xml") == pytest.approx(3.7)
    assert parse_score(text, "paper") is None
    start, end = score_span(text, "xml")
    assert text[start:end] == "3.7"
    # Substituting the ground truth there gives the teacher-forced PD text.
    assert text[:start] + "4.1" + text[end:] == "<think>ok</think><answer>Score: 4.1</answer>"
    text = "[answer]Score: 1 Score:  -2.25 x[/answer]"
    start, end = score_span(text)
    assert (text[start:end], start) == ("-2.25", text.index("-2.25"))
    assert score_span("no answer") is None


# ---------------------------------------------------------------------------------------------- choices


def test_parse_choices():
    assert parse_choices("[answer]red car / blur / slight[/answer]") == ("red car", "blur", "slight")
    assert parse_choices("x [answer] dog/high contrast/ relatively obvious [/answer] ") == \
        ("dog", "high contrast", "relatively obvious")
    assert parse_choices("<answer>a / b / c</answer>", "xml") == ("a", "b", "c")
    for bad in ("[answer]a / b[/answer]", "[answer]a / b / c / d[/answer]", "[answer]a /  / c[/answer]",
                "a / b / c", "[answer]a / b / c", ""):
        assert parse_choices(bad) is None


def test_normalise_choice():
    assert normalise_choice("  ‘Red   Car’. ") == "red car"
    assert normalise_choice('"High\tContrast"') == "high contrast"
    assert normalise_choice("Relatively OBVIOUS!") == "relatively obvious"
    assert normalise_choice("t-shirt") == "t-shirt"  # inner punctuation kept
    assert normalise_choice("STRASSE") == normalise_choice("straße")  # casefold, not lower
    assert normalise_choice("...") == ""
    assert normalise_choice(None) == ""


# ------------------------------------------------------------------------------------------------ boxes


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[answer] 10,20,30,40 [/answer]", (10, 20, 30, 40)),
        ("[answer][10, 20, 30, 40][/answer]", (10, 20, 30, 40)),
        ("[answer](10,20),(30,40)[/answer]", (10, 20, 30, 40)),
        ("[answer]30,40,10,20[/answer]", (10, 20, 30, 40)),  # swapped corners reordered
        ("[answer]10,40,30,20[/answer]", (10, 20, 30, 40)),
        ("[answer]-5,-1,3,4[/answer]", (-5, -1, 3, 4)),  # negatives kept, IoU clips
        ("[answer]10.4,20.5,29.5,39.6[/answer]", (10, 21, 30, 40)),  # rounded half up
        ("[answer]-0.5,-1.5,2,2[/answer]", (0, -1, 2, 2)),  # floor(x + 0.5): -0.5 -> 0, -1.5 -> -1
        ("[answer]1000000,0,0,1[/answer]", (0, 0, 1000000, 1)),
        ("<answer>1,2,3,4</answer>", None),  # wrong tag style
    ],
)
def test_parse_box(text, expected):
    assert parse_box(text) == expected


@pytest.mark.parametrize(
    "text",
    ["[answer]1,2,3[/answer]", "[answer]1,2,3,4,5[/answer]", "[answer]1 2 3 4[/answer]", "[answer]a,b,c,d[/answer]",
     "[answer]1000001,0,5,5[/answer]", "[answer]1,2,3,4", "1,2,3,4", "[answer]x1,y1,x2,y2[/answer]",
     "[answer]1,2,3," + "9" * 400 + "[/answer]", "[answer]box: 1,2,3,4[/answer]"],
)
def test_parse_box_none(text):
    assert parse_box(text) is None


def test_parse_box_xml():
    assert parse_box("<answer>5,6,7,8</answer>", "xml") == (5, 6, 7, 8)


# ------------------------------------------------------------------------------------------- format checks


@pytest.mark.parametrize(
    "text, ok",
    [
        ("[think]The image is sharp.[/think][answer]Score: 4.2[/answer]", True),
        ("\n [think]x[/think]\n[answer]Score:0.0[/answer]\n", True),
        ("[think]multi\nline[/think][answer]Score: 3.7[/answer]", True),
        ("[think]   [/think][answer]Score: 3.7[/answer]", False),  # blank think
        ("[think][/think][answer]Score: 3.7[/answer]", False),
        ("[think]a[/think][answer]Score: 3.75[/answer]", False),  # two decimals
        ("[think]a[/think][answer]Score: 3[/answer]", False),  # no decimal
        ("[think]a[/think][answer]Score: 12.0[/answer]", False),  # one integer digit
        ("[think]a[/think][answer]Score:  3.7[/answer]", False),  # at most one space
        ("[think]a[/think][answer] Score: 3.7[/answer]", False),
        ("[think]a[/think][answer]score: 3.7[/answer]", False),
        ("[think]a[/think][answer]Score: 3.7[/answer] done", False),  # text outside
        ("Sure! [think]a[/think][answer]Score: 3.7[/answer]", False),
        ("[think]a[/think]b[answer]Score: 3.7[/answer]", False),
        ("[think]a[/think][think]b[/think][answer]Score: 3.7[/answer]", False),  # tags inside think
        ("[think]a [answer]x[/think][answer]Score: 3.7[/answer]", False),
        ("[answer]Score: 3.7[/answer]", False),
        ("<think>a</think><answer>Score: 3.7</answer>", False),
    ],
)
def test_is_think_format(text, ok):
    assert is_think_format(text) is ok


def test_is_think_format_xml():
    assert is_think_format("<think>a</think><answer>Score: 3.7</answer>", "xml")
    assert not is_think_format("[think]a[/think][answer]Score: 3.7[/answer]", "xml")


@pytest.mark.parametrize(
    "text, ok",
    [("[answer]Score: 3.7[/answer]", True), (" [answer]Score:4.0[/answer]\n", True),
     ("[think]a[/think][answer]Score: 3.7[/answer]", False), ("[answer]Score: 3.7[/answer].", False),
     ("[answer]Score: 37[/answer]", False), ("[answer]3.7[/answer]", False), ("", False)],
)
def test_is_no_think_format(text, ok):
    assert is_no_think_format(text) is ok


@pytest.mark.parametrize(
    "text, ok",
    [("[answer]red car / blur / slight[/answer]", True), ("\n[answer]a/b/c[/answer] ", True),
     ("[answer]a / b[/answer]", False), ("[answer]a / b / c / d[/answer]", False),
     ("[answer]a /   / c[/answer]", False), ("Here: [answer]a / b / c[/answer]", False),
     ("[answer]a / [answer]b / c[/answer]", False), ("[think]x[/think][answer]a / b / c[/answer]", False)],
)
def test_is_choice_format(text, ok):
    assert is_choice_format(text) is ok


@pytest.mark.parametrize(
    "text, ok",
    [("[answer] 10,20,30,40 [/answer]", True), ("[answer]10, 20, 30, 40[/answer]", True),
     ("[answer][10,20,30,40][/answer]", False), ("[answer]10.5,20,30,40[/answer]", False),
     ("[answer]-1,20,30,40[/answer]", False), ("[answer]1,2,3[/answer]", False),
     ("box [answer]1,2,3,4[/answer]", False)],
)
def test_is_box_format(text, ok):
    assert is_box_format(text) is ok


# ------------------------------------------------------------------------------------------ property tests

_ANY = st.one_of(
    st.text(max_size=300),
    st.text(alphabet="[]/answerthinkScore:<>0123456789.,-+ e\n", max_size=200),
    st.builds(lambda a, b: f"[answer]{a}[/answer]{b}", st.text(max_size=80), st.text(max_size=20)),
    st.builds(lambda a: f"[answer]Score: {a}[/answer]", st.text(alphabet="0123456789.-+e", max_size=500)),
)


@settings(max_examples=300, deadline=None)
@given(_ANY)
def test_parsers_never_raise(text):
    for tags in ("paper", "xml"):
        score = parse_score(text, tags)
        assert score is None or math.isfinite(score)
        span = score_span(text, tags)
        assert span is None or float(text[span[0]:span[1]]) == score or score is None
        choices = parse_choices(text, tags)
        assert choices is None or (len(choices) == 3 and all(choices))
        box = parse_box(text, tags)
        assert box is None or (box[0] <= box[2] and box[1] <= box[3] and all(abs(v) <= 1e6 for v in box))
        answer_content(text, tags)
        for check in (is_think_format, is_no_think_format, is_choice_format, is_box_format):
            assert check(text, tags) in (True, False)
        normalise_choice(text)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 99), st.sampled_from(["paper", "xml"]), st.text(min_size=1, max_size=40))
def test_score_round_trip(tenths, tags, thought):
    value = tenths / 10
    no_think = no_think_reference_completion(value, tags)
    assert is_no_think_format(no_think, tags)
    assert parse_score(no_think, tags) == pytest.approx(value)
    open_t, close_t = ("[think]", "[/think]") if tags == "paper" else ("<think>", "</think>")
    think = f"{open_t}{thought}{close_t}{no_think}"
    assert parse_score(think, tags) == pytest.approx(value)
    style_tags = ("[think]", "[/think]", "[answer]", "[/answer]") if tags == "paper" else \
        ("<think>", "</think>", "<answer>", "</answer>")
    tag_free = not any(t in thought for t in style_tags)  # the other style's tags are plain text
    assert is_think_format(think, tags) is (bool(thought.strip()) and tag_free)
    assert float(format_score(value)) == pytest.approx(value)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 10**6), min_size=4, max_size=4), st.sampled_from(["paper", "xml"]))
def test_box_round_trip(values, tags):
    a_open, a_close = ("[answer]", "[/answer]") if tags == "paper" else ("<answer>", "</answer>")
    text = f"{a_open} {','.join(map(str, values))} {a_close}"
    x1, y1, x2, y2 = values
    assert parse_box(text, tags) == (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))
    assert is_box_format(text, tags)


_FIELD = st.text(alphabet=st.characters(blacklist_characters="/[]<>", blacklist_categories=("Cs",)), max_size=20) \
    .filter(lambda s: s.strip())


@settings(max_examples=200, deadline=None)
@given(_FIELD, _FIELD, _FIELD)
def test_choices_round_trip(obj, family, severity):
    text = f"[answer]{obj} / {family} / {severity}[/answer]"
    assert parse_choices(text) == (obj.strip(), family.strip(), severity.strip())
    assert is_choice_format(text)
