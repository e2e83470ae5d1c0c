"""An embedded, SYNTHETIC Q-Bench: LLVisionQA-format questions about the project's own generated images.

The real LLVisionQA cannot be downloaded here, yet the embedded workflow must fill Table 4. This module
writes `llvisionqa_dev.json`, `llvisionqa_test.json` and `images/` in the download's own format (so
`refine_iqa.data.qbench.load_llvisionqa` reads it unchanged), with questions whose answers follow from what
the project knows about each image:

- technical (whole image): the distortion and level of a scoring record (`work/scoring/scoring_*.jsonl`);
- in-context technical: the distorted object, family and level of a perception manifest item (its
  distorted image);
- other / in-context other: colours, shapes and box positions of the objects of a procedural scene (its
  undistorted reference image). A generated scene never repeats a colour or a shape, so "the square" names
  one object and "a blue square" is absent when the square is red, even if curation left an object unlisted.

Answers that presume a visible distortion use level >= MIN_VISIBLE_LEVEL, and "No" answers ask about a family
that cannot be mistaken for the one applied (CONFUSABLE). The JSON format has no field for provenance, so
`SYNTHETIC.md` in the output folder says the set is synthetic. Everything is a pure function of the inputs
and the seed; dev and test questions use disjoint images where the pools allow it.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from refine_iqa.data.assemble import stable_seed
from refine_iqa.data.qbench import CONCERNS, QUESTION_TYPES
from refine_iqa.data.scenes import COLOURS, SHAPES
from refine_iqa.io_utils import atomic_path, atomic_write_json, atomic_write_text
from refine_iqa.prompts import DISTORTION_NAMES, display_family, severity_word

SPLITS = ("dev", "test")
MIN_VISIBLE_LEVEL = 2
# Overall quality from the distortion level; levels 1, 2 and 4 lie between two words and are not asked.
QUALITY_BY_LEVEL = {0: "high", 3: "medium", 5: "low"}
QUALITY_WORDS = ("high", "medium", "low")
# Horizontal position of a box centre (fraction of the width); centres between two bins are not asked.
POSITION_BINS = (("on the left", 0.0, 0.3), ("in the middle", 0.4, 0.6), ("on the right", 0.7, 1.0))
COUNT_WORDS = ("none", "one", "two", "three")
N_OPTIONS = 4  # options of a what/how question where enough distractors exist

YES_NO_TEMPLATES = {
    "blur": "Is {subject} blurry?",
    "noise": "Is {subject} noisy?",
    "compression": "Does {subject} show compression artifacts?",
    "overexposure": "Is {subject} overexposed?",
    "underexposure": "Is {subject} underexposed?",
    "high contrast": "Is the contrast of {subject} too high?",
    "low contrast": "Is the contrast of {subject} too low?",
    "oversaturate": "Is {subject} oversaturated?",
    "desaturate": "Is {subject} desaturated?",
    "oversharpen": "Is {subject} oversharpened?",
    "pixelate": "Is {subject} pixelated?",
    "quantization": "Does {subject} show quantization, with its colours reduced to a few flat levels?",
}
# Families whose look overlaps (glass/jitter blur looks noisy, histogram quantization changes brightness...):
# a "No" answer or a distractor never names a family confusable with the one applied.
_CONFUSABLE_PAIRS = (
    ("blur", "compression"), ("blur", "pixelate"), ("blur", "noise"), ("compression", "pixelate"),
    ("compression", "quantization"), ("compression", "noise"), ("noise", "oversharpen"),
    ("pixelate", "quantization"), ("overexposure", "low contrast"), ("overexposure", "desaturate"),
    ("overexposure", "high contrast"), ("overexposure", "quantization"), ("underexposure", "high contrast"),
    ("underexposure", "low contrast"), ("underexposure", "quantization"), ("high contrast", "oversaturate"),
    ("high contrast", "oversharpen"), ("high contrast", "quantization"), ("low contrast", "desaturate"),
    ("oversaturate", "quantization"),
)
CONFUSABLE: dict[str, frozenset[str]] = {
    f: frozenset({b for a, b in _CONFUSABLE_PAIRS if a == f} | {a for a, b in _CONFUSABLE_PAIRS if b == f})
    for f in DISTORTION_NAMES
}
# Asked about undistorted images: exposure, contrast and colour words depend on the photo's content.
ARTIFACT_FAMILIES = ("blur", "noise", "compression", "oversharpen", "pixelate", "quantization")

TECHNICAL, OTHER, IN_CONTEXT_TECHNICAL, IN_CONTEXT_OTHER = range(4)


def _unconfusable(family: str | None, pool: Sequence[str] = DISTORTION_NAMES) -> list[str]:
    if family is None:
        return [f for f in pool if f in ARTIFACT_FAMILIES]
    return [f for f in pool if f != family and f not in CONFUSABLE[family]]


def _pick(rng: np.random.Generator, items: Sequence, k: int | None = None):
    """One item (k None) or k distinct items, in a seeded order."""
    if k is None:
        return items[int(rng.integers(len(items)))]
    return [items[i] for i in rng.choice(len(items), size=k, replace=False)]


# --- input records -> question sources ---------------------------------------------------------------------

def _resolve(path, base_dir: Path, where: str) -> Path:
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise ValueError(f"{where}: image path must be a non-empty string, got {path!r}")
    p = Path(path)
    p = p if p.is_absolute() else base_dir / p
    if not p.is_file():
        raise FileNotFoundError(f"{where}: image {p} not found; rebuild the step that wrote it or fix the path")
    return p


def _level(value, lo: int, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= 5:
        raise ValueError(f"{where}: field 'level' must be an integer {lo}..5, got {value!r}")
    return value


def _technical_items(records: Sequence[dict], base_dir: Path) -> list[dict]:
    items = []
    for i, r in enumerate(records):
        where = f"scoring_records[{i}] (id {r.get('id')!r})" if isinstance(r, dict) else f"scoring_records[{i}]"
        if not isinstance(r, dict):
            raise ValueError(f"{where}: expected a dict, got {type(r).__name__}")  # noqa: TRY004 - bad record content
        missing = [k for k in ("image_path", "distortion", "level") if k not in r]
        if missing:
            raise ValueError(f"{where}: missing field(s) {missing}; the technical questions need the proxy scoring "
                             f"set's distortion labels (data.scoring.synthetic.kind: proxy, not brightness)")
        dist = r["distortion"]
        level = _level(r["level"], 0, where)
        if dist is None:
            if level != 0:
                raise ValueError(f"{where}: 'distortion' is null (clean image) but 'level' is {level}; expected 0")
            family = None
        else:
            if level == 0:
                raise ValueError(f"{where}: distortion {dist!r} with level 0; a distorted image has level 1..5")
            try:
                family = display_family(str(dist).split(".", 1)[0])
            except ValueError as e:
                raise ValueError(f"{where}: field 'distortion': {e}") from None
        items.append({"unit": f"scoring:{r.get('id', i)}", "path": _resolve(r["image_path"], base_dir, where),
                      "kind": "scoring", "family": family, "level": level})
    return items


def _parse_object(name: str) -> tuple[str, str] | None:
    parts = name.split()
    if len(parts) == 2 and parts[0] in COLOURS and parts[1] in SHAPES:
        return parts[0], parts[1]
    return None


def _box(value, where: str) -> list[int]:
    ok = isinstance(value, (list, tuple)) and len(value) == 4 and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value)
    if not ok or not (value[0] < value[2] and value[1] < value[3]):
        raise ValueError(f"{where}: field 'box' must be [x1, y1, x2, y2] integers with x1 < x2 and y1 < y2, "
                         f"got {value!r}")
    return list(value)


def _perception_items(records: Sequence[dict], base_dir: Path) -> tuple[list[dict], list[dict]]:
    """(in-context technical items on distorted images, scene items on reference images)."""
    distorted, scenes = [], {}
    for i, r in enumerate(records):
        where = f"manifest_records[{i}] (id {r.get('id')!r})" if isinstance(r, dict) else f"manifest_records[{i}]"
        if not isinstance(r, dict):
            raise ValueError(f"{where}: expected a dict, got {type(r).__name__}")  # noqa: TRY004 - bad record content
        need = ("dist_path", "ref_path", "object", "objects", "family", "level", "box", "width", "source_id")
        missing = [k for k in need if k not in r]
        if missing:
            raise ValueError(f"{where}: missing field(s) {missing}; expected a Refine-Perception manifest line "
                             f"(docs/ARCHITECTURE.md)")
        objects = r["objects"]
        if not (isinstance(objects, list) and objects and all(isinstance(o, str) for o in objects)):
            raise ValueError(f"{where}: field 'objects' must be a non-empty list of names, got {objects!r}")
        if r["object"] not in objects:
            raise ValueError(f"{where}: distorted object {r['object']!r} is not in 'objects' {objects}")
        try:
            family = display_family(r["family"])
        except ValueError as e:
            raise ValueError(f"{where}: field 'family': {e}") from None
        box = _box(r["box"], where)
        width = r["width"]
        if isinstance(width, bool) or not isinstance(width, int) or width < box[2]:
            raise ValueError(f"{where}: field 'width' must be an integer >= the box's x2 ({box[2]}), got {width!r}")
        unit = f"scene:{r['source_id']}"
        distorted.append({"unit": unit, "path": _resolve(r["dist_path"], base_dir, where), "kind": "dist",
                          "object": r["object"], "objects": list(objects), "family": family,
                          "level": _level(r["level"], 1, where)})
        parsed = [_parse_object(o) for o in objects]
        # Only generated scenes promise one object per colour and per shape (see module docstring).
        if r.get("source") != "scenes" or None in parsed:
            continue
        if len({c for c, _ in parsed}) != len(parsed) or len({s for _, s in parsed}) != len(parsed):
            continue
        ref = _resolve(r["ref_path"], base_dir, where)
        scene = scenes.setdefault(unit, {"unit": unit, "path": ref, "kind": "ref", "objects": dict(parsed),
                                         "width": width, "boxes": {}})
        if scene["path"] != ref or scene["objects"] != dict(parsed):
            raise ValueError(f"{where}: source {r['source_id']!r} appears with a different reference image or "
                             f"object list elsewhere in the manifest; one source has one reference image")
        scene["boxes"][_parse_object(r["object"])[1]] = box  # keyed by shape
    return distorted, [scenes[k] for k in sorted(scenes)]


# --- question makers: (item, rng, want_yes) -> (question, correct answer, distractors) or None -----------

def _yes_no(question: str, yes: bool):
    return question, ("Yes" if yes else "No"), ["No" if yes else "Yes"]


def _distortion_yes_no(item: dict, rng, want_yes: bool, subject: str):
    family, level = item["family"], item["level"]
    if want_yes:
        if family is None or level < MIN_VISIBLE_LEVEL:
            return None
        return _yes_no(YES_NO_TEMPLATES[family].format(subject=subject), True)
    asked = _unconfusable(family)
    return _yes_no(YES_NO_TEMPLATES[_pick(rng, asked)].format(subject=subject), False) if asked else None


def _technical_yes_no(item, rng, want_yes):
    return _distortion_yes_no(item, rng, want_yes, "this image")


def _technical_what(item, rng, _):
    if item["family"] is None or item["level"] < MIN_VISIBLE_LEVEL:
        return None
    others = _unconfusable(item["family"])
    return ("What distortion is most visible in this image?", item["family"],
            _pick(rng, others, min(N_OPTIONS - 1, len(others))))


def _technical_how(item, rng, _):
    answer = QUALITY_BY_LEVEL.get(item["level"])
    if answer is None:
        return None
    return "How is the overall quality of this image?", answer, [w for w in QUALITY_WORDS if w != answer]


def _in_context_yes_no(item, rng, want_yes):
    return _distortion_yes_no(item, rng, want_yes, f"the {item['object']} in this image")


def _in_context_what(item, rng, _):
    if item["level"] < MIN_VISIBLE_LEVEL or len(item["objects"]) < 2:
        return None
    return ("Which object in this image is distorted?", item["object"],
            [o for o in item["objects"] if o != item["object"]])


def _in_context_how(item, rng, _):
    answer = severity_word(item["level"])
    others = [severity_word(v) for v in range(1, 6) if v != item["level"]]
    return (f"How severe is the distortion on the {item['object']}?", answer,
            _pick(rng, others, N_OPTIONS - 1))


def _absent_names(scene: dict) -> list[str]:
    """Names certainly not in the scene: a listed shape in a colour other than its own."""
    return [f"{c} {s}" for s, own in sorted((s, c) for c, s in scene["objects"].items()) for c in COLOURS if c != own]


def _present_names(scene: dict) -> list[str]:
    return [f"{c} {s}" for c, s in sorted(scene["objects"].items())]


def _other_yes_no(scene, rng, want_yes):
    name = _pick(rng, _present_names(scene) if want_yes else _absent_names(scene))
    article = "an" if name[0] in "aeiou" else "a"
    return _yes_no(f"Is there {article} {name} in this image?", want_yes)


def _other_what(scene, rng, _):
    return ("Which of these objects appears in this image?", _pick(rng, _present_names(scene)),
            _pick(rng, _absent_names(scene), N_OPTIONS - 1))


def _other_how(scene, rng, _):
    present, absent = _present_names(scene), _absent_names(scene)
    k = int(rng.integers(0, min(3, len(present)) + 1))
    named = _pick(rng, present, k) + _pick(rng, absent, 3 - k)
    named = [named[i] for i in rng.permutation(3)]
    listing = f"the {named[0]}, the {named[1]} and the {named[2]}"
    return (f"How many of these objects appear in this image: {listing}?", COUNT_WORDS[k],
            [w for w in COUNT_WORDS if w != COUNT_WORDS[k]])


def _in_context_other_yes_no(scene, rng, want_yes):
    colour, shape = _pick(rng, sorted(scene["objects"].items()))
    if not want_yes:
        colour = _pick(rng, [c for c in COLOURS if c != colour])
    return _yes_no(f"Is the {shape} in this image {colour}?", want_yes)


def _in_context_other_what(scene, rng, _):
    colour, shape = _pick(rng, sorted(scene["objects"].items()))
    return f"What colour is the {shape}?", colour, _pick(rng, [c for c in COLOURS if c != colour], N_OPTIONS - 1)


def horizontal_position(box: Sequence[int], width: int) -> str | None:
    """'on the left' / 'in the middle' / 'on the right' for a box centre, None between two bins."""
    centre = (box[0] + box[2]) / 2.0 / width
    return next((word for word, lo, hi in POSITION_BINS if lo <= centre <= hi), None)


def _in_context_other_how(scene, rng, _):
    placed = [(s, horizontal_position(b, scene["width"])) for s, b in sorted(scene["boxes"].items())]
    placed = [(s, w) for s, w in placed if w is not None]
    if not placed:
        return None
    shape, answer = _pick(rng, placed)
    return (f"How is the {shape} positioned horizontally in this image?", answer,
            [w for w, _, _ in POSITION_BINS if w != answer])


# (type, concern) -> (pool name, maker)
MAKERS: dict[tuple[int, int], tuple[str, Callable]] = {
    (0, TECHNICAL): ("technical", _technical_yes_no),
    (1, TECHNICAL): ("technical", _technical_what),
    (2, TECHNICAL): ("technical", _technical_how),
    (0, IN_CONTEXT_TECHNICAL): ("distorted", _in_context_yes_no),
    (1, IN_CONTEXT_TECHNICAL): ("distorted", _in_context_what),
    (2, IN_CONTEXT_TECHNICAL): ("distorted", _in_context_how),
    (0, OTHER): ("scenes", _other_yes_no),
    (1, OTHER): ("scenes", _other_what),
    (2, OTHER): ("scenes", _other_how),
    (0, IN_CONTEXT_OTHER): ("scenes", _in_context_other_yes_no),
    (1, IN_CONTEXT_OTHER): ("scenes", _in_context_other_what),
    (2, IN_CONTEXT_OTHER): ("scenes", _in_context_other_how),
}
POOL_HELP = {
    "technical": "scoring records with distortion labels (distorted at level >= 2, and levels 0, 3 or 5)",
    "distorted": "perception manifest items with at least two objects",
    "scenes": "perception manifest items of generated scenes (source 'scenes', objects named '<colour> <shape>')",
}


# --- assembling a split ----------------------------------------------------------------------------------------

def cell_counts(n: int) -> Counter:
    """Questions per (type, concern) cell: question k goes to (k mod 3, k mod 4), so any 12 consecutive
    questions fill all 12 cells once and any 4 cover every type and every concern."""
    return Counter((k % 3, k % 4) for k in range(n))


class _Positions:
    """Block-randomised answer positions: each run of m questions with m options uses every position once."""

    def __init__(self, rng):
        self.rng, self.queues = rng, {}

    def next(self, m: int) -> int:
        q = self.queues.setdefault(m, [])
        if not q:
            q.extend(int(p) for p in self.rng.permutation(m))
        return q.pop()


def _split_units(pools: dict[str, list[dict]], rng) -> dict[str, set[str]]:
    """Seeded, alternating assignment of image units (scoring ids, scene sources) to dev and test."""
    units = sorted({it["unit"] for pool in pools.values() for it in pool})
    order = [units[i] for i in rng.permutation(len(units))]
    return {"dev": set(order[0::2]), "test": set(order[1::2])}


def _make_cell(cell, count, pool, split_units, rng, positions) -> list[dict]:
    pool_name, maker = MAKERS[cell]
    # Prefer this split's own images; fall back to the whole pool when they cannot give the question.
    tiers = [[it for it in pool if it["unit"] in split_units], pool]
    offset = int(rng.integers(2))
    out = []
    for j in range(count):
        want_yes = (j + offset) % 2 == 0
        made = None
        for wanted in (want_yes, not want_yes):  # a yes/no cell whose pool has only one polarity still fills
            for tier in tiers:
                for i in rng.permutation(len(tier)):
                    made = maker(tier[int(i)], rng, wanted)
                    if made is not None:
                        item = tier[int(i)]
                        break
                if made is not None:
                    break
            if made is not None:
                break
        if made is None:
            raise ValueError(
                f"synthetic Q-Bench: no {QUESTION_TYPES[cell[0]]} / {CONCERNS[cell[1]]} question can be made: "
                f"need {POOL_HELP[pool_name]}; got {len(pool)} usable item(s)")
        question, answer, distractors = made
        distractors = [distractors[i] for i in rng.permutation(len(distractors))]
        pos = positions.next(len(distractors) + 1)
        out.append({"item": item, "question": question, "correct_ans": answer,
                    "candidates": distractors[:pos] + [answer] + distractors[pos:],
                    "type": cell[0], "concern": cell[1]})
    return out


def _image_names(questions: list[dict]) -> dict[Path, str]:
    """A unique, stable file name under images/ for every source image, in first-use order."""
    names, taken = {}, set()
    for q in questions:
        p = q["item"]["path"]
        if p in names:
            continue
        name, n = f"{q['item']['kind']}-{p.name}", 1
        while name in taken:
            n += 1
            name = f"{q['item']['kind']}-{p.stem}-{n}{p.suffix}"
        names[p] = name
        taken.add(name)
    return names


def _place_image(src: Path, dst: Path) -> None:
    """Hard link when the file system allows it, else a copy; atomic either way."""
    with atomic_path(dst) as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)


def _note(seed: int, counts: dict, n_images: int, pool_sizes: dict) -> str:
    lines = [
        "# SYNTHETIC Q-Bench (LLVisionQA format) - not the real benchmark",
        "",
        "Every question in `llvisionqa_dev.json` and `llvisionqa_test.json` was generated by",
        "`refine_iqa.data.qbench_synthetic.build_synthetic_llvisionqa` from the project's own synthetic images;",
        "no human wrote or checked them. Accuracies on this set are NOT comparable with the paper's Table 4.",
        "",
        "Answers follow from the labels the project assigned when it made each image:",
        "- technical: the distortion family and level of a scoring-set image (whole-image distortion);",
        "- in-context technical: the distorted object, family and severity of a Refine-Perception image;",
        "- other / in-context other: colours, shapes and box positions of a generated scene's objects",
        "  (asked on its undistorted reference image).",
        f"Answers presuming a visible distortion use level >= {MIN_VISIBLE_LEVEL}; overall quality is asked only at "
        f"levels {sorted(QUALITY_BY_LEVEL)} ({', '.join(f'{k}: {v}' for k, v in QUALITY_BY_LEVEL.items())});",
        "'No' answers name a family that cannot be mistaken for the one applied.",
        "",
        f"Seed: {seed}. Images: {n_images} (hard links or copies in images/). "
        f"Source items: {', '.join(f'{k} {v}' for k, v in pool_sizes.items())}.",
        "",
        "| split | " + " | ".join(QUESTION_TYPES + CONCERNS) + " | total |",
        "|---" * (len(QUESTION_TYPES) + len(CONCERNS) + 2) + "|",
    ]
    for split, c in counts.items():
        row = [str(c["type"].get(t, 0)) for t in QUESTION_TYPES] + [str(c["concern"].get(x, 0)) for x in CONCERNS]
        lines.append(f"| {split} | " + " | ".join(row) + f" | {c['total']} |")
    return "\n".join(lines) + "\n"


def build_synthetic_llvisionqa(out_dir: str | Path, *, scoring_records: Sequence[dict],
                               manifest_records: Sequence[dict], n_dev: int, n_test: int, seed: int,
                               base_dir: str | Path | None = None) -> dict:
    """Write `out_dir/llvisionqa_{dev,test}.json`, `out_dir/images/` and `out_dir/SYNTHETIC.md`.

    `scoring_records`: proxy scoring-set lines (image_path, distortion or None, level 0..5).
    `manifest_records`: Refine-Perception manifest lines. Relative image paths are read from `base_dir`
    (default: the current folder). `n_dev`/`n_test` >= 4 questions each, spread evenly over the 12
    (type, concern) cells. Returns the output paths and the per-split counts by type and concern.
    """
    for key, n in (("n_dev", n_dev), ("n_test", n_test)):
        if isinstance(n, bool) or not isinstance(n, int) or n < 4:
            raise ValueError(f"{key} must be an integer >= 4 (one question per type and concern), got {n!r}")
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    pools = {"technical": _technical_items(scoring_records, base)}
    pools["distorted"], pools["scenes"] = _perception_items(manifest_records, base)
    # Sorted pools: the output depends on the records, never on the order they came in.
    pools = {k: sorted(v, key=lambda it: (it["unit"], str(it["path"]))) for k, v in pools.items()}
    split_units = _split_units(pools, np.random.default_rng(stable_seed(seed, "qbench-units")))
    questions = {}
    for split, n in zip(SPLITS, (n_dev, n_test)):
        rng = np.random.default_rng(stable_seed(seed, "qbench", split))
        positions = _Positions(rng)
        qs = []
        for cell, count in sorted(cell_counts(n).items()):
            qs += _make_cell(cell, count, pools[MAKERS[cell][0]], split_units[split], rng, positions)
        questions[split] = [qs[i] for i in rng.permutation(len(qs))]
    out_dir = Path(out_dir)
    names = _image_names(questions["dev"] + questions["test"])
    for src, name in names.items():
        _place_image(src, out_dir / "images" / name)
    result = {"images_dir": out_dir / "images", "n_images": len(names), "counts": {}}
    for split, qs in questions.items():
        rows = [{"img_path": names[q["item"]["path"]], "question": q["question"], "candidates": q["candidates"],
                 "correct_ans": q["correct_ans"], "type": q["type"], "concern": q["concern"]} for q in qs]
        path = out_dir / f"llvisionqa_{split}.json"
        atomic_write_json(path, rows)
        result[f"{split}_path"] = path
        result["counts"][split] = {"total": len(rows),
                                   "type": dict(Counter(QUESTION_TYPES[r["type"]] for r in rows)),
                                   "concern": dict(Counter(CONCERNS[r["concern"]] for r in rows))}
    atomic_write_text(out_dir / "SYNTHETIC.md",
                      _note(seed, result["counts"], len(names), {k: len(v) for k, v in pools.items()}))
    return result
