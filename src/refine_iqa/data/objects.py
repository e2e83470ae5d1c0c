"""Object names and boxes for a source image, and the paper's rules on which objects an image may keep.

Backends:
- `AnnotationObjects`: the ground-truth objects a source carries (COCO instances, procedural scenes).
- `VlmObjects`: a local vision-language model lists the objects with the paper's prompt (`obj1|obj2|obj3`
  or `NAN`), then a local open-vocabulary detector (OWL-ViT / OWLv2 / Grounding DINO through
  `AutoModelForZeroShotObjectDetection`) puts a box on each name.

Both end in `apply_object_rules`: 2-3 distinct, non-background names of 1-2 words, boxes of a minimum side,
none over 90% of the image, overlapping each other at most `max_iou`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# Verbatim from the paper's appendix ("Prompts Used in Refine-Perception-20K Construction"). The paper's
# text renders the separator as a dash; its next paragraph parses `object1|object2`, so the separator is "|".
OBJECT_LISTING_PROMPT = (
    "Analyze the image carefully and identify all distinct visual subjects that:\n"
    "1. Are visually and spatially separable (occupy different regions in the image, with minimal overlap allowed).\n"
    "2. Are not background elements (e.g., sky, grass, wall, floor, etc.).\n"
    "3. Can be described using 1\u20132 distinguishing English words (e.g., \u201cdog\u201d, \u201cred car\u201d, \u201cman\u201d).\n"
    "4. Are semantically different from each other (i.e., the descriptions should not repeat or refer to the same "
    "type of subject).\n"
    "5. If the image contains two or more qualifying subjects, output each subject\u2019s description separated by a |. "
    "At most, only the three most salient objects can be output.\n"
    "6. If the image does not meet the criteria (e.g., contains background, or less than two clearly "
    "distinguishable subjects), output: NAN."
)

DEFAULT_BACKGROUND_NAMES = (
    "sky", "grass", "wall", "floor", "ground", "road", "street", "water", "sea", "ocean", "ceiling", "background",
    "field", "sand", "snow", "cloud", "clouds", "fog", "tree line", "pavement", "sidewalk", "carpet", "dirt",
)


def box_iou(a, b) -> float:
    """Intersection over union of two `[x1, y1, x2, y2]` boxes (x2/y2 exclusive); 0 when both are empty.

    Same rule as `refine_iqa.boxes.iou`, kept here because that module imports transformers (seconds), and
    scene generation and curation must stay light.
    """
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area_a = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1])
    area_b = max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])
    union = area_a + area_b - inter
    return float(inter / union) if union > 0 else 0.0


def normalise_name(name: str) -> str:
    """Lower case, single spaces, no surrounding quotes, brackets or punctuation."""
    name = re.sub(r"\s+", " ", str(name)).strip()
    name = name.strip(" \t\"'`*.,;:!?()[]{}<>\u27e8\u27e9\u201c\u201d\u2018\u2019-\u2013\u2014")
    return name.lower()


def pixel_box(x1: float, y1: float, x2: float, y2: float, width: int, height: int) -> list[int] | None:
    """Round a float box outwards to integer pixels, clipped to the image; None when nothing is left."""
    eps = 1e-6  # 10.0000001 is still 10, not 11
    bx1 = max(0, min(width, math.floor(x1 + eps)))
    by1 = max(0, min(height, math.floor(y1 + eps)))
    bx2 = max(0, min(width, math.ceil(x2 - eps)))
    by2 = max(0, min(height, math.ceil(y2 - eps)))
    if bx2 <= bx1 or by2 <= by1:
        return None
    return [bx1, by1, bx2, by2]


@dataclass
class ObjectRules:
    """Which objects an image may keep (paper: 2-3 distinct, non-background, minimum size, little overlap)."""

    min_objects: int = 2
    max_objects: int = 3
    max_iou: float = 0.3  # boxes of kept objects overlap at most this much (IoU <= max_iou)
    max_box_frac: float = 0.9  # boxes covering more than this fraction of the image are dropped
    min_box_side: int = 8  # pixels; smaller boxes are dropped
    max_name_words: int = 2
    background_names: tuple[str, ...] = DEFAULT_BACKGROUND_NAMES
    drop_ambiguous: bool = True  # a name seen on two separate qualifying boxes cannot say which one is meant

    def __post_init__(self):
        if not 1 <= self.min_objects <= self.max_objects:
            raise ValueError(f"objects: need 1 <= min_objects ({self.min_objects}) <= max_objects ({self.max_objects})")
        if not 0 <= self.max_iou <= 1:
            raise ValueError(f"objects.max_iou={self.max_iou}: must be in [0, 1]")
        if not 0 < self.max_box_frac <= 1:
            raise ValueError(f"objects.max_box_frac={self.max_box_frac}: must be in (0, 1]")
        if self.min_box_side < 1:
            raise ValueError(f"objects.min_box_side={self.min_box_side}: must be at least 1 pixel")


@dataclass
class ObjectResult:
    """Selected objects (empty when rejected), the rejection reason, and what the backend saw."""

    objects: list[dict]
    reason: str | None = None
    detail: str = ""
    raw: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.reason is None


def name_problem(name: str, rules: ObjectRules) -> str | None:
    """Why a (normalised) name cannot be used, or None."""
    if not name:
        return "empty name"
    if name in {normalise_name(b) for b in rules.background_names}:
        return f"{name}: background"
    if "/" in name:
        return f"{name}: '/' separates answer fields in the prompts"
    if len(name.split(" ")) > rules.max_name_words:
        return f"{name}: more than {rules.max_name_words} words"
    return None


def apply_object_rules(candidates: list[dict], width: int, height: int, rules: ObjectRules) -> ObjectResult:
    """Select objects from `candidates` (in priority order) under `rules`.

    Candidates are `{"name", "box"}` with integer boxes; several candidates may share a name (instances).
    Steps: normalise names; drop background names, names with '/', names over `max_name_words` words, empty or
    out-of-image boxes, boxes under `min_box_side`, boxes over `max_box_frac` of the image; drop names left on
    two or more boxes (ambiguous) or keep their first; then accept greedily in order while the IoU with every accepted box
    stays <= `max_iou`, up to `max_objects`. Fewer than `min_objects` -> rejected (`too_few_objects`).
    """
    image_area = float(width * height)
    dropped: list[str] = []
    eligible: list[dict] = []
    for cand in candidates:
        name = normalise_name(cand.get("name", ""))
        box = cand.get("box")
        problem = name_problem(name, rules)
        if problem:
            dropped.append(problem)
            continue
        box = pixel_box(*box, width, height) if box is not None and len(box) == 4 else None
        if box is None:
            dropped.append(f"{name}: no box inside the image")
            continue
        w, h = box[2] - box[0], box[3] - box[1]
        if min(w, h) < rules.min_box_side:
            dropped.append(f"{name}: box side {min(w, h)} < {rules.min_box_side}")
            continue
        if w * h > rules.max_box_frac * image_area:
            dropped.append(f"{name}: box covers {w * h / image_area:.0%} of the image")
            continue
        eligible.append({"name": name, "box": box})

    counts: dict[str, int] = {}
    for obj in eligible:
        counts[obj["name"]] = counts.get(obj["name"], 0) + 1
    selected: list[dict] = []
    seen: set[str] = set()
    for obj in eligible:
        name = obj["name"]
        if name in seen:
            continue
        seen.add(name)
        if counts[name] > 1 and rules.drop_ambiguous:
            dropped.append(f"{name}: ambiguous ({counts[name]} boxes)")
            continue
        if len(selected) >= rules.max_objects:
            dropped.append(f"{name}: beyond max_objects={rules.max_objects}")
            continue
        worst = max((box_iou(obj["box"], s["box"]) for s in selected), default=0.0)
        if worst > rules.max_iou:
            dropped.append(f"{name}: IoU {worst:.2f} > {rules.max_iou} with a kept object")
            continue
        selected.append(obj)

    raw = {"dropped": dropped}
    if len(selected) < rules.min_objects:
        names = ", ".join(o["name"] for o in selected) or "none"
        detail = f"kept {len(selected)} < {rules.min_objects} ({names})"
        if dropped:
            detail += "; dropped " + "; ".join(list(dict.fromkeys(dropped))[:6])
        return ObjectResult([], "too_few_objects", detail, raw)
    return ObjectResult(selected, None, "", raw)


def parse_object_list(text: str) -> list[str] | None:
    """Parse the listing answer `obj1|obj2|obj3`; None for `NAN`. Never raises.

    Tolerates answer tags, code fences, bullets, quotes and angle brackets around the list; takes the first
    line holding a "|" (else the last non-empty line). Names are normalised and de-duplicated in order.
    """
    if not isinstance(text, str):
        return []
    cleaned = re.sub(r"\[/?answer\]|</?answer>|```[a-z]*", "\n", text, flags=re.IGNORECASE)
    lines = [ln.strip() for ln in cleaned.splitlines() if ln.strip()]
    if not lines:
        return []
    with_bar = [ln for ln in lines if "|" in ln]
    line = with_bar[0] if with_bar else lines[-1]
    if not with_bar and re.fullmatch(r"[\W_]*nan[\W_]*", line, flags=re.IGNORECASE):
        return None
    names: list[str] = []
    for part in line.split("|"):
        name = normalise_name(re.sub(r"^\s*(?:[-*\u2022]|\d+[.)])\s*", "", part))
        if name and name != "nan" and name not in names:
            names.append(name)
    return names


class AnnotationObjects:
    """Objects from the source's own annotations (COCO instances or procedural scenes)."""

    name = "annotations"

    def __init__(self, rules: ObjectRules | None = None):
        self.rules = rules or ObjectRules()

    def __call__(self, item, image: np.ndarray) -> ObjectResult:
        if item.objects is None:
            return ObjectResult([], "no_annotations", f"source {item.source!r} carries no object annotations; "
                                "use the vlm backend for unannotated images")
        height, width = image.shape[:2]
        expected = (item.meta.get("width"), item.meta.get("height"))
        if None not in expected and tuple(expected) != (width, height):
            # EXIF rotation or a wrong annotation file: the boxes would point at the wrong pixels.
            return ObjectResult([], "size_mismatch", f"annotated {expected[0]}x{expected[1]}, image is {width}x{height}")
        # Larger objects first: the most salient when ground truth has no saliency order.
        cands = sorted(item.objects, key=lambda o: -_box_area(o.get("box")))
        return apply_object_rules(cands, width, height, self.rules)


