"""Eq. 6 modified advantage ("PM") and standard GRPO advantages, against hand-worked values."""

import math

import pytest
import torch
from trl.trainer.utils import nanstd

from refine_iqa.rl.advantages import group_mean_std, grpo_advantages, modified_advantages

T, F = True, False


def _t(rows):
    return torch.tensor(rows, dtype=torch.float32)


def _b(rows):
    return torch.tensor(rows, dtype=torch.bool)


def _close(actual, expected):
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=actual.dtype), rtol=1e-6, atol=1e-6)


def test_group_std_is_trls_sample_std():
    # [1, 0, 0, 0]: mean 0.25, squares 0.5625 + 3 * 0.0625 = 0.75, / (4 - 1) = 0.25 -> std 0.5.
    mean, std, valid = group_mean_std(_t([[1, 0, 0, 0]]))
    assert mean.item() == pytest.approx(0.25) and std.item() == pytest.approx(0.5) and valid.all()
    rewards = torch.rand(5, 8, generator=torch.Generator().manual_seed(0)) * 3
    assert torch.allclose(group_mean_std(rewards)[1].squeeze(1), nanstd(rewards, dim=1))


def test_group_with_exactly_one_correct_rollout():
    # mean 0.25, std 0.5: winner (0.75) / 0.5001 = 1.49970..., losers max(-0.25 / 0.5001, 0) = 0.
    adv = modified_advantages(_t([[1, 0, 0, 0]]), _b([[T, F, F, F]]))
    assert adv[0, 0].item() == pytest.approx(0.75 / 0.5001, rel=1e-6)
    assert adv[0, 1:].tolist() == [0.0, 0.0, 0.0]


def test_group_without_correct_rollout():
    # Same rewards (e.g. format only), nobody correct: (r - 0.25 - 0.02) / max(0.5, 0.1).
    adv = modified_advantages(_t([[1, 0, 0, 0]]), _b([[F, F, F, F]]))
    assert adv[0].tolist() == pytest.approx([1.46, -0.54, -0.54, -0.54])


def test_all_equal_rewards_without_correct_rollout_get_minus_delta_over_sigma_min():
    adv = modified_advantages(_t([[1, 1, 1, 1], [0, 0, 0, 0]]), _b([[F] * 4, [F] * 4]))
    _close(adv, [[-0.2] * 4, [-0.2] * 4])
    adv = modified_advantages(_t([[0, 0]]), _b([[F, F]]), delta=0.05, sigma_min=0.5)
    _close(adv, [[-0.1, -0.1]])


def test_all_correct_equal_rewards_give_zero():
    adv = modified_advantages(_t([[2.5, 2.5, 2.5]]), _b([[T, T, T]]))
    assert adv.tolist() == [[0.0, 0.0, 0.0]]


def test_small_std_uses_sigma_min():
    # [0.02, 0, 0, 0]: mean 0.005, std sqrt((0.000225 + 3 * 0.000025) / 3) = 0.01 < 0.1 -> divide by 0.1.
    adv = modified_advantages(_t([[0.02, 0, 0, 0]]), _b([[F] * 4]))
    assert adv[0].tolist() == pytest.approx([(0.015 - 0.02) / 0.1, (-0.005 - 0.02) / 0.1, -0.25, -0.25], abs=1e-6)


def test_mixed_groups_in_one_batch():
    rewards = _t([[3.0, 2.0, 1.0, 0.0], [1.0, 0.0, 1.0, 0.0], [2.0, 2.0, 2.0, 2.0]])
    correct = _b([[T, F, F, F], [F, F, F, F], [T, T, T, T]])
    adv = modified_advantages(rewards, correct)
    # Group 0: mean 1.5, std sqrt(5/3) = 1.29099; positives only.
    s0 = math.sqrt(5 / 3) + 1e-4
    assert adv[0].tolist() == pytest.approx([1.5 / s0, 0.5 / s0, 0.0, 0.0], rel=1e-6)
    # Group 1: mean 0.5, std sqrt(1/3) = 0.57735; (+-0.5 - 0.02) / 0.57735.
    s1 = math.sqrt(1 / 3)
    assert adv[1].tolist() == pytest.approx([0.48 / s1, -0.52 / s1, 0.48 / s1, -0.52 / s1], rel=1e-6)
    assert adv[2].tolist() == [0.0] * 4
    assert not torch.isnan(adv).any()


def test_single_rollout_groups():
    # G = 1: std 0 (TRL's choice); correct -> max(0 / eps, 0) = 0, not correct -> -delta / sigma_min.
    adv = modified_advantages(_t([[2.0], [0.0]]), _b([[T], [F]]))
    _close(adv, [[0.0], [-0.2]])
    assert grpo_advantages(_t([[2.0], [0.0]])).tolist() == [[0.0], [0.0]]


def test_empty_batch():
    adv = modified_advantages(torch.zeros(0, 8), torch.zeros(0, 8, dtype=torch.bool))
    assert adv.shape == (0, 8)
    assert grpo_advantages(torch.zeros(0, 4)).shape == (0, 4)


