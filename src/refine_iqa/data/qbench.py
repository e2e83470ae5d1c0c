"""Q-Bench LLVisionQA (Table 4): load the question files, build lettered prompts, parse answers, score.

Files as downloaded: `llvisionqa_dev.json` / `llvisionqa_test.json`, a JSON list of
`{img_path, question, candidates, correct_ans, type, concern}` with type 0 yes-or-no, 1 what, 2 how and
concern 0 technical, 1 other, 2 in-context technical, 3 in-context other; images in `images/`
(or `images_llvisionqa/`, or beside the JSON).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path

QUESTION_TYPES = ("yes-or-no", "what", "how")
CONCERNS = ("technical", "other", "in-context technical", "in-context other")
IMAGE_DIRS = ("images", "images_llvisionqa", "")
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
DEFAULT_INSTRUCTION = "Answer with the option's letter from the given choices."

# Spellings seen in the released files and their re-packagings (Q-Bench calls "technical" "distortion").
_TYPE_ALIASES = {"yes-or-no": 0, "yes/no": 0, "yesno": 0, "binary": 0, "what": 1, "how": 2}
_CONCERN_ALIASES = {
    "technical": 0, "distortion": 0, "other": 1, "others": 1,
    "in-context technical": 2, "in-context distortion": 2, "in-context other": 3, "in-context others": 3,
}


def _code(value, aliases: dict, n: int, field: str, where: str) -> int:
    if isinstance(value, bool):
        value = None  # JSON true/false is not a category
    if isinstance(value, int) and 0 <= value < n:
        return value
    if isinstance(value, str):
        text = value.strip().lower().replace("_", " ")
        text = re.sub(r"^in[\s-]*context\s+", "in-context ", text)
        if text.isdigit() and int(text) < n:
            return int(text)
        if text in aliases:
            return aliases[text]
    raise ValueError(f"{where}: field '{field}' must be 0..{n - 1} or one of {sorted(aliases)}, got {value!r}")


def load_llvisionqa(root: str | Path, split: str = "test", *, check_images: bool = True) -> list[dict]:
    """Read `root/llvisionqa_<split>.json` into records (one dict per question, in file order).

    Record fields: id, split, img_path (as in the file), image_path (absolute), question, candidates,
    correct_ans (None when the file withholds answers), answer_index, type, type_name, concern, concern_name.
    """
    if split not in ("dev", "test"):
        raise ValueError(f"split must be 'dev' or 'test', got {split!r}")
    root = Path(root).expanduser().resolve()
    path = root / f"llvisionqa_{split}.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"Q-Bench: {path} not found. Expected the download layout: <root>/llvisionqa_dev.json, "
            f"<root>/llvisionqa_test.json and the images in <root>/images/"
        )
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: line {e.lineno}: invalid JSON ({e.msg})") from None
    if not isinstance(items, list) or not items:
        raise ValueError(f"{path}: expected a non-empty JSON list of questions, got {type(items).__name__}")
    records = []
    for i, it in enumerate(items):
        where = f"{path}: item {i} (0-based)"
        if not isinstance(it, dict):
            raise ValueError(f"{where}: expected an object, got {type(it).__name__}")  # noqa: TRY004 - bad file content
        missing = [k for k in ("img_path", "question", "candidates") if k not in it]
        missing += [k for k in ("type", "concern") if k not in it and f"question_{k}" not in it]
        if missing:
            raise ValueError(f"{where}: missing field(s) {missing}; fields present: {sorted(it)}")
        cands = it["candidates"]
        if not (isinstance(cands, list) and len(cands) >= 2 and all(isinstance(c, str) for c in cands)):
            raise ValueError(f"{where}: 'candidates' must be a list of at least 2 strings, got {cands!r}")
        if len(cands) > len(LETTERS):
            raise ValueError(f"{where}: {len(cands)} candidates; at most {len(LETTERS)} can be lettered")
        answer = it.get("correct_ans")
        answer_index = None
        if answer is not None:
            if answer not in cands:
                raise ValueError(f"{where}: 'correct_ans' {answer!r} is not one of the candidates {cands}")
            answer_index = cands.index(answer)
        qtype = _code(it.get("type", it.get("question_type")), _TYPE_ALIASES, 3, "type", where)
        concern = _code(it.get("concern", it.get("question_concern")), _CONCERN_ALIASES, 4, "concern", where)
        records.append({
            "id": f"llvisionqa-{split}-{i:04d}", "split": split, "img_path": str(it["img_path"]),
            "question": str(it["question"]), "candidates": list(cands), "correct_ans": answer,
            "answer_index": answer_index, "type": qtype, "type_name": QUESTION_TYPES[qtype],
            "concern": concern, "concern_name": CONCERNS[concern],
        })
    first = records[0]["img_path"]
    dirs = [root / d if d else root for d in IMAGE_DIRS]
    fallback = next((d for d in dirs if d.is_dir() and d != root), dirs[0])
    img_dir = next((d for d in dirs if (d / first).is_file()), fallback)
    for r in records:
        r["image_path"] = str(img_dir / r["img_path"])
    if check_images:
        missing = [r["img_path"] for r in records if not Path(r["image_path"]).is_file()]
        if missing:
            more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
            raise FileNotFoundError(
                f"Q-Bench: {len(missing)} of {len(records)} images listed in {path} are missing under {img_dir}: "
                f"{', '.join(missing[:5])}{more}. Extract the image archive into <root>/images/"
            )
    return records


def build_mcq_prompt(question: str, candidates: Sequence[str], instruction: str | None = DEFAULT_INSTRUCTION) -> str:
    """The question, one lettered option per line ("A. Yes"), then the instruction (None: no instruction)."""
    if not candidates:
        raise ValueError("build_mcq_prompt: no candidates")
    if len(candidates) > len(LETTERS):
        raise ValueError(f"build_mcq_prompt: {len(candidates)} candidates; at most {len(LETTERS)}")
    lines = [question.strip()] + [f"{LETTERS[i]}. {c}" for i, c in enumerate(candidates)]
    if instruction:
        lines.append(instruction)
    return "\n".join(lines)


_ANSWER_BLOCK = re.compile(r"(?:\[answer\]|<answer>)(.*?)(?:\[/answer\]|</answer>|$)", re.IGNORECASE | re.DOTALL)
# "(B) ...", "B. ...", "B) ...", "B: ..." or a bare "B"; a capital followed by a space is usually an
# English word ("A lot of noise"), so it is not read as a letter.
_LEAD_LETTER = re.compile(r"^(?:\(([A-Z])\)|([A-Z])(?:[.):]|$))\s*(.*)$", re.DOTALL)
# Only the keywords ignore case: "the answer is a blurry photo" must not read as option A.
_SAID_LETTER = re.compile(r"(?i:\b(?:answer|option|choice)\s*(?:is\s*)?:?)\s*\(?([A-Z])\)?(?![A-Za-z])")


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().strip(".!?:;,\"'`*").strip().lower()


def parse_choice(text, candidates: Sequence[str]) -> int | None:
    """Index of the option a model's answer names, or None when it names none or several. Never raises.

    Reads the last [answer]/<answer> block when there is one. Accepts a letter ("B", "(B)", "B. No",
    "The answer is B"), or the option text itself ("No", case and surrounding punctuation ignored), or a
    sentence that mentions exactly one option as a phrase. A letter followed by a different option's text
    is contradictory and gives None.
    """
    try:
        return _parse_choice(text, list(candidates))
    except Exception:  # noqa: BLE001 - a parser on model output must not take an evaluation run down
        return None


def _parse_choice(text, candidates: list[str]) -> int | None:
    if not isinstance(text, str) or not candidates:
        return None
    blocks = _ANSWER_BLOCK.findall(text)
    body = blocks[-1] if blocks else text
    body = body.strip()
    if not body:
        return None
    norm_cands = [_norm(c) for c in candidates]
    n = len(candidates)
    whole = _norm(body)
    # 1. The option text itself (checked first so an option that is a single letter still works).
    if whole in norm_cands and norm_cands.count(whole) == 1:
        return norm_cands.index(whole)
    # 2. A leading letter, optionally followed by that option's text.
    if len(whole) == 1 and whole.upper() in LETTERS[:n]:
        return LETTERS.index(whole.upper())  # a bare lower-case letter
    m = _LEAD_LETTER.match(body)
    letter = m and (m.group(1) or m.group(2))
    if letter and LETTERS.index(letter) < n:
        idx = LETTERS.index(letter)
        rest = _norm(m.group(3))
        if rest == norm_cands[idx]:
            return idx
        named = _mentions(rest, norm_cands)
        if named and idx not in named:
            return None  # "A. No" where A is "Yes": contradictory
        return idx  # the letter alone, with its option's text, or with free text ("B. The edges are soft")
    # 3. "The answer is B", "Option: C".
    said = {LETTERS.index(x.upper()) for x in _SAID_LETTER.findall(body) if LETTERS.index(x.upper()) < n}
    if len(said) == 1:
        return said.pop()
    # 4. A sentence that names exactly one option (longest matches win: "very low" over "low").
    hits = _mentions(whole, norm_cands)
    return hits[0] if len(hits) == 1 else None


def _mentions(text: str, norm_cands: list[str]) -> list[int]:
    spans = []
    for i, c in enumerate(norm_cands):
        if not c:
            continue
        for m in re.finditer(r"(?<![a-z0-9])" + re.escape(c) + r"(?![a-z0-9])", text):
            spans.append((m.start(), m.end(), i))
    kept = {i for s, e, i in spans if not any(s2 <= s and e <= e2 and (e2 - s2) > (e - s) for s2, e2, _ in spans)}
    return sorted(kept)


def qbench_accuracy(records: Sequence[dict], predictions: Sequence) -> dict:
    """Table 4 accuracies: by question type, by concern, and overall.

    `predictions[i]` answers `records[i]`: an option index, None (unanswered, counts as wrong) or the model's
    raw text (parsed with parse_choice). Returns {"accuracy": {name: fraction or NaN when no question},
    "correct": {...}, "total": {...}, "unanswered": int}; names are QUESTION_TYPES, CONCERNS and "overall".
    """
    if len(records) != len(predictions):
        raise ValueError(f"qbench_accuracy: {len(records)} records but {len(predictions)} predictions")
    keys = list(QUESTION_TYPES) + list(CONCERNS) + ["overall"]
    correct = dict.fromkeys(keys, 0)
    total = dict.fromkeys(keys, 0)
    unanswered = 0
    for r, p in zip(records, predictions):
        if r.get("answer_index") is None:
            raise ValueError(
                f"qbench_accuracy: record {r.get('id')} has no correct answer (the file withholds it); "
                f"score the dev split or a test file with correct_ans"
            )
        if isinstance(p, str):
            p = parse_choice(p, r["candidates"])
        elif p is not None and not (isinstance(p, int) and not isinstance(p, bool)):
            raise ValueError(f"qbench_accuracy: prediction for {r.get('id')} must be an int, None or text, got {p!r}")
        if p is None:
            unanswered += 1
        hit = int(p is not None and p == r["answer_index"])
        for k in (QUESTION_TYPES[r["type"]], CONCERNS[r["concern"]], "overall"):
            correct[k] += hit
            total[k] += 1
    accuracy = {k: (correct[k] / total[k] if total[k] else math.nan) for k in keys}
    return {"accuracy": accuracy, "correct": correct, "total": total, "unanswered": unanswered}
