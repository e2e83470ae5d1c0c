"""Inference: the probability-based quality score (Eq. 8)."""

from __future__ import annotations

import torch

# Tokens "0".."4": the integer digit of a score in [0, 5).
SCORE_DIGITS = ("0", "1", "2", "3", "4")


def expected_score(digit_logits: torch.Tensor) -> torch.Tensor:
    """Eq. 8: Q = sum_j j * softmax(P)_j + 0.5, P = logits of tokens "0".."4" (last dimension, size 5).

    REFERENCE: the paper's "+5" is a typo for +0.5 (the centre of the integer bin, so Q lies in [0.5, 4.5]).
    Works on any leading batch shape; computed in float32 at least (bf16 logits would lose the decimals).
    """
    if not isinstance(digit_logits, torch.Tensor):
        raise TypeError(f"digit_logits must be a torch.Tensor, got {type(digit_logits).__name__}")
    if digit_logits.dim() == 0 or digit_logits.shape[-1] != len(SCORE_DIGITS):
        raise ValueError(
            f"digit_logits must have the logits of tokens {SCORE_DIGITS} in its last dimension (size 5), "
            f"got shape {tuple(digit_logits.shape)}"
        )
    logits = digit_logits if digit_logits.dtype == torch.float64 else digit_logits.float()
    probs = torch.softmax(logits, dim=-1)
    levels = torch.arange(len(SCORE_DIGITS), dtype=probs.dtype, device=probs.device)
    score = (probs * levels).sum(dim=-1) + 0.5
    if torch.isnan(score).any():
        # NaN, +inf or all -inf logits: no distribution over the digits exists.
        raise ValueError("digit_logits hold NaN, +inf or an all -inf row: no score can be computed")
    return score
