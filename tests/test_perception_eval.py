"""Tables 1-2 arithmetic (refine_iqa.eval.perception) against values worked out by hand."""

from __future__ import annotations

import math

import pytest

from refine_iqa.eval.perception import answer_variety, score_completion, summarise
from refine_iqa.report import _answer_cell, _stage1_answers_section


def _desc(family="blur", fr=False, obj="red car", fam_word="blur", sev="severe"):
    return {"task": "description", "full_reference": fr, "family": family, "answer_object": obj,
            "answer_family": fam_word, "answer_severity": sev}


def _ground(family="blur", fr=False, box=(0, 0, 10, 10), wh=(20, 20)):
    return {"task": "grounding", "full_reference": fr, "family": family, "box_model": list(box),
            "model_wh": list(wh)}


def test_description_all_three_and_per_field():
    s = _desc()
    assert score_completion(s, "[answer]red car / blur / severe[/answer]") == {
        "correct": True, "object_ok": True, "family_ok": True, "severity_ok": True, "parsed": True}
    # case and spacing are normalised; one wrong field makes the whole answer wrong
    assert score_completion(s, "[answer] Red  Car / BLUR / slight [/answer]") == {
        "correct": False, "object_ok": True, "family_ok": True, "severity_ok": False, "parsed": True}


@pytest.mark.parametrize("text", ["", "red car / blur / severe", "[answer]red car / severe[/answer]",
                                  "[answer]red car / blur / severe / x[/answer]", "[answer] / blur / severe[/answer]"])
def test_unparsable_description_is_wrong_on_every_field(text):
    assert score_completion(_desc(), text) == {"correct": False, "object_ok": False, "family_ok": False,
                                               "severity_ok": False, "parsed": False}


def test_grounding_iou_in_model_pixels():
    s = _ground(box=(0, 0, 10, 10), wh=(20, 20))
    # [5,0,15,10] overlaps 5x10 = 50 of a union 100 + 100 - 50 = 150
    assert score_completion(s, "[answer]5,0,15,10[/answer]") == {"iou": pytest.approx(1 / 3), "parsed": True}
    # a box sticking out of the 20x20 image is clipped first: [-10,-10,10,10] -> [0,0,10,10]
    assert score_completion(s, "[answer]-10,-10,10,10[/answer]")["iou"] == pytest.approx(1.0)
    # swapped corners are put in order
    assert score_completion(s, "[answer]10,10,0,0[/answer]")["iou"] == pytest.approx(1.0)
    # a degenerate box parses but has IoU 0; garbage does not parse
    assert score_completion(s, "[answer]10,10,10,92[/answer]") == {"iou": 0.0, "parsed": True}
    assert score_completion(s, "[answer]a,b,c,d[/answer]") == {"iou": 0.0, "parsed": False}


def test_summarise_by_family_easy_hard_and_reference():
    samples = [_desc("blur", fr=True), _desc("blur", fr=False), _desc("oversharpen", fr=False),
               _ground("darken", fr=True, box=(0, 0, 10, 10)), _ground("pixelate", fr=False, box=(0, 0, 10, 10))]
    outcomes = [
        {"correct": True, "object_ok": True, "family_ok": True, "severity_ok": True, "parsed": True},
        {"correct": False, "object_ok": True, "family_ok": False, "severity_ok": True, "parsed": True},
        {"correct": False, "object_ok": False, "family_ok": False, "severity_ok": False, "parsed": False},
        {"iou": 0.5, "parsed": True},
        {"iou": 0.0, "parsed": False},
    ]
    t = summarise(samples, outcomes)
    d = t["description"]
    assert d["all"]["n"] == 3 and d["fr"]["n"] == 1 and d["nr"]["n"] == 2
    assert d["all"]["blur"] == 0.5 and d["all"]["oversharpen"] == 0.0
    assert d["all"]["easy"] == 0.5 and d["all"]["hard"] == 0.0          # blur easy, oversharpen hard
    assert d["all"]["overall"] == pytest.approx(1 / 3)
    assert d["all"]["object_accuracy"] == pytest.approx(2 / 3)
    assert d["all"]["family_accuracy"] == pytest.approx(1 / 3)
    assert d["all"]["severity_accuracy"] == pytest.approx(2 / 3)
    assert d["all"]["parse_rate"] == pytest.approx(2 / 3)
    assert d["fr"]["overall"] == 1.0 and d["nr"]["overall"] == 0.0
    assert math.isnan(d["all"]["noise"])                                # no sample: n/a, not 0
    g = t["grounding"]
    assert g["all"]["overall"] == 0.25 and g["all"]["darken"] == 0.5 and g["all"]["pixelate"] == 0.0
    assert g["all"]["easy"] == 0.5 and g["all"]["hard"] == 0.0 and g["all"]["parse_rate"] == 0.5
    assert g["fr"]["overall"] == 0.5 and g["nr"]["overall"] == 0.0


def test_summarise_empty():
    t = summarise([], [])
    for task in ("description", "grounding"):
        assert t[task]["all"]["n"] == 0
        assert math.isnan(t[task]["all"]["overall"]) and math.isnan(t[task]["all"]["parse_rate"])


def test_answer_variety_detects_a_collapsed_policy():
    samples = [_desc(), _desc(), _desc(), _ground()]
    v = answer_variety(samples, ["[answer]a / b / c[/answer]", " [answer]a / b / c[/answer]\n",
                                 "[answer]x / b / c[/answer]", "[answer]1,2,3,4[/answer]"])
    assert v["description"] == {"n": 3, "distinct": 2, "top_answer": "[answer]a / b / c[/answer]",
                                "top_share": pytest.approx(2 / 3)}
    assert v["grounding"] == {"n": 1, "distinct": 1, "top_answer": "[answer]1,2,3,4[/answer]", "top_share": 1.0}
    empty = answer_variety([], [])
    assert empty["description"]["n"] == 0 and empty["description"]["top_answer"] is None
    assert math.isnan(empty["grounding"]["top_share"])


def test_answer_cell_is_safe_in_a_markdown_table():
    assert _answer_cell("[answer]a | b[/answer]") == "`[answer]a \\| b[/answer]`"
    assert _answer_cell("x`y") == "`x'y`"
    assert _answer_cell("a" * 100, limit=10) == "`aaaaaaa...`"
    assert _answer_cell(None) == "n/a"


def test_stage1_answers_section_reports_parse_rate_variety_and_rewards():
    def model(parse, distinct, top, share):
        tables = {task: {"all": {"parse_rate": parse}} for task in ("description", "grounding")}
        answers = {task: {"n": 4, "distinct": distinct, "top_answer": top, "top_share": share}
                   for task in ("description", "grounding")}
        return {**tables, "answers": answers}

    m = {"configuration": "embedded",
         "perception": {"base": model(0.0, 1, "[answer]x / y[/answer]", 1.0),
                        "stage1": model(0.75, 3, "[answer]a / b / c[/answer]", 0.5),
                        "stage2-main": model(0.5, 2, "[answer]q[/answer]", 0.75)},
         "curves": {"stage1": {"steps": 60, "rewards/description_reward/mean": {"first20": 0.1, "last20": 0.4}}}}
    text = "\n".join(_stage1_answers_section(m))
    assert "| stage1 | 75.00% | 3 / 4 | `[answer]a / b / c[/answer]` (50.00%) | 75.00% | 3 / 4 |" in text
    assert "| base | 0.00% | 1 / 4 | `[answer]x / y[/answer]` (100.00%) |" in text
    assert "| description_reward | 0.100 | 0.400 |" in text
    assert "collapsed" in text and "docs/learnability.md" in text
