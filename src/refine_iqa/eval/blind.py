"""Blind baselines: the best score an answer that IGNORES THE IMAGE can get on each table's test split.

A model only shows perception when it beats these. Each baseline is fitted on the test split's own answers
(an upper bound for any image-blind answerer, including one that learned the label distribution):

- Table 1 (description): one constant answer for every image. The object is the listed object (the prompt
  names the candidates) that is most often right over the split; family and severity are the (family,
  severity) pair most frequent in the split, which maximises the all-three accuracy of a constant answer.
  The per-field accuracies use each field's own majority (the best constant for that field alone).
- Table 2 (grounding): one constant box, in coordinates relative to the image size (IoU does not change when
  both axes are scaled, so one relative box means the same to every image size), chosen to maximise the mean
  IoU over the split: an exhaustive search over a 1/20 grid of corners, then coordinate-wise refinement in
  1/200 steps until no move improves it. The mean ground-truth box is also tried.
- Table 3 (scoring): one constant score. Hit rate (|s - mos| < 0.5): the best score on the 0.0-4.9 grid of
  one-decimal answers the model writes. MAE: the median (the exact minimiser of the mean absolute error).
  SRCC / PLCC of a constant are undefined (no ranking); `metrics` reports them as 0.
- Table 4 (Q-Bench): per question, the option whose text is most often the right answer in the split (e.g.
  "Yes"), ties to the earlier option.

Pure functions on plain records; `refine_iqa.report` applies them to the run's test files.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence

import numpy as np

from refine_iqa import prompts
from refine_iqa.data.qbench import LETTERS, qbench_accuracy
from refine_iqa.eval import metrics
from refine_iqa.eval.perception import summarise

GRID = 20  # coarse search: corners on multiples of 1/GRID
REFINE_STEP = 0.005
SCORE_GRID = tuple(round(k / 10, 1) for k in range(50))  # the answers the model can write: 0.0 .. 4.9


def _check_items(items: Sequence[dict], fields: tuple[str, ...], what: str) -> None:
    if not items:
        raise ValueError(f"{what}: the test split is empty, no blind baseline can be computed")
    for i, it in enumerate(items):
        missing = [f for f in fields if f not in it]
        if missing:
            raise ValueError(f"{what}: test item {i} ({it.get('id', '?')}) lacks {missing}")


def _most_common(values) -> object:
    """Most frequent value; ties go to the smallest (sorted by str), so the result never depends on order."""
    counts = Counter(values)
    best = max(counts.values())
    return min((v for v, c in counts.items() if c == best), key=str)


def description_answer(items: Sequence[dict]) -> dict:
    """The constant description answer: {"family", "severity"} (display words, jointly most frequent),
    per-field majorities {"family_majority", "severity_majority"} and the object counts used to pick objects."""
    _check_items(items, ("objects", "object", "family", "level"), "description baseline")
    truth = [(prompts.display_family(it["family"]), prompts.severity_word(int(it["level"]))) for it in items]
    family, severity = _most_common(truth)
    return {"family": family, "severity": severity,
            "family_majority": _most_common(t[0] for t in truth),
            "severity_majority": _most_common(t[1] for t in truth),
            "object_counts": dict(Counter(it["object"] for it in items))}


def blind_object(item: dict, object_counts: dict) -> str:
    """Among the objects the prompt lists, the one most often right over the split (ties: first listed)."""
    return max(item["objects"], key=lambda o: (object_counts.get(o, 0), -item["objects"].index(o)))


def description_outcomes(items: Sequence[dict]) -> tuple[dict, list[dict]]:
    """(the constant answer, per-item outcomes in `perception.score_completion`'s form)."""
    ans = description_answer(items)
    out = []
    for it in items:
        fam, sev = prompts.display_family(it["family"]), prompts.severity_word(int(it["level"]))
        obj_ok = blind_object(it, ans["object_counts"]) == it["object"]
        out.append({"correct": obj_ok and fam == ans["family"] and sev == ans["severity"], "object_ok": obj_ok,
                    "family_ok": fam == ans["family_majority"], "severity_ok": sev == ans["severity_majority"],
                    "parsed": True})
    return ans, out


def relative_boxes(items: Sequence[dict]) -> np.ndarray:
    """(n, 4) ground-truth boxes as fractions of the image width/height."""
    _check_items(items, ("box", "width", "height"), "grounding baseline")
    rows = []
    for it in items:
        x1, y1, x2, y2 = (float(v) for v in it["box"])
        w, h = float(it["width"]), float(it["height"])
        if w <= 0 or h <= 0 or not (0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h):
            raise ValueError(f"grounding baseline: item {it.get('id', '?')} has box {it['box']} outside its "
                             f"{it['width']}x{it['height']} image or empty")
        rows.append((x1 / w, y1 / h, x2 / w, y2 / h))
    return np.asarray(rows, dtype=np.float64)


def mean_iou(candidates: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Mean IoU of each candidate box (k, 4) against all truth boxes (n, 4); empty candidates score 0."""
    c = np.asarray(candidates, dtype=np.float64)[:, None, :]
    t = np.asarray(truth, dtype=np.float64)[None, :, :]
    iw = np.clip(np.minimum(c[..., 2], t[..., 2]) - np.maximum(c[..., 0], t[..., 0]), 0, None)
    ih = np.clip(np.minimum(c[..., 3], t[..., 3]) - np.maximum(c[..., 1], t[..., 1]), 0, None)
    inter = iw * ih
    area_c = np.clip(c[..., 2] - c[..., 0], 0, None) * np.clip(c[..., 3] - c[..., 1], 0, None)
    area_t = (t[..., 2] - t[..., 0]) * (t[..., 3] - t[..., 1])
    union = area_c + area_t - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0).mean(axis=1)


def best_constant_box(truth: np.ndarray) -> tuple[tuple[float, float, float, float], float]:
    """(relative box, its mean IoU): grid search, then coordinate refinement (see the module docstring)."""
    truth = np.asarray(truth, dtype=np.float64)
    ticks = np.arange(GRID + 1) / GRID
    pairs = np.array([(a, b) for a, b in itertools.combinations(ticks, 2)])
    best, best_iou = truth.mean(axis=0), float(mean_iou(truth.mean(axis=0)[None], truth)[0])
    # Chunks of 4 x-pairs (840 candidates) keep memory near 30 MB per array even for 4000 test boxes.
    for xs in np.array_split(pairs, max(1, len(pairs) // 4)):
        cand = np.array([(x1, y1, x2, y2) for x1, x2 in xs for y1, y2 in pairs])
        scores = mean_iou(cand, truth)
        k = int(np.argmax(scores))
        if scores[k] > best_iou:
            best, best_iou = cand[k], float(scores[k])
    improved = True
    while improved:
        improved = False
        for axis, step in itertools.product(range(4), (REFINE_STEP, -REFINE_STEP)):
            cand = best.copy()
            cand[axis] = min(max(cand[axis] + step, 0.0), 1.0)
            if cand[2] <= cand[0] or cand[3] <= cand[1]:
                continue
            score = float(mean_iou(cand[None], truth)[0])
            if score > best_iou + 1e-12:
                best, best_iou, improved = cand, score, True
    return tuple(round(float(v), 4) for v in best), best_iou


def perception_baseline(items: Sequence[dict]) -> dict:
    """Tables 1-2 for the blind answerer, in `perception.summarise`'s layout (FR, NR and all are the same:
    the answer never looks at either image), plus the constant answer and box."""
    ans, desc = description_outcomes(items)
    box, _ = best_constant_box(relative_boxes(items))
    ious = mean_iou_each(box, relative_boxes(items))
    samples, outcomes = [], []
    for it, d, v in zip(items, desc, ious):
        for fr in (True, False):
            samples += [{"task": "description", "full_reference": fr, "family": it["family"]},
                        {"task": "grounding", "full_reference": fr, "family": it["family"]}]
            outcomes += [d, {"iou": float(v), "parsed": True}]
    table = summarise(samples, outcomes)
    table["answer"] = {"description": f"<listed object> / {ans['family']} / {ans['severity']}",
                       "box_relative": list(box)}
    return table


def mean_iou_each(box: Sequence[float], truth: np.ndarray) -> np.ndarray:
    """IoU of one box against each truth box (n,)."""
    c = np.asarray(box, dtype=np.float64)[None]
    return np.array([mean_iou(c, t[None])[0] for t in np.asarray(truth, dtype=np.float64)])


def scoring_baseline(mos_scaled: Sequence[float]) -> dict:
    """Best constant score for hit rate (one-decimal grid) and MAE (median); SRCC/PLCC undefined (0)."""
    y = np.asarray(mos_scaled, dtype=np.float64)
    if y.size == 0 or not np.all(np.isfinite(y)):
        raise ValueError("scoring baseline: need a non-empty list of finite scaled MOS values")
    hits = [metrics.hit_rate(np.full(y.size, c), y) for c in SCORE_GRID]
    k = int(np.argmax(hits))  # first best: the lowest such score
    median = float(np.median(y))
    return {"hit_rate": hits[k], "hit_score": SCORE_GRID[k], "mae": metrics.mae(np.full(y.size, median), y),
            "mae_score": median, "srcc": 0.0, "plcc": 0.0, "n": int(y.size)}


def qbench_baseline(records: Sequence[dict]) -> dict:
    """Q-Bench accuracies (qbench_accuracy's layout) of the better of two image-blind answers, by overall
    accuracy (ties: the text prior), with `strategy` naming it:

    - "text": the majority-text choice, leave-one-out: each question picks the option whose text was most often
      right on the OTHER questions (ties: the earlier option). Counting the question's own answer would memorise
      it: in a small set most right texts occur once (83% on the smoke run's 12 questions).
    - "letter X": one constant letter for every question (the best one, fitted on the questions like the other
      blind baselines' constants; a question with fewer options than X counts as wrong). Right answers are not
      spread evenly over the positions (LLVisionQA's nor the synthetic set's), so a model that always answers
      "A" beats the text prior without looking at the image.
    """
    text_choices = qbench_text_prior(records)
    best = {**qbench_accuracy(records, text_choices), "choices": text_choices, "strategy": "text"}
    for k in range(max((len(r["candidates"]) for r in records), default=0)):
        # an out-of-range letter is no answer (None), which qbench_accuracy counts as wrong
        choices = [k if k < len(r["candidates"]) else None for r in records]
        acc = qbench_accuracy(records, choices)
        if acc["accuracy"]["overall"] > best["accuracy"]["overall"]:
            best = {**acc, "choices": choices, "strategy": f"letter {LETTERS[k]}"}
    return best


def qbench_text_prior(records: Sequence[dict]) -> list[int]:
    """Each question's leave-one-out majority-text choice (qbench_baseline's "text" strategy)."""
    _check_items(records, ("candidates", "answer_index"), "Q-Bench baseline")
    right = Counter(_norm(r["candidates"][r["answer_index"]]) for r in records)

    def votes(r, i):
        text = _norm(r["candidates"][i])
        return right.get(text, 0) - (text == _norm(r["candidates"][r["answer_index"]]))

    return [max(range(len(r["candidates"])), key=lambda i, r=r: (votes(r, i), -i)) for r in records]


def _norm(text: str) -> str:
    return " ".join(str(text).lower().split())