def _box_area(box) -> float:
    if not box or len(box) != 4:
        return 0.0
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


@dataclass
class VlmSettings:
    vlm_dir: str
    detector_dir: str
    device: str = "cpu"
    max_new_tokens: int = 64
    box_threshold: float = 0.1  # detector score needed for a box
    text_threshold: float = 0.25  # Grounding DINO only: token score needed for the phrase
    same_instance_iou: float = 0.5  # two boxes of one name overlapping more than this are one instance


class VlmObjects:
    """List objects with a local VLM (paper's prompt), box them with a local open-vocabulary detector."""

    name = "vlm"

    def __init__(self, settings: VlmSettings, rules: ObjectRules | None = None):
        for label, folder in (("vlm", settings.vlm_dir), ("detector", settings.detector_dir)):
            if not folder or not Path(folder).is_dir():
                raise FileNotFoundError(
                    f"objects.{label}: model folder {folder!r} not found; give a local folder saved with save_pretrained"
                )
        self.settings = settings
        self.rules = rules or ObjectRules()
        self._vlm = None
        self._detector = None

    # -- models, loaded once on first use --------------------------------------------------------------------
    def _load_vlm(self):
        if self._vlm is None:
            self._vlm = load_vlm(self.settings.vlm_dir, self.settings.device)
        return self._vlm

    def _load_detector(self):
        if self._detector is None:
            import torch  # noqa: F401  (fail early with a clear ImportError)
            from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

            folder = self.settings.detector_dir
            processor = AutoProcessor.from_pretrained(folder)
            model = AutoModelForZeroShotObjectDetection.from_pretrained(folder).to(self.settings.device).eval()
            self._detector = (model, processor)
        return self._detector

    # -- the two steps ---------------------------------------------------------------------------------------
    def list_objects(self, image: np.ndarray) -> tuple[list[str] | None, str]:
        """Ask the VLM for the objects; returns (names or None for NAN, raw answer text)."""
        import torch
        from PIL import Image

        model, processor = self._load_vlm()
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": OBJECT_LISTING_PROMPT}]}]
        prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        inputs = processor(text=[prompt], images=[Image.fromarray(image)], return_tensors="pt").to(self.settings.device)
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=self.settings.max_new_tokens, do_sample=False)
        new_tokens = out[0, inputs["input_ids"].shape[1]:]
        text = processor.batch_decode([new_tokens], skip_special_tokens=True)[0]
        return parse_object_list(text), text

    def locate(self, image: np.ndarray, names: list[str]) -> list[dict]:
        """Boxes for `names`: every detection above the threshold, one per instance, best score first."""
        import torch
        from PIL import Image

        if not names:
            return []
        model, processor = self._load_detector()
        height, width = image.shape[:2]
        model_type = getattr(model.config, "model_type", "")
        grounding = "grounding" in model_type or "dino" in model_type
        pil = Image.fromarray(image)
        if grounding:
            # Grounding DINO reads one lower-case caption with "." after each phrase.
            inputs = processor(images=pil, text=". ".join(names) + ".", return_tensors="pt")
        else:
            inputs = processor(text=[names], images=pil, return_tensors="pt")
        inputs = inputs.to(self.settings.device)
        with torch.no_grad():
            outputs = model(**inputs)
        # OWLv2 pads the image to a square before predicting: scale to the padded square, then clip.
        side = max(height, width)
        target = [(side, side)] if model_type == "owlv2" else [(height, width)]
        if grounding:
            result = processor.post_process_grounded_object_detection(
                outputs, inputs["input_ids"], threshold=self.settings.box_threshold,
                text_threshold=self.settings.text_threshold, target_sizes=target,
            )[0]
            labels = [_match_phrase(str(t), names) for t in result.get("text_labels", result["labels"])]
        else:
            result = processor.post_process_grounded_object_detection(
                outputs, threshold=self.settings.box_threshold, target_sizes=target, text_labels=[names]
            )[0]
            labels = [names[int(i)] for i in result["labels"]]
        dets = []
        for label, score, box in zip(labels, result["scores"].tolist(), result["boxes"].tolist()):
            pbox = pixel_box(*box, width, height) if label is not None else None
            if pbox is not None:
                dets.append({"name": label, "box": pbox, "score": float(score)})
        return _one_box_per_instance(dets, names, self.settings.same_instance_iou)

    def __call__(self, item, image: np.ndarray) -> ObjectResult:
        names, text = self.list_objects(image)
        raw: dict[str, Any] = {"vlm_answer": text}
        if names is None:
            return ObjectResult([], "vlm_nan", "the VLM answered NAN", raw)
        # Unusable names are dropped before detection, so they cannot take boxes from the others.
        raw["dropped_names"] = [p for p in (name_problem(n, self.rules) for n in names) if p]
        names = [n for n in names if name_problem(n, self.rules) is None]
        names = names[: self.rules.max_objects]  # the prompt asks for at most three, most salient first
        if len(names) < self.rules.min_objects:
            detail = f"the VLM listed {len(names)} usable: {names}"
            if raw["dropped_names"]:
                detail += "; dropped " + "; ".join(raw["dropped_names"])
            return ObjectResult([], "too_few_objects", detail, raw)
        dets = self.locate(image, names)
        raw["detections"] = dets
        height, width = image.shape[:2]
        result = apply_object_rules(dets, width, height, self.rules)
        result.raw.update(raw)
        return result


