"""Rewards of both RL stages (paper Eqs. 1-5, REFERENCE section 2) and their TRL reward-function wrappers.

Pure functions first; then `get_stage1_reward_funcs` / `get_stage2_reward_funcs`, which return callables in
TRL's form `f(completions, **columns) -> list[float | None]`. None means "not this function's task": TRL
turns it into NaN and leaves it out of the sum. Every formula and decision is in docs/rewards.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from refine_iqa.boxes import iou
from refine_iqa.eval.metrics import DIFF_DECIMALS
from refine_iqa.parsing import (
    is_box_format,
    is_choice_format,
    is_no_think_format,
    is_think_format,
    normalise_choice,
    parse_box,
    parse_choices,
    parse_score,
)
from refine_iqa.prompts import TagStyle, get_tag_style


def _finite(value: Any, name: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(out):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return out


def answer_reward(pred: float | None, mos: float, eps: float = 0.5) -> float:
    """Eq. 1: 1.0 if |pred - mos| < eps (strict, difference rounded to 6 decimals), else 0.0; None -> 0.0."""
    mos = _finite(mos, "mos")
    eps = _finite(eps, "eps")
    if eps <= 0:
        raise ValueError(f"eps must be positive, got {eps}")
    if pred is None:
        return 0.0
    try:
        pred = float(pred)
    except (TypeError, ValueError):
        return 0.0
    if not math.isfinite(pred):
        return 0.0
    return 1.0 if round(abs(pred - mos), DIFF_DECIMALS) < eps else 0.0


def digit_prob_reward(digit_probs: Sequence[float], weights: Sequence[float] = (1.0, 0.1)) -> float:
    """Eq. 2: r = sum_k w_k z_k, z_k = probability of the k-th ground-truth digit (integer, then tenths)."""
    probs = [_finite(p, "digit probability") for p in digit_probs]
    ws = [_finite(w, "digit weight") for w in weights]
    if len(probs) != len(ws) or not probs:
        raise ValueError(f"need one probability per weight: got {len(probs)} probabilities, {len(ws)} weights")
    if any(p < 0.0 or p > 1.0 for p in probs):
        raise ValueError(f"digit probabilities must lie in [0, 1], got {probs}")
    return float(sum(w * p for w, p in zip(ws, probs)))


def pd_reward(
    think_digit_probs: Sequence[float], ref_digit_probs: Sequence[float], weights: Sequence[float] = (1.0, 0.1)
) -> float:
    """Eq. 4: clip(r_think - r_ref, 0, 1)."""
    diff = digit_prob_reward(think_digit_probs, weights) - digit_prob_reward(ref_digit_probs, weights)
    return min(max(diff, 0.0), 1.0)


def final_reward(
    r_ans: float, r_fmt: float, r_pd: float | None, lambdas: Sequence[float] = (1.0, 1.0, 1.0)
) -> float:
    """Eq. 5: l1 r_ans + l2 r_fmt (+ l3 r_pd only when r_ans = r_fmt = 1; r_pd may be None otherwise)."""
    if len(lambdas) != 3:
        raise ValueError(f"lambdas must be three weights (answer, format, pd), got {lambdas!r}")
    l1, l2, l3 = (_finite(v, "lambda") for v in lambdas)
    r_ans, r_fmt = _finite(r_ans, "r_ans"), _finite(r_fmt, "r_fmt")
    total = l1 * r_ans + l2 * r_fmt
    if r_ans == 1.0 and r_fmt == 1.0:
        if r_pd is None:
            raise ValueError("r_pd is needed when r_ans = r_fmt = 1 (a correct rollout)")
        total += l3 * _finite(r_pd, "r_pd")
    return total


CHOICE_MODES = ("mean", "all")


def choice_reward(pred: tuple[str, str, str] | None, gt: Sequence[str], mode: str = "mean") -> float:
    """Description reward: per-field match (object, distortion, severity) after `normalise_choice`.

    mode "mean": fraction of the three fields that match; "all": 1.0 only if all three do. None -> 0.0.
    """
    if mode not in CHOICE_MODES:
        raise ValueError(f"choice mode must be one of {CHOICE_MODES}, got {mode!r}")
    if isinstance(gt, str) or len(gt) != 3 or not all(isinstance(g, str) and normalise_choice(g) for g in gt):
        raise ValueError(f"ground truth must be three non-empty strings (object, distortion, severity), got {gt!r}")
    if pred is None or len(pred) != 3:
        return 0.0
    matches = [normalise_choice(p) == normalise_choice(g) for p, g in zip(pred, gt)]
    if mode == "all":
        return 1.0 if all(matches) else 0.0
    return sum(matches) / 3.0


def grounding_reward(
    pred_box: Sequence[float] | None, gt_box: Sequence[float], image_wh: Sequence[int] | None = None
) -> float:
    """IoU of the predicted and true boxes (prediction clipped to `image_wh` when given); None -> 0.0."""
    if pred_box is None:
        return 0.0
    return iou(pred_box, gt_box, image_wh)


# ---------------------------------------------------------------------------------------------- TRL wrappers


def completion_text(completion: Any) -> str:
    """The text of a TRL completion: a plain string, or a conversational list of messages (the assistant
    messages' contents joined; content may be a string or a list of {'type': 'text', 'text': ...} parts)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    if not isinstance(completion, (list, tuple)):
        return ""
    parts: list[str] = []
    for message in completion:
        if not isinstance(message, dict) or message.get("role", "assistant") != "assistant":
            continue
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, (list, tuple)):
            parts.extend(
                p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
            )
    return "".join(parts)


