"""Blind baselines (refine_iqa.eval.blind) against hand-worked values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from refine_iqa.eval import blind


def _item(obj, objects, family, level, box=(0, 0, 10, 10), wh=(10, 10)):
    return {"object": obj, "objects": objects, "family": family, "level": level, "box": list(box),
            "width": wh[0], "height": wh[1]}


def test_description_constant_answer_is_the_joint_mode_and_fields_use_their_own_majority():
    # (family, severity) pairs: (blur, 5) x2, (noise, 1) x1, (noise, 2) x1 -> joint mode (blur, 5);
    # family majority: blur 2 / noise 2, a tie -> the smaller display word.
    # The first item is NOT the mode, so an answer copied from the first item fails this test.
    items = [_item("dog", ["dog", "cat"], "noise", 1), _item("cat", ["cat", "dog"], "blur", 5),
             _item("cat", ["cat"], "blur", 5), _item("dog", ["cat", "dog"], "noise", 2)]
    ans, out = blind.description_outcomes(items)
    from refine_iqa import prompts

    blur, noise = prompts.display_family("blur"), prompts.display_family("noise")
    assert (ans["family"], ans["severity"]) == (blur, prompts.severity_word(5))
    assert ans["family_majority"] == min(blur, noise)  # 2-2 tie goes to the smaller word
    # Objects: cat 2, dog 2 over the split, a tie -> the first listed: dog (right), cat (right), cat (right),
    # cat (wrong: the answer is dog).
    assert [o["object_ok"] for o in out] == [True, True, True, False]
    # all three right: items 1 and 2 (blur / catastrophic, object right).
    assert [o["correct"] for o in out] == [False, True, True, False]


def test_blind_object_prefers_the_most_frequent_listed_object():
    assert blind.blind_object({"objects": ["car", "tree"]}, {"tree": 3, "car": 1}) == "tree"
    assert blind.blind_object({"objects": ["car", "tree"]}, {}) == "car"  # no counts: first listed


def test_mean_iou_hand_worked():
    truth = np.array([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]])
    # Whole image vs each quarter: IoU 0.25 each.
    assert blind.mean_iou(np.array([[0.0, 0.0, 1.0, 1.0]]), truth)[0] == pytest.approx(0.25)
    # The first quarter itself: 1 and 0 -> 0.5.
    assert blind.mean_iou(np.array([[0.0, 0.0, 0.5, 0.5]]), truth)[0] == pytest.approx(0.5)
    # Degenerate candidate (zero area) scores 0, never NaN.
    assert blind.mean_iou(np.array([[0.2, 0.2, 0.2, 0.6]]), truth)[0] == 0.0


def test_best_constant_box_finds_the_shared_box_and_beats_the_whole_image():
    # Every truth box is the same: the best constant box is that box, IoU 1.
    truth = np.tile([0.1, 0.2, 0.6, 0.9], (5, 1))
    box, value = blind.best_constant_box(truth)
    assert value == pytest.approx(1.0)
    assert box == pytest.approx((0.1, 0.2, 0.6, 0.9), abs=1e-9)
    # Two disjoint quarters: picking one of them (IoU 0.5) beats any box covering both (at most 0.25 + ...).
    two = np.array([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]])
    box, value = blind.best_constant_box(two)
    assert value == pytest.approx(0.5)


def test_relative_boxes_and_bad_box_error():
    items = [_item("a", ["a"], "blur", 1, box=(10, 20, 30, 60), wh=(40, 80))]
    assert blind.relative_boxes(items).tolist() == [[0.25, 0.25, 0.75, 0.75]]
    with pytest.raises(ValueError, match="outside"):
        blind.relative_boxes([_item("a", ["a"], "blur", 1, box=(0, 0, 50, 10), wh=(40, 80))])
    with pytest.raises(ValueError, match="empty"):
        blind.perception_baseline([])


def test_perception_baseline_tables_have_the_summary_layout():
    items = [_item("cat", ["cat"], "blur", 5, box=(0, 0, 5, 5)), _item("cat", ["cat"], "noise", 5, box=(0, 0, 5, 5))]
    t = blind.perception_baseline(items)
    for ref in ("all", "fr", "nr"):
        assert t["grounding"][ref]["overall"] == pytest.approx(1.0)  # same box for both: found exactly
        assert t["description"][ref]["overall"] == pytest.approx(0.5)  # one of two families
        assert t["description"][ref]["blur"] == 1.0 and t["description"][ref]["noise"] == 0.0
    assert t["description"]["all"]["n"] == 4 and t["description"]["fr"]["n"] == 2


def test_scoring_baseline_hand_worked():
    # mos 1.0, 1.2, 1.45, 4.0: a score in (0.95, 1.5) hits three -> first grid point 1.0; 0.9 hits two
    # (|1.45 - 0.9| = 0.55). Median 1.325; MAE = (0.325 + 0.125 + 0.125 + 2.675) / 4 = 0.8125.
    # (Values on the 0.5 boundary are avoided: metrics.hit_rate compares unrounded floats.)
    b = blind.scoring_baseline([1.0, 1.2, 1.45, 4.0])
    assert b["hit_rate"] == pytest.approx(0.75) and b["hit_score"] == 1.0
    assert b["mae_score"] == pytest.approx(1.325) and b["mae"] == pytest.approx(0.8125)
    assert b["srcc"] == 0.0
    with pytest.raises(ValueError):
        blind.scoring_baseline([])
    with pytest.raises(ValueError):
        blind.scoring_baseline([1.0, math.nan])


def test_qbench_baseline_picks_the_text_most_often_right_on_the_other_questions():
    recs = [{"candidates": ["Yes", "No"], "answer_index": 0, "type": 0, "concern": 0},
            {"candidates": ["No", "Yes"], "answer_index": 1, "type": 0, "concern": 0},
            {"candidates": ["Yes", "No"], "answer_index": 1, "type": 0, "concern": 1},
            {"candidates": ["blur", "noise", "yes"], "answer_index": 1, "type": 1, "concern": 0},
            {"candidates": ["high", "low"], "answer_index": 1, "type": 2, "concern": 0},
            {"candidates": ["low", "high"], "answer_index": 1, "type": 2, "concern": 0}]
    choices = blind.qbench_text_prior(recs)
    # Right texts: yes x2, no, noise, low, high. Leaving each question's own answer out:
    # q0 yes 1 / no 1 -> tie, earlier "Yes" (right); q1 no 1 / yes 1 -> earlier "No" (wrong);
    # q2 yes 2 / no 0 -> "Yes" (wrong); q3 blur 0 / noise 0 / yes 2 -> "yes" (wrong);
    # q4 high 1 / low 0 -> "high" (wrong); q5 low 1 / high 0 -> "low" (wrong).
    # (Counting its own answer, the in-sample prior also gets q1 right: 2/6.)
    assert choices == [0, 0, 0, 2, 0, 0]
    # the right answers sit at B on 5 of 6 questions, so the baseline itself is "always B" here
    b = blind.qbench_baseline(recs)
    assert b["strategy"] == "letter B" and b["accuracy"]["overall"] == pytest.approx(5 / 6)


def test_qbench_baseline_keeps_the_text_prior_when_it_is_better():
    """'Yes' is right four times at alternating positions: the text prior gets q0-q3 (4/5), a letter 2/5."""
    recs = [{"candidates": ["Yes", "No"], "answer_index": 0, "type": 0, "concern": 0},
            {"candidates": ["No", "Yes"], "answer_index": 1, "type": 0, "concern": 0},
            {"candidates": ["Yes", "No"], "answer_index": 0, "type": 0, "concern": 1},
            {"candidates": ["No", "Yes"], "answer_index": 1, "type": 0, "concern": 1},
            {"candidates": ["a", "b", "c"], "answer_index": 2, "type": 1, "concern": 0}]
    b = blind.qbench_baseline(recs)
    assert b["strategy"] == "text" and b["choices"] == [0, 1, 0, 1, 0]
    assert b["accuracy"]["overall"] == pytest.approx(4 / 5)
    assert b["accuracy"]["yes-or-no"] == pytest.approx(1.0) and b["accuracy"]["what"] == 0.0


def test_qbench_baseline_cannot_memorise_unique_answers():
    """Every right text unique, never at A: an in-sample text prior would score 100%; leave-one-out has no
    votes, takes the first option (A) and scores 0; the best constant letter scores half (B and C each right on
    2 of 4; first best: B)."""
    recs = [{"candidates": [f"d{k}", f"e{k}", f"r{k}"], "answer_index": 1 if k < 2 else 2, "type": 1,
             "concern": 0} for k in range(4)]
    assert blind.qbench_text_prior(recs) == [0, 0, 0, 0]
    b = blind.qbench_baseline(recs)
    assert b["strategy"] == "letter B" and b["choices"] == [1, 1, 1, 1]
    assert b["accuracy"]["overall"] == pytest.approx(0.5)


def test_qbench_baseline_takes_a_constant_letter_when_it_beats_the_text_prior():
    """The answers sit mostly at B: 'always B' ignores the image and scores 3/5. The text prior (leave-one-out)
    gets 1/5 here. A 2-option question cannot be answered C, so the letter C scores only its 3-option hits."""
    recs = [{"candidates": ["Yes", "No"], "answer_index": 1, "type": 0, "concern": 0},       # right: No
            {"candidates": ["No", "Yes"], "answer_index": 1, "type": 0, "concern": 0},       # right: Yes
            {"candidates": ["blur", "noise", "haze"], "answer_index": 1, "type": 1, "concern": 0},
            {"candidates": ["low", "high", "mid"], "answer_index": 2, "type": 2, "concern": 1},
            {"candidates": ["sharp", "soft"], "answer_index": 0, "type": 2, "concern": 1}]
    # Text prior, leave-one-out: q0 Yes 1 / No 0 -> "Yes" (wrong); q1 No 1 / Yes 0 -> "No" (wrong);
    # q2..q4: every option 0 votes -> A: blur (wrong), low (wrong), sharp (right): 1/5.
    # Letters: A right on q4 only (1/5), B on q0, q1, q2 (3/5), C on q3 only (1/5).
    b = blind.qbench_baseline(recs)
    assert b["strategy"] == "letter B"
    assert b["choices"] == [1, 1, 1, 1, 1]
    assert b["accuracy"]["overall"] == pytest.approx(3 / 5)
    assert b["accuracy"]["yes-or-no"] == pytest.approx(1.0) and b["accuracy"]["how"] == 0.0
    # a letter beyond a question's options is no answer: C wins on three 3-option questions (unique texts, so
    # the text prior has no votes and scores 0) and must not "answer" the 2-option one
    recs_c = [{"candidates": [f"x{k}", f"y{k}", f"z{k}"], "answer_index": 2, "type": 1, "concern": 0}
              for k in range(3)] + [{"candidates": ["p", "q"], "answer_index": 1, "type": 1, "concern": 0}]
    c = blind.qbench_baseline(recs_c)
    assert c["strategy"] == "letter C" and c["choices"] == [2, 2, 2, None]
    assert c["accuracy"]["overall"] == pytest.approx(3 / 4) and c["unanswered"] == 1
    # the report's Table 4 names the strategy (metrics written before it existed were the text prior)
    from refine_iqa import report
    assert report._qbench_blind_how(c) == "always answer C (the letter right most often)"
    assert report._qbench_blind_how({}) == "the option text most often right on the other questions"


def test_ablation_spread_paired_bootstrap(tmp_path):
    """no_pd identical to main: gap 0 and no spread; no_pm reversed: a gap of -2 (SRCC 1 -> -1) outside
    any spread. Hand-worked: SRCC of the truth order is 1, of the reversed order -1, on every resample."""
    from refine_iqa import report
    from refine_iqa.io_utils import write_jsonl

    labels = [0.1, 0.5, 0.9, 1.3, 2.0, 2.2, 3.1, 4.0]
    pred_dir = tmp_path / "work" / "predictions"

    def preds(name, probs):
        write_jsonl(pred_dir / f"scoring-{name}.jsonl",
                    [{"dataset": "synthetic", "mode": mode, "item_id": f"i{k}", "prob": p, "label": y}
                     for mode in ("think", "no_think") for k, (p, y) in enumerate(zip(probs, labels))])

    preds("stage2-main", labels)
    preds("stage2-no_pd", list(labels))
    preds("stage2-no_pm", labels[::-1])
    out = report.ablation_spread({"paths": {"work": str(tmp_path / "work")}}, ["main", "no_pd", "no_pm"])
    same, rev = out["no_pd"]["synthetic"], out["no_pm"]["synthetic"]
    assert same["gap"] == 0.0 and same["p05"] == 0.0 and same["p95"] == 0.0
    assert rev["gap"] == pytest.approx(-2.0)
    # A resample with a single distinct image has constant labels (SRCC NaN) and is left out; every other
    # resample keeps the order of the distinct images, so the gap stays -2.
    assert rev["p95"] == pytest.approx(-2.0)
    assert set(out) == {"no_pd", "no_pm"} and same["n"] == 8


def test_skill_kept_after_stage2():
    from refine_iqa.report import skill_kept

    assert skill_kept(0.5, 0.9, 0.8) == pytest.approx(0.75)  # 0.3 of a 0.4 gain kept
    assert skill_kept(0.5, 0.9, 0.5) == pytest.approx(0.0)  # back to the base
    assert skill_kept(0.5, 0.9, 0.3) == pytest.approx(-0.5)  # below the base
    assert skill_kept(0.5, 0.9, 1.0) == pytest.approx(1.25)  # Stage-2 improved on it
    assert math.isnan(skill_kept(0.5, 0.5, 0.7))  # Stage-1 gained nothing: nothing to keep
    assert math.isnan(skill_kept(0.5, 0.4, 0.7))
    assert math.isnan(skill_kept(math.nan, 0.9, 0.7))


def test_skill_kept_section_rows():
    from refine_iqa.report import _skill_kept_section

    def perc(fam, overall, iou):
        return {"description": {"all": {"family_accuracy": fam, "overall": overall}},
                "grounding": {"all": {"overall": iou}}}

    m = {"perception": {"base": perc(0.5, 0.1, 0.2), "stage1": perc(0.9, 0.1, 0.4), "stage2-main": perc(0.8, 0.2, 0.3)}}
    text = "\n".join(_skill_kept_section(m))
    assert "| distortion-family accuracy | 50.00% | 90.00% | 80.00% | - | 75% |" in text
    assert "| description accuracy (all fields) | 10.00% | 10.00% | 20.00% | - | n/a (Stage-1 gained nothing) |" in text
    assert "| grounding IoU | 0.200 | 0.400 | 0.300 | - | 50% |" in text
    # with the blind baselines: a Stage-1 gain that does not beat blind is no skill, its share not printed
    # (the make run of 2026-12-07: IoU base 0.109, Stage-1 0.121, Stage-2 0.000, blind 0.146 printed -934%)
    m["perception"]["stage1"] = perc(0.9, 0.1, 0.121)
    m["perception"]["base"] = perc(0.5, 0.1, 0.109)
    m["perception"]["stage2-main"] = perc(0.8, 0.2, 0.0)
    m["blind"] = {"perception": perc(0.9, 0.05, 0.146)}
    text = "\n".join(_skill_kept_section(m))
    assert "| grounding IoU | 0.109 | 0.121 | 0.000 | 0.146 | n/a (Stage-1 not above blind) |" in text
    assert "| distortion-family accuracy | 50.00% | 90.00% | 80.00% | 90.00% | n/a (Stage-1 not above blind) |" in text
    assert "| description accuracy (all fields) | 10.00% | 10.00% | 20.00% | 5.00% | n/a (Stage-1 gained nothing) |" in text
    m["blind"] = {"perception": perc(0.6, 0.05, 0.146)}  # Stage-1 family 0.9 beats blind 0.6: the share counts
    assert "| distortion-family accuracy | 50.00% | 90.00% | 80.00% | 60.00% | 75% |" in "\n".join(_skill_kept_section(m))
    assert _skill_kept_section({"perception": {"base": perc(0.5, 0.1, 0.2)}}) == []


def test_table4_shows_how_many_answers_were_readable_and_says_why_none_were():
    from refine_iqa import report
    cols = ["yes-or-no", "what", "how", "technical", "other", "in-context technical", "in-context other", "overall"]

    def res(acc, unanswered):
        return {"accuracy": dict.fromkeys(cols, acc), "unanswered": unanswered}

    m = {"configuration": "embedded",
         "qbench": {"base": {"split": "dev", "n": 4, "synthetic": True, "no_think": res(0.0, 4), "think": res(0.0, 4)},
                    "stage1": {"split": "dev", "n": 4, "no_think": res(0.5, 1), "think": res(0.25, 0)}},
         "blind": {"qbench": {**res(0.5, 0), "strategy": "letter B"}}}
    text = "\n".join(report._qbench_section(m))
    assert "| base (no-think) | 0.00% |" in text and text.count("| 0 / 4 |") == 2
    assert "| stage1 (no-think) | 50.00% |" in text and "| 3 / 4 |" in text and "| 4 / 4 |" in text
    assert "| blind (ignores the image): always answer B (the letter right most often) | 50.00% |" in text
    assert "not a letter choice" in text and "SYNTHETIC" in text
    # every model answered something, or the paper configuration: no such explanation
    m["qbench"].pop("base")
    assert "not a letter choice" not in "\n".join(report._qbench_section(m))