def _match_phrase(phrase: str, names: list[str]) -> str | None:
    """Map a Grounding DINO phrase back to one of the queried names (exact, then containment)."""
    p = normalise_name(phrase)
    if p in names:
        return p
    hits = [n for n in names if n in p or (p and p in n)]
    return max(hits, key=len) if hits else None


def _one_box_per_instance(dets: list[dict], names: list[str], same_iou: float) -> list[dict]:
    """Per name, best score first; a box overlapping a better box of the same name by > same_iou is that box.

    Returns detections ordered by the listing order of `names` (the VLM's salience order).
    """
    out = []
    for name in names:
        mine = sorted((d for d in dets if d["name"] == name), key=lambda d: (-d["score"], d["box"]))
        kept: list[dict] = []
        for d in mine:
            if all(box_iou(d["box"], k["box"]) <= same_iou for k in kept):
                kept.append(d)
        out.extend(kept)
    return out


def load_vlm(folder: str | Path, device: str = "cpu"):
    """(model, processor) of a local vision-language model folder, in eval mode."""
    from refine_iqa.model.loading import load_model_and_processor

    model, processor = load_model_and_processor(str(folder), device=device)
    return model.eval(), processor


def make_object_backend(backend: str, rules: ObjectRules | None = None, vlm: VlmSettings | None = None):
    """`annotations` or `vlm` (which needs `vlm` settings with both model folders)."""
    if backend == "annotations":
        return AnnotationObjects(rules)
    if backend == "vlm":
        if vlm is None:
            raise ValueError("objects.backend=vlm needs objects.vlm (a VLM folder) and objects.detector (a detector folder)")
        return VlmObjects(vlm, rules)
    raise ValueError(f"objects.backend={backend!r}: choose 'annotations' or 'vlm'")
