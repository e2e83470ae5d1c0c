"""Evaluation metrics: SRCC, KRCC, PLCC (raw and after the 4-parameter logistic fit), MAE, RMSE, hit rate,
accuracies.

Degenerate input never raises; it returns (documented per function):
- any NaN / inf in the inputs, or fewer than 3 items (correlations) / no items (errors, rates): NaN;
- constant predictions: correlation 0.0 (the model ranks nothing; a collapsed model shows as 0, not a gap);
- constant labels: NaN (the benchmark itself cannot rank).
Inputs of different lengths are a programming error and raise ValueError.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

# |pred - label| is rounded to this many decimals before the strict '<' test, here and in the answer reward
# (rewards.answer_reward, Eq. 1), so binary floating error cannot move a difference of exactly eps (3.2 vs 3.7)
# to one side or the other, and the metric and the reward always agree.
DIFF_DECIMALS = 6

MIN_ITEMS = 3


def _pair(pred, label) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred, dtype=np.float64).ravel()
    y = np.asarray(label, dtype=np.float64).ravel()
    if p.shape != y.shape:
        raise ValueError(f"predictions ({p.size}) and labels ({y.size}) differ in length")
    return p, y


def _degenerate(p: np.ndarray, y: np.ndarray) -> float | None:
    """NaN / 0.0 for inputs a correlation is undefined on, else None."""
    if p.size < MIN_ITEMS or not (np.all(np.isfinite(p)) and np.all(np.isfinite(y))):
        return math.nan
    if np.ptp(y) == 0:
        return math.nan
    if np.ptp(p) == 0:
        return 0.0
    return None


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    den = math.sqrt(float(np.dot(a, a)) * float(np.dot(b, b)))
    if den == 0.0:
        return 0.0
    return float(np.clip(np.dot(a, b) / den, -1.0, 1.0))


def srcc(pred, label) -> float:
    """Spearman rank correlation (average ranks for ties)."""
    from scipy.stats import rankdata

    p, y = _pair(pred, label)
    bad = _degenerate(p, y)
    return bad if bad is not None else _pearson(rankdata(p), rankdata(y))


def krcc(pred, label) -> float:
    """Kendall rank correlation (tau-b, which accounts for ties)."""
    from scipy.stats import kendalltau

    p, y = _pair(pred, label)
    bad = _degenerate(p, y)
    return bad if bad is not None else float(kendalltau(p, y).statistic)


def plcc_raw(pred, label) -> float:
    """Pearson linear correlation of the predictions as they are."""
    p, y = _pair(pred, label)
    bad = _degenerate(p, y)
    return bad if bad is not None else _pearson(p, y)


def logistic4(x, b1: float, b2: float, b3: float, b4: float):
    """f(x) = (b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2: increasing from b2 to b1 around b3."""
    z = -(np.asarray(x, dtype=np.float64) - b3) / max(abs(b4), 1e-12)
    return (b1 - b2) / (1.0 + np.exp(np.clip(z, -700.0, 700.0))) + b2


@dataclass(frozen=True)
class PLCCResult:
    value: float
    method: str  # "logistic" | "raw" (fit failed, see reason) | "degenerate" (value is NaN or 0 by the rules above)
    params: tuple[float, float, float, float] | None = None  # b1..b4, fitted on sign * pred
    reason: str = ""


def plcc_detailed(pred, label, *, maxfev: int = 20000) -> PLCCResult:
    """PLCC after fitting the 4-parameter logistic from predictions to labels (the field's standard).

    Initial values b1 = max(label), b2 = min(label), b3 = mean(pred), b4 = std(pred) / 4. The curve is
    increasing (|b4|), so predictions are fitted with the sign of their raw correlation and that sign is
    put back: a reversed predictor reads about -1, as its SRCC does, rather than being hidden. When the fit
    fails (no convergence, non-finite or constant output) the raw PLCC is returned with method "raw".
    """
    from scipy.optimize import OptimizeWarning, curve_fit

    p, y = _pair(pred, label)
    bad = _degenerate(p, y)
    if bad is not None:
        return PLCCResult(bad, "degenerate", None, "fewer than 3 items, non-finite values or constant input")
    raw = _pearson(p, y)
    sign = -1.0 if raw < 0 else 1.0
    x = sign * p
    p0 = [float(y.max()), float(y.min()), float(x.mean()), float(x.std()) / 4.0]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)  # covariance not needed
            warnings.simplefilter("ignore", RuntimeWarning)
            params, _ = curve_fit(logistic4, x, y, p0=p0, maxfev=maxfev)
    except (RuntimeError, ValueError, FloatingPointError) as e:
        return PLCCResult(raw, "raw", None, f"logistic fit failed: {e}")
    fitted = logistic4(x, *params)
    if not np.all(np.isfinite(fitted)) or np.ptp(fitted) == 0:
        return PLCCResult(raw, "raw", None, "logistic fit gave non-finite or constant output")
    return PLCCResult(sign * _pearson(fitted, y), "logistic", tuple(float(b) for b in params))


def plcc(pred, label) -> float:
    """PLCC after the 4-parameter logistic fit (raw PLCC when the fit fails; see plcc_detailed)."""
    return plcc_detailed(pred, label).value


def _errors(pred, label) -> np.ndarray | None:
    p, y = _pair(pred, label)
    if p.size == 0 or not (np.all(np.isfinite(p)) and np.all(np.isfinite(y))):
        return None
    return p - y


def mae(pred, label) -> float:
    """Mean absolute error; NaN when empty or any value is non-finite."""
    e = _errors(pred, label)
    return math.nan if e is None else float(np.mean(np.abs(e)))


def rmse(pred, label) -> float:
    """Root mean squared error; NaN when empty or any value is non-finite."""
    e = _errors(pred, label)
    return math.nan if e is None else float(math.sqrt(np.mean(e * e)))


def hit_rate(pred, label, eps: float = 0.5) -> float:
    """Fraction with |pred - label| < eps, decided exactly as the answer reward (Eq. 1) decides it: strict,
    the difference rounded to the same decimals (0.2 vs 0.7 differs by 0.49999999999999994 in floats: a miss
    for the reward, so a miss here). A non-finite prediction (an unparsable answer) counts as a miss; no items
    or a non-finite label gives NaN."""
    p, y = _pair(pred, label)
    if p.size == 0 or not np.all(np.isfinite(y)):
        return math.nan
    with np.errstate(invalid="ignore"):
        hits = np.isfinite(p) & (np.round(np.abs(p - y), DIFF_DECIMALS) < eps)
    return float(hits.mean())


def accuracy(correct: Sequence[bool]) -> float:
    """Fraction of True; NaN when empty."""
    c = np.asarray(list(correct), dtype=bool)
    return float(c.mean()) if c.size else math.nan


def accuracy_by_group(correct: Sequence[bool], groups: Sequence[Hashable]) -> dict:
    """{group: {"accuracy", "correct", "total"}} in first-seen group order."""
    correct, groups = list(correct), list(groups)
    if len(correct) != len(groups):
        raise ValueError(f"accuracy_by_group: {len(correct)} results but {len(groups)} group labels")
    out: dict = {}
    for c, g in zip(correct, groups):
        d = out.setdefault(g, {"accuracy": math.nan, "correct": 0, "total": 0})
        d["correct"] += int(bool(c))
        d["total"] += 1
    for d in out.values():
        d["accuracy"] = d["correct"] / d["total"]
    return out


def correlation_report(pred, label) -> dict:
    """All scoring metrics for one dataset, JSON-ready (Table 3 reports srcc and plcc)."""
    p, y = _pair(pred, label)
    res = plcc_detailed(p, y)
    return {
        "n": int(p.size), "srcc": srcc(p, y), "plcc": res.value, "plcc_method": res.method,
        "plcc_raw": plcc_raw(p, y), "krcc": krcc(p, y), "mae": mae(p, y), "rmse": rmse(p, y),
    }
