"""Group advantages: the paper's modified advantage ("PM", Eq. 6) and standard GRPO for the PM-off ablation.

Inputs are laid out (num_groups, G): one row per prompt, one column per rollout. A flat TRL reward vector
of length B*G becomes that with `rewards.view(-1, G)` (TRL orders the G rollouts of a prompt together).

Group statistics follow TRL 1.16's GRPOTrainer (`trl.trainer.utils.nanstd`, used with
scale_rewards="group"): the mean and the SAMPLE standard deviation (Bessel-corrected, divisor n - 1) over
the group's non-NaN rewards. A NaN reward marks an unscorable rollout (every reward function returned None);
as in TRL it is left out of the statistics and gets advantage 0. A group with fewer than two valid rewards
has std 0 (TRL's choice for G = 1).
"""

from __future__ import annotations

import math

import torch


def _check(rewards: torch.Tensor, name: str = "rewards") -> torch.Tensor:
    if not isinstance(rewards, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (num_groups, G), got {type(rewards).__name__}")
    if rewards.dim() != 2:
        raise ValueError(f"{name} must have shape (num_groups, G), got {tuple(rewards.shape)}; use .view(-1, G)")
    if not rewards.is_floating_point():
        rewards = rewards.float()
    if torch.isinf(rewards).any():
        raise ValueError(f"{name} contains an infinite value; rewards must be finite (NaN = unscorable)")
    return rewards


def group_mean_std(rewards: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean, sample std, valid mask) per group, ignoring NaN; mean/std have shape (num_groups, 1).

    std uses the n - 1 divisor (as TRL's nanstd) and is 0 where a group has fewer than two valid rewards;
    mean is 0 for a group with no valid reward (its advantages are all 0 anyway).
    """
    rewards = _check(rewards)
    valid = ~torch.isnan(rewards)
    count = valid.sum(dim=1, keepdim=True)
    filled = torch.where(valid, rewards, torch.zeros_like(rewards))
    mean = filled.sum(dim=1, keepdim=True) / count.clamp(min=1)
    squares = torch.where(valid, (rewards - mean) ** 2, torch.zeros_like(rewards)).sum(dim=1, keepdim=True)
    var = torch.where(count > 1, squares / (count - 1).clamp(min=1), torch.zeros_like(squares))
    return mean, var.sqrt(), valid


def weighted_total(rewards_per_func: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Eq. 5's weighted sum per rollout over the reward functions that scored it (NaN = returned None).

    A rollout that NO function scored stays NaN (unscorable: left out of the group statistics, advantage 0);
    a plain nansum, as TRL uses for its own reward, would turn it into a reward of 0 that drags the group
    mean down and counts in the std.
    """
    if rewards_per_func.dim() != 2 or weights.shape != rewards_per_func.shape[1:]:
        raise ValueError(f"rewards_per_func must be (rollouts, functions) and weights (functions,), got "
                         f"{tuple(rewards_per_func.shape)} and {tuple(weights.shape)}")
    total = (rewards_per_func * weights.to(rewards_per_func.device).unsqueeze(0)).nansum(dim=1)
    unscored = torch.isnan(rewards_per_func).all(dim=1)
    return torch.where(unscored, torch.full_like(total, math.nan), total)


def _positive(value: float, name: str, allow_zero: bool = False) -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be a finite {'non-negative' if allow_zero else 'positive'} number, got {value}")
    return value


def modified_advantages(
    rewards: torch.Tensor,
    correct: torch.Tensor,
    delta: float = 0.02,
    sigma_min: float = 0.1,
    eps: float = 1e-4,
) -> torch.Tensor:
    """Eq. 6 with REFERENCE's completion of the std = 0 case.

    Group with >= 1 correct rollout (r_ans = r_fmt = 1): A_i = max((r_i - mean) / (std + eps), 0).
    Group with none: A_i = (r_i - mean - delta) / max(std, sigma_min); all-equal rewards give -delta/sigma_min
    (-0.2 with the defaults). NaN rewards (unscorable) get 0 and never count as correct.
    """
    rewards = _check(rewards)
    if not isinstance(correct, torch.Tensor) or correct.dtype != torch.bool or correct.shape != rewards.shape:
        raise ValueError(
            f"correct must be a bool tensor of the rewards' shape {tuple(rewards.shape)}, got "
            f"{getattr(correct, 'dtype', type(correct).__name__)} {tuple(getattr(correct, 'shape', ()))}"
        )
    delta = _positive(delta, "delta", allow_zero=True)
    sigma_min = _positive(sigma_min, "sigma_min")
    eps = _positive(eps, "eps", allow_zero=True)
    mean, std, valid = group_mean_std(rewards)
    any_correct = (correct.to(rewards.device) & valid).any(dim=1, keepdim=True)
    centred = rewards - mean
    with_correct = (centred / (std + eps)).clamp(min=0.0) if eps > 0 else _safe_div(centred, std).clamp(min=0.0)
    without_correct = (centred - delta) / std.clamp(min=sigma_min)
    advantages = torch.where(any_correct, with_correct, without_correct)
    return torch.where(valid, advantages, torch.zeros_like(advantages))


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    # eps = 0 with a zero std: every centred reward is 0 there, so the advantage is 0, not NaN.
    return torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), torch.zeros_like(num))


def grpo_advantages(rewards: torch.Tensor, eps: float = 1e-4, scale: bool = True) -> torch.Tensor:
    """Standard GRPO: (r_i - mean) / (std + eps) per group (scale=False: r_i - mean). NaN rewards -> 0."""
    rewards = _check(rewards)
    eps = _positive(eps, "eps", allow_zero=True)
    mean, std, valid = group_mean_std(rewards)
    centred = rewards - mean
    if scale:
        centred = centred / (std + eps) if eps > 0 else _safe_div(centred, std)
    return torch.where(valid, centred, torch.zeros_like(centred))
