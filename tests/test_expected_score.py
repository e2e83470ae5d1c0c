"""Eq. 8 probability score: Q = sum_j j * softmax(P)_j + 0.5 over the logits of tokens "0".."4"."""

import math

import pytest
import torch

from refine_iqa.inference import expected_score

NEG = float("-inf")


def test_equal_logits_give_the_middle():
    # Uniform over 0..4: mean 2, + 0.5.
    assert expected_score(torch.zeros(5)).item() == pytest.approx(2.5)
    assert expected_score(torch.full((5,), 7.0)).item() == pytest.approx(2.5)


def test_one_dominant_digit():
    assert expected_score(torch.tensor([0.0, 0.0, 0.0, 100.0, 0.0])).item() == pytest.approx(3.5)
    assert expected_score(torch.tensor([50.0, 0.0, 0.0, 0.0, 0.0])).item() == pytest.approx(0.5)


def test_two_value_hand_case():
    # Only "2" and "3" possible, with weights 1 : 4 -> p = 0.2, 0.8; Q = 2 * 0.2 + 3 * 0.8 + 0.5 = 3.3.
    logits = torch.tensor([NEG, NEG, 0.0, math.log(4.0), NEG])
    assert expected_score(logits).item() == pytest.approx(3.3, abs=1e-6)
    # "0" and "4" equally likely: Q = 0 * 0.5 + 4 * 0.5 + 0.5 = 2.5.
    assert expected_score(torch.tensor([1.0, NEG, NEG, NEG, 1.0])).item() == pytest.approx(2.5)


def test_hand_case_with_all_digits():
    # logits log(1, 2, 3, 2, 2): p = (1, 2, 3, 2, 2) / 10; Q = (0 + 2 + 6 + 6 + 8) / 10 + 0.5 = 2.7.
    logits = torch.log(torch.tensor([1.0, 2.0, 3.0, 2.0, 2.0]))
    assert expected_score(logits).item() == pytest.approx(2.7, abs=1e-6)


def test_batched_and_shift_invariant():
    logits = torch.randn(2, 3, 5, generator=torch.Generator().manual_seed(0))
    scores = expected_score(logits)
    assert scores.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            assert scores[i, j].item() == pytest.approx(expected_score(logits[i, j]).item())
    torch.testing.assert_close(expected_score(logits + 12.5), scores)
    assert ((scores >= 0.5) & (scores <= 4.5)).all()


def test_low_precision_logits_are_upcast():
    logits = torch.tensor([[0.0, 0.0, 0.0, 100.0, 0.0], [0.0] * 5], dtype=torch.bfloat16)
    scores = expected_score(logits)
    assert scores.dtype == torch.float32
    assert scores.tolist() == pytest.approx([3.5, 2.5])
    assert expected_score(torch.zeros(5, dtype=torch.float64)).dtype == torch.float64


@pytest.mark.parametrize("bad", [torch.zeros(4), torch.zeros(3, 6), torch.tensor(1.0)])
def test_wrong_shape(bad):
    with pytest.raises(ValueError, match="size 5"):
        expected_score(bad)


def test_no_distribution():
    with pytest.raises(ValueError, match="NaN"):
        expected_score(torch.tensor([float("nan"), 0.0, 0.0, 0.0, 0.0]))
    with pytest.raises(ValueError, match="NaN"):
        expected_score(torch.full((5,), NEG))
    with pytest.raises(TypeError, match="torch.Tensor"):
        expected_score([0.0] * 5)
