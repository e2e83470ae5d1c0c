"""The learnability bars (tests/learnability.py BARS), on results measured and tabled in docs/learnability.md:
each bar passes the rows that passed and fails, alone, the rows that failed for that reason. Fast: no training."""

from __future__ import annotations

from learnability import BARS, bars_text, failed_bars


def _stage2(ratio_from, ratio_to, hit, mae, srcc, fmt=1.0, distinct=5, std=1.0):
    return {"reward_first20": ratio_from, "reward_last20": ratio_to,
            "before": {"hit_rate": hit[0], "mae": mae[0]},
            "after": {"hit_rate": hit[1], "mae": mae[1], "srcc": srcc, "format": fmt, "distinct_preds": distinct,
                      "pred_std": std}}


def test_stage2_bars_on_the_seeds_table():
    seed0 = _stage2(0.139, 0.505, (0.14, 0.62), (2.30, 0.73), 0.880, distinct=3)
    seed7 = _stage2(0.170, 0.375, (0.30, 0.48), (1.14, 0.60), 0.796)  # the one failing seed: SRCC only
    assert failed_bars("stage2", seed0) == []
    assert failed_bars("stage2", seed7) == ["SRCC >= 0.8"]
    constant = _stage2(0.139, 0.505, (0.14, 0.62), (2.30, 0.73), 0.880, distinct=1, std=0.0)
    assert failed_bars("stage2", constant) == [">= 2 distinct scores, std > 0.5"]
    flat = _stage2(0.2, 0.2, (0.2, 0.2), (1.0, 1.0), 0.0, fmt=0.0)
    assert len(failed_bars("stage2", flat)) == 5  # everything but the spread (std 1.0 given)


def test_think_bars_on_the_measured_failures():
    ok = {"reward_first20": 0.167, "reward_last20": 0.433, "pd_nonzero_frac": 0.80,
          "after": {"format": 1.0, "srcc": 0.832, "distinct_preds": 2, "pred_std": 0.5}}
    assert failed_bars("stage2_think", ok) == []
    short = {**ok, "reward_last20": 0.167 * 1.79}  # the one-word recipe at 250 steps, seed 1: 1.79x
    assert failed_bars("stage2_think", short) == ["answer reward last-20 >= 1.8x first-20"]
    no_pd = {**ok, "pd_nonzero_frac": 0.5}  # exactly half is not "most steps"
    assert failed_bars("stage2_think", no_pd) == ["PD reward non-zero in more than half the steps"]


def test_stage1_and_grounding_bars():
    seed3 = {"reward_first20": 0.259, "reward_last20": 0.593, "family_after": 0.500}  # the collapse: blind
    assert failed_bars("stage1", seed3) == ["held-out family accuracy >= 0.75 (blind 0.5)"]
    assert failed_bars("stage1", {**seed3, "family_after": 0.969}) == []
    halves = {"blind_iou": 0.500, "iou_after": 0.454}  # every grounding design so far
    assert failed_bars("grounding", halves) == ["held-out IoU >= best constant box + 0.1"]
    assert failed_bars("grounding", {**halves, "iou_after": 0.600}) == []


def test_every_recipe_has_bars_and_a_printable_summary():
    from learnability import RECIPES

    assert set(BARS) == set(RECIPES)
    assert bars_text("stage2").count(";") == len(BARS["stage2"]) - 1