def _column(kwargs: dict, name: str, n: int, func_name: str) -> list:
    if name not in kwargs:
        available = sorted(k for k in kwargs if k not in ("trainer_state", "log_extra", "log_metric"))
        raise ValueError(
            f"reward function {func_name!r} needs the dataset column {name!r} (one value per completion); "
            f"columns present: {available}. Build the dataset with the stage's dataset builder."
        )
    values = list(kwargs[name])
    if len(values) != n:
        raise ValueError(f"column {name!r} has {len(values)} values for {n} completions ({func_name!r})")
    return values


STAGE1_TASKS = ("description", "grounding")


class _RewardFunc:
    """Base of the TRL-form rewards: a picklable callable whose `__name__` TRL logs as rewards/<name>/mean."""

    name = "reward"

    def __init__(self, tags: TagStyle | str):
        self.tags = get_tag_style(tags)
        self.__name__ = self.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}(tags={self.tags.name!r})"

    def _tasks(self, kwargs: dict, n: int) -> list[str]:
        tasks = _column(kwargs, "task", n, self.name)
        for i, task in enumerate(tasks):
            if task not in STAGE1_TASKS:
                raise ValueError(f"row {i}: column 'task' is {task!r}; must be one of {STAGE1_TASKS}")
        return tasks


class DescriptionReward(_RewardFunc):
    name = "description_reward"

    def __init__(self, tags: TagStyle | str = "paper", choice_mode: str = "mean"):
        super().__init__(tags)
        if choice_mode not in CHOICE_MODES:
            raise ValueError(f"choice_mode must be one of {CHOICE_MODES}, got {choice_mode!r}")
        self.choice_mode = choice_mode

    def __call__(self, completions: Sequence[Any], **kwargs) -> list[float | None]:
        n = len(completions)
        tasks = self._tasks(kwargs, n)
        objs, fams, sevs = (_column(kwargs, c, n, self.name) for c in
                            ("answer_object", "answer_family", "answer_severity"))
        out: list[float | None] = []
        for i, completion in enumerate(completions):
            if tasks[i] != "description":
                out.append(None)
                continue
            pred = parse_choices(completion_text(completion), self.tags)
            try:
                out.append(choice_reward(pred, (objs[i], fams[i], sevs[i]), self.choice_mode))
            except ValueError as exc:
                raise ValueError(f"row {i}: bad answer_object/answer_family/answer_severity: {exc}") from exc
        return out


class GroundingReward(_RewardFunc):
    name = "grounding_reward"

    def __call__(self, completions: Sequence[Any], **kwargs) -> list[float | None]:
        n = len(completions)
        tasks = self._tasks(kwargs, n)
        boxes, sizes = (_column(kwargs, c, n, self.name) for c in ("box_model", "model_wh"))
        out: list[float | None] = []
        for i, completion in enumerate(completions):
            if tasks[i] != "grounding":
                out.append(None)
                continue
            pred = parse_box(completion_text(completion), self.tags)
            try:
                out.append(grounding_reward(pred, boxes[i], sizes[i]))
            except ValueError as exc:
                raise ValueError(f"row {i}: bad 'box_model' {boxes[i]!r} or 'model_wh' {sizes[i]!r}: {exc}") from exc
        return out


class Stage1FormatReward(_RewardFunc):
    name = "format_reward"

    def __call__(self, completions: Sequence[Any], **kwargs) -> list[float | None]:
        tasks = self._tasks(kwargs, len(completions))
        return [
            float((is_choice_format if task == "description" else is_box_format)(completion_text(c), self.tags))
            for c, task in zip(completions, tasks)
        ]


class ScoreAnswerReward(_RewardFunc):
    name = "answer_reward"

    def __init__(self, tags: TagStyle | str = "paper", eps: float = 0.5):
        super().__init__(tags)
        self.eps = _finite(eps, "eps")
        if self.eps <= 0:
            raise ValueError(f"eps must be positive, got {eps}")

    def __call__(self, completions: Sequence[Any], **kwargs) -> list[float | None]:
        mos = _column(kwargs, "mos_scaled", len(completions), self.name)
        out: list[float | None] = []
        for i, (completion, target) in enumerate(zip(completions, mos)):
            try:
                out.append(answer_reward(parse_score(completion_text(completion), self.tags), target, self.eps))
            except ValueError as exc:
                raise ValueError(f"row {i}: bad 'mos_scaled' {target!r}: {exc}") from exc
        return out


class ScoreFormatReward(_RewardFunc):
    name = "format_reward"

    def __init__(self, tags: TagStyle | str = "paper", mode: str = "think"):
        super().__init__(tags)
        if mode not in ("think", "no_think"):
            raise ValueError(f"mode must be 'think' or 'no_think', got {mode!r}")
        self.mode = mode
        self._check: Callable[[str, TagStyle], bool] = is_think_format if mode == "think" else is_no_think_format

    def __call__(self, completions: Sequence[Any], **kwargs) -> list[float | None]:
        return [float(self._check(completion_text(c), self.tags)) for c in completions]


def get_stage1_reward_funcs(tags: TagStyle | str = "paper", choice_mode: str = "mean") -> list[_RewardFunc]:
    """[description_reward, grounding_reward, format_reward] for the Stage-1 multi-task dataset."""
    return [DescriptionReward(tags, choice_mode), GroundingReward(tags), Stage1FormatReward(tags)]


def get_stage2_reward_funcs(
    tags: TagStyle | str = "paper", mode: str = "think", eps: float = 0.5
) -> list[_RewardFunc]:
    """[answer_reward, format_reward] for Stage-2 scoring (PD is added by the trainer, it needs the policy)."""
    return [ScoreAnswerReward(tags, eps), ScoreFormatReward(tags, mode)]
