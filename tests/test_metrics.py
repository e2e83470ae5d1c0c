"""Evaluation metrics against values worked out by hand and against scipy.stats."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from refine_iqa.eval import metrics as M

# Hand example: pred [1,2,3,4], label [1,3,2,4]. Deviations from the mean 2.5 are (-1.5,-.5,.5,1.5) and
# (-1.5,.5,-.5,1.5): dot 4, squares 5 each -> PLCC 0.8; ranks equal the values -> SRCC 0.8; of the 6 pairs
# only (2,3) is discordant -> KRCC (5-1)/6; |errors| 0,1,1,0 -> MAE 0.5, RMSE sqrt(0.5).
P4, Y4 = [1, 2, 3, 4], [1, 3, 2, 4]


def test_four_item_hand_example():
    assert M.plcc_raw(P4, Y4) == pytest.approx(0.8)
    assert M.srcc(P4, Y4) == pytest.approx(0.8)
    assert M.krcc(P4, Y4) == pytest.approx(4 / 6)
    assert M.mae(P4, Y4) == pytest.approx(0.5)
    assert M.rmse(P4, Y4) == pytest.approx(math.sqrt(0.5))


def test_srcc_with_ties_hand_value():
    # ranks of [1,1,2,3] are [1.5,1.5,3,4]; deviations (-1,-1,.5,1.5) vs (-1.5,-.5,.5,1.5): 4.5 / sqrt(4.5 * 5)
    assert M.srcc([1, 1, 2, 3], [1, 2, 3, 4]) == pytest.approx(3 / math.sqrt(10))


def test_hit_rate_is_strict():
    assert M.hit_rate(P4, Y4) == 0.5            # errors 0, 1, 1, 0
    assert M.hit_rate(P4, Y4, eps=1.0) == 0.5   # |1| < 1 is false
    assert M.hit_rate(P4, Y4, eps=1.01) == 1.0
    assert M.hit_rate([2.5, 3.0], [3.0, 3.0]) == 0.5  # exactly 0.5 apart is a miss
    assert M.hit_rate([np.nan, 3.0], [3.0, 3.0]) == 0.5  # unparsable prediction = miss
    assert math.isnan(M.hit_rate([], []))
    assert math.isnan(M.hit_rate([1.0], [np.nan]))


def test_hit_rate_agrees_with_the_answer_reward_at_the_float_boundary():
    """0.7 - 0.2 is 0.49999999999999994 in floats: the reward (Eq. 1) rounds it to 0.5, a miss; the metric
    must say the same, for every pair of one-decimal scores in [0, 5]."""
    from refine_iqa.rewards import answer_reward

    assert M.hit_rate([0.2], [0.7]) == 0.0 == answer_reward(0.2, 0.7)
    pairs = [(a / 10, b / 10) for a in range(51) for b in range(51)]
    for eps in (0.5, 0.35, 1.0):
        assert [M.hit_rate([p], [y], eps=eps) for p, y in pairs] == [answer_reward(p, y, eps) for p, y in pairs]


def test_monotone_nonlinear_logistic_beats_raw():
    x = np.linspace(-4, 4, 30)
    y = M.logistic4(x, 5.0, 1.0, 0.0, 1.0)
    assert M.srcc(x, y) == pytest.approx(1.0)
    res = M.plcc_detailed(x, y)
    assert res.method == "logistic"
    assert res.value == pytest.approx(1.0, abs=1e-6)
    assert M.plcc_raw(x, y) < 0.99 < res.value
    np.testing.assert_allclose(res.params, [5.0, 1.0, 0.0, 1.0], atol=1e-3)


def test_reversed_gives_minus_one():
    x = np.linspace(-4, 4, 30)
    y = M.logistic4(x, 5.0, 1.0, 0.0, 1.0)
    assert M.srcc(-x, y) == pytest.approx(-1.0)
    assert M.krcc(-x, y) == pytest.approx(-1.0)
    assert M.plcc(-x, y) == pytest.approx(-1.0, abs=1e-6)
    assert M.plcc_raw(-x, y) == pytest.approx(-M.plcc_raw(x, y))


def test_logistic4_values():
    # f(b3) is the midpoint; |b4| makes the sign of b4 irrelevant.
    assert M.logistic4(0.0, 5, 1, 0, 2) == pytest.approx(3.0)
    assert M.logistic4(2.0, 5, 1, 0, -2) == pytest.approx(4 / (1 + math.exp(-1)) + 1)
    assert M.logistic4(1e6, 5, 1, 0, 1e-9) == pytest.approx(5.0)  # no overflow


def test_linear_data_logistic_close_to_raw():
    rng = np.random.default_rng(1)
    x = rng.normal(size=200)
    y = 2 * x + rng.normal(scale=0.5, size=200)
    res = M.plcc_detailed(x, y)
    assert res.method == "logistic"
    assert res.value >= M.plcc_raw(x, y) - 1e-3


def test_fit_failure_falls_back_to_raw():
    x = np.linspace(0, 1, 20) ** 3
    y = np.linspace(1, 5, 20)
    res = M.plcc_detailed(x, y, maxfev=1)
    assert res.method == "raw" and "fit failed" in res.reason
    assert res.value == pytest.approx(M.plcc_raw(x, y))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_scipy_on_random_data(seed):
    rng = np.random.default_rng(seed)
    p = rng.normal(size=57)
    y = 0.6 * p + rng.normal(size=57)
    p[:5] = p[5]  # some ties
    assert M.srcc(p, y) == pytest.approx(stats.spearmanr(p, y).statistic, abs=1e-12)
    assert M.plcc_raw(p, y) == pytest.approx(stats.pearsonr(p, y).statistic, abs=1e-12)
    assert M.krcc(p, y) == pytest.approx(stats.kendalltau(p, y).statistic, abs=1e-12)
    assert M.mae(p, y) == pytest.approx(np.mean(np.abs(p - y)))
    assert M.rmse(p, y) == pytest.approx(np.sqrt(np.mean((p - y) ** 2)))


@pytest.mark.parametrize("fn", [M.srcc, M.krcc, M.plcc_raw, M.plcc])
def test_degenerate_inputs(fn):
    assert math.isnan(fn([1, 2], [1, 2]))                   # fewer than 3 items
    assert math.isnan(fn([], []))
    assert math.isnan(fn([1, np.nan, 3], [1, 2, 3]))        # NaN prediction
    assert math.isnan(fn([1, 2, 3], [1, np.inf, 3]))        # non-finite label
    assert fn([2, 2, 2, 2], [1, 2, 3, 4]) == 0.0            # constant predictions: ranks nothing
    assert math.isnan(fn([1, 2, 3, 4], [3, 3, 3, 3]))       # constant labels: undefined
    with pytest.raises(ValueError, match="differ in length"):
        fn([1, 2, 3], [1, 2])


def test_degenerate_errors():
    assert math.isnan(M.mae([], [])) and math.isnan(M.rmse([1, np.nan], [1, 2]))
    assert M.mae([2.0], [1.0]) == 1.0
    res = M.plcc_detailed([1, 1, 1], [1, 2, 3])
    assert res.method == "degenerate" and res.value == 0.0


def test_accuracy_helpers():
    assert M.accuracy([True, False, True, True]) == 0.75
    assert math.isnan(M.accuracy([]))
    g = M.accuracy_by_group([1, 0, 1, 1, 0], ["blur", "noise", "blur", "noise", "jpeg"])
    assert list(g) == ["blur", "noise", "jpeg"]
    assert g["blur"] == {"accuracy": 1.0, "correct": 2, "total": 2}
    assert g["noise"]["accuracy"] == 0.5 and g["jpeg"]["accuracy"] == 0.0
    with pytest.raises(ValueError):
        M.accuracy_by_group([1], ["a", "b"])


def test_correlation_report():
    r = M.correlation_report(P4, Y4)
    assert r["n"] == 4 and r["srcc"] == pytest.approx(0.8) and r["plcc_raw"] == pytest.approx(0.8)
    assert r["plcc_method"] in ("logistic", "raw") and -1 <= r["plcc"] <= 1
    json.dumps(r)