def test_nan_rewards_are_unscorable():
    # NaN (every reward function returned None) is left out of mean/std and gets advantage 0, as in TRL.
    rewards = _t([[1.0, float("nan"), 0.0, 0.0, 0.0]])
    adv = modified_advantages(rewards, _b([[T, T, F, F, F]]))
    assert adv[0].tolist() == pytest.approx([0.75 / 0.5001, 0.0, 0.0, 0.0, 0.0], rel=1e-6)
    adv = modified_advantages(_t([[float("nan")] * 3]), _b([[T, F, F]]))
    assert adv.tolist() == [[0.0, 0.0, 0.0]]
    # A correct flag on a NaN row does not make the group "has a correct rollout".
    adv = modified_advantages(_t([[float("nan"), 1.0, 1.0]]), _b([[T, F, F]]))
    _close(adv, [[0.0, -0.2, -0.2]])


def test_grpo_advantages_hand_values_and_trl_formula():
    adv = grpo_advantages(_t([[1, 0, 0, 0]]))
    assert adv[0].tolist() == pytest.approx([0.75 / 0.5001, -0.25 / 0.5001, -0.25 / 0.5001, -0.25 / 0.5001])
    assert grpo_advantages(_t([[1, 0, 0, 0]]), scale=False)[0].tolist() == [0.75, -0.25, -0.25, -0.25]
    assert grpo_advantages(_t([[3, 3, 3]])).tolist() == [[0.0, 0.0, 0.0]]
    rewards = torch.rand(6, 8, generator=torch.Generator().manual_seed(1))
    trl_formula = (rewards - rewards.mean(1, keepdim=True)) / (nanstd(rewards, dim=1, keepdim=True) + 1e-4)
    assert torch.allclose(grpo_advantages(rewards), trl_formula, atol=1e-6)


def test_integer_rewards_and_dtype():
    adv = modified_advantages(torch.tensor([[1, 0]]), _b([[T, F]]))
    assert adv.dtype == torch.float32
    adv64 = modified_advantages(torch.tensor([[1.0, 0.0]], dtype=torch.float64), _b([[T, F]]))
    assert adv64.dtype == torch.float64


@pytest.mark.parametrize(
    "kwargs, message",
    [({"rewards": torch.zeros(8), "correct": torch.zeros(8, dtype=torch.bool)}, "shape"),
     ({"rewards": torch.zeros(2, 4), "correct": torch.zeros(2, 4)}, "bool tensor"),
     ({"rewards": torch.zeros(2, 4), "correct": torch.zeros(2, 3, dtype=torch.bool)}, "bool tensor"),
     ({"rewards": _t([[float("inf"), 0]]), "correct": _b([[F, F]])}, "infinite"),
     ({"rewards": torch.zeros(1, 2), "correct": _b([[F, F]]), "sigma_min": 0.0}, "sigma_min"),
     ({"rewards": torch.zeros(1, 2), "correct": _b([[F, F]]), "delta": -1}, "delta"),
     ({"rewards": torch.zeros(1, 2), "correct": _b([[F, F]]), "eps": float("nan")}, "eps")],
)
def test_bad_inputs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        modified_advantages(**kwargs)
    with pytest.raises(TypeError, match="torch.Tensor"):
        grpo_advantages([[1.0, 0.0]])


def test_a_rollout_no_reward_function_scored_is_not_a_zero_reward():
    """Hand-worked: G = 4, reward functions (answer, format, pd), weights 1. Row 2 was scored by no function."""
    from refine_iqa.rl.advantages import weighted_total

    nan = math.nan
    rpf = torch.tensor([[1.0, 1.0, 0.2], [0.0, 1.0, nan], [nan, nan, nan], [0.0, 0.0, nan]])
    total = weighted_total(rpf, torch.tensor([1.0, 1.0, 1.0]))
    assert total[[0, 1, 3]].tolist() == pytest.approx([2.2, 1.0, 0.0]) and math.isnan(total[2].item())
    correct = torch.tensor([[True, False, False, False]])
    adv = modified_advantages(total.view(1, 4), correct, delta=0.02, sigma_min=0.1, eps=1e-4)[0]
    # valid rewards 2.2, 1.0, 0.0: mean 3.2/3; squared deviations 1.284444 + 0.004444 + 1.137778 = 2.426667;
    # sample variance 2.426667/2 = 1.213333, std 1.101514; row 0: (2.2 - 1.066667)/(1.101514 + 1e-4) = 1.028794
    assert adv.tolist() == pytest.approx([1.1333333 / (1.2133333 ** 0.5 + 1e-4), 0.0, 0.0, 0.0], rel=1e-6)
    # Counted as 0 (a nansum), the same group gives rewards 2.2, 1, 0, 0: mean 0.8, std 1.045626, row 0 1.338787.
    as_zero = modified_advantages(torch.nan_to_num(total).view(1, 4), correct)[0]
    assert as_zero[0].item() == pytest.approx(1.4 / (1.0933333 ** 0.5 + 1e-4), rel=1e-6)
    # A group left with one scored rollout and no correct one: std 0 -> (0 - 0.02)/0.1 for it, 0 for the rest.
    lone = weighted_total(torch.tensor([[nan, nan], [nan, nan], [nan, nan], [0.0, 1.0]]), torch.tensor([1.0, 1.0]))
    adv = modified_advantages(lone.view(1, 4), torch.zeros(1, 4, dtype=torch.bool))[0]
    assert adv.tolist() == pytest.approx([0.0, 0.0, 0.0, -0.2])
    with pytest.raises(ValueError, match="weights"):
        weighted_total(rpf, torch.tensor([1.0, 1.0]))
