"""Q-Bench LLVisionQA loader, prompt, answer parser and Table 4 accuracies."""

from __future__ import annotations

import json
import math

import pytest
from fixtures_iqa import LLVISIONQA_ITEMS, write_llvisionqa
from hypothesis import given, settings
from hypothesis import strategies as st

from refine_iqa.data import qbench as Q


def test_load_records(tmp_path):
    write_llvisionqa(tmp_path)
    recs = Q.load_llvisionqa(tmp_path, "test")
    assert len(recs) == 6
    r = recs[1]
    assert r["id"] == "llvisionqa-test-0001" and r["split"] == "test"
    assert r["image_path"] == str(tmp_path / "images" / "00002.jpg")
    assert r["answer_index"] == 0 and r["type_name"] == "what" and r["concern_name"] == "technical"
    assert [x["concern_name"] for x in recs] == ["technical", "technical", "other", "in-context technical",
                                                 "in-context other", "in-context technical"]


def test_dev_split_and_other_image_folder(tmp_path):
    write_llvisionqa(tmp_path, split="dev", folder="images_llvisionqa")
    recs = Q.load_llvisionqa(tmp_path, "dev")
    assert "images_llvisionqa" in recs[0]["image_path"]


def test_string_categories_and_withheld_answers(tmp_path):
    items = [dict(LLVISIONQA_ITEMS[0], type="Yes-or-No", concern="In-context Distortion"),
             {k: v for k, v in LLVISIONQA_ITEMS[2].items() if k != "correct_ans"}]
    items[1]["type"], items[1]["concern"] = "how", "other"
    write_llvisionqa(tmp_path, items)
    recs = Q.load_llvisionqa(tmp_path)
    assert (recs[0]["type"], recs[0]["concern"]) == (0, 2)
    assert recs[1]["correct_ans"] is None and recs[1]["answer_index"] is None
    with pytest.raises(ValueError, match="has no correct answer"):
        Q.qbench_accuracy(recs, [0, 0])


@pytest.mark.parametrize("mutate, message", [
    (lambda it: it.pop("candidates"), r"item 0 \(0-based\): missing field\(s\) \['candidates'\]"),
    (lambda it: it.update(candidates=["Yes"]), "at least 2 strings"),
    (lambda it: it.update(correct_ans="Maybe"), r"'correct_ans' 'Maybe' is not one of the candidates"),
    (lambda it: it.update(type=5), r"field 'type' must be 0\.\.2"),
    (lambda it: it.update(concern="aesthetic"), r"field 'concern' must be 0\.\.3"),
])
def test_bad_items(tmp_path, mutate, message):
    it = dict(LLVISIONQA_ITEMS[0])
    mutate(it)
    write_llvisionqa(tmp_path, [it], images=False)
    with pytest.raises(ValueError, match=message):
        Q.load_llvisionqa(tmp_path, check_images=False)


def test_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="llvisionqa_test.json not found"):
        Q.load_llvisionqa(tmp_path)
    (tmp_path / "llvisionqa_test.json").write_text('{"a": 1}')
    with pytest.raises(ValueError, match="expected a non-empty JSON list"):
        Q.load_llvisionqa(tmp_path)
    (tmp_path / "llvisionqa_test.json").write_text("[\n{,")
    with pytest.raises(ValueError, match="line 2: invalid JSON"):
        Q.load_llvisionqa(tmp_path)
    with pytest.raises(ValueError, match="split must be"):
        Q.load_llvisionqa(tmp_path, "train")


def test_missing_images(tmp_path):
    write_llvisionqa(tmp_path)
    (tmp_path / "images" / "00003.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of 6 images listed in .* missing .*: 00003\.jpg"):
        Q.load_llvisionqa(tmp_path)


def test_build_mcq_prompt():
    p = Q.build_mcq_prompt("Is this image blurry? ", ["Yes", "No"])
    assert p == "Is this image blurry?\nA. Yes\nB. No\nAnswer with the option's letter from the given choices."
    assert Q.build_mcq_prompt("Q", ["x", "y", "z"], instruction=None) == "Q\nA. x\nB. y\nC. z"
    with pytest.raises(ValueError):
        Q.build_mcq_prompt("Q", [])


YN = ["Yes", "No"]
LVL = ["low", "very low", "high"]


@pytest.mark.parametrize("text, cands, want", [
    ("B", YN, 1), ("b", YN, 1), ("(A)", YN, 0), ("A.", YN, 0), ("B) No", YN, 1), ("A. Yes, it is blurry.", YN, 0),
    ("A. No", YN, None),                      # letter contradicts the text
    ("No", YN, 1), (" yes. ", YN, 0), ("No, the image is sharp.", YN, 1),
    ("Yes and no", YN, None),                 # names both
    ("The answer is B.", YN, 1), ("Answer: A", YN, 0),
    ("the answer is a blurry photo", YN, None),  # lower-case article is not option A
    ("A lot of noise", YN, None),             # capital article followed by a space is not a letter
    ("C", YN, None),                          # letter out of range
    ("very low", LVL, 1), ("The quality is very low.", LVL, 1), ("low", LVL, 0),
    ("[think]It is noisy.[/think][answer]C[/answer]", LVL, 2), ("<answer>high</answer>", LVL, 2),
    ("", YN, None), (None, YN, None), (42, YN, None), ("Maybe", YN, None),
])
def test_parse_choice(text, cands, want):
    assert Q.parse_choice(text, cands) == want


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(), st.none(), st.integers()), st.lists(st.text(), max_size=5))
def test_parse_choice_never_raises(text, cands):
    out = Q.parse_choice(text, cands)
    assert out is None or 0 <= out < len(cands)


def test_qbench_accuracy_by_type_and_concern(tmp_path):
    write_llvisionqa(tmp_path)
    recs = Q.load_llvisionqa(tmp_path)
    # answers: 0 Yes, 0 noise, 2 poor, 1 No, 0 vivid, 0 the face
    preds = [0, "B", "C. poor", None, "vivid", 1]
    out = Q.qbench_accuracy(recs, preds)
    acc = out["accuracy"]
    # correct: q0, q2, q4 -> 3 of 6
    assert acc["overall"] == pytest.approx(0.5) and out["correct"]["overall"] == 3
    assert acc["yes-or-no"] == pytest.approx(0.5)      # q0 right, q3 unanswered
    assert acc["what"] == 0.0                           # q1, q5 wrong
    assert acc["how"] == 1.0                            # q2, q4 right
    assert acc["technical"] == pytest.approx(0.5)       # q0 right, q1 wrong
    assert acc["other"] == 1.0
    assert acc["in-context technical"] == 0.0
    assert acc["in-context other"] == 1.0
    assert out["total"] == {"yes-or-no": 2, "what": 2, "how": 2, "technical": 2, "other": 1,
                            "in-context technical": 2, "in-context other": 1, "overall": 6}
    assert out["unanswered"] == 1


def test_qbench_accuracy_empty_group_and_errors(tmp_path):
    write_llvisionqa(tmp_path, [LLVISIONQA_ITEMS[0]])
    recs = Q.load_llvisionqa(tmp_path)
    out = Q.qbench_accuracy(recs, ["Yes"])
    assert out["accuracy"]["overall"] == 1.0 and math.isnan(out["accuracy"]["how"])
    json.dumps(out)  # JSON-ready (NaN allowed by json)
    with pytest.raises(ValueError, match="1 records but 2 predictions"):
        Q.qbench_accuracy(recs, [0, 1])
    with pytest.raises(ValueError, match="must be an int, None or text"):
        Q.qbench_accuracy(recs, [0.5])
