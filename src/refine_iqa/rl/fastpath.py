"""Exact speed-ups of a GRPO step for vision-language models: do each image's work once, not G times.

TRL repeats every prompt G times (one copy per rollout), so in one step each image is preprocessed G times
for generation, G times again for the loss forward, and run through the vision tower G times in each of the
generation prefill, the loss forward and the backward pass, although the G copies are identical. The levers,
all exact (they change where work happens, never what is computed):

* `DedupImageProcessor` wraps the processor's image processor: identical images in one call are processed
  once and their rows repeated; results are kept in a small LRU cache keyed by image content, so the second
  preprocessing of the same batch (TRL tokenizes the prompts for generation, then again for the loss forward)
  costs a hash per image.
* `dedup_vision_tower` makes the model's `get_image_features` run the vision tower once per distinct image in
  a batch and broadcast the output to every copy. Autograd sums the gradients of the copies into the one
  computation, which is the same gradient the G separate computations give (up to float summation order).

* `shared_prompt_forward` (loss forward): the G rollouts of a prompt share its tokens and image, so the
  prompt (system text, image tokens, instruction: most of the sequence) is run through the language model once
  per distinct prompt with its key/value cache kept in the autograd graph, and the G completions attend to
  that one cache. Causal attention makes the prompt's states independent of the completion, so the hidden
  states equal the full forward's; autograd sums the G completions' gradients into the shared prompt. It is
  active only inside `RefineGRPOTrainer`'s log-prob computation (`prompt_length` set) and only without
  activation checkpointing (which drops the cache); otherwise the plain forward runs.

* `compact_lm_head` (loss forward): TRL's fused LM head scores only the completion positions on CUDA, but on
  other devices it projects EVERY position of the sequence (prompt included) through the head, forward and
  backward, and zeroes the prompt's values afterwards (TRL's reason: tile shapes that change per batch
  recompile on XLA/Neuron, which this project does not use). With the prompt most of each sequence and a
  151,936-row head, that is most of the loss's work. The lever takes TRL's own compact branch on the CPU too;
  the scored positions get the same values and the others the same zeros.

The PD reward's teacher forcing (rl/pd.py) uses the shared-prompt forward as well: its rows of one prompt
(the correct rollouts; the no-think reference has its own prompt) share their prompt block.

`fast_vlm(model, processor)` turns them on for the duration of a `with` block and restores the originals.
"""

from __future__ import annotations

import contextvars
import hashlib
from collections import OrderedDict
from contextlib import contextmanager

import torch


# --- preprocessing ------------------------------------------------------------------------------------------

def _flat_images(images) -> list:
    """The processor accepts one image, a list, or a list of lists (one per prompt); flatten in order."""
    if isinstance(images, (list, tuple)):
        out = []
        for x in images:
            out.extend(_flat_images(x))
        return out
    return [images]


def image_key(img) -> tuple:
    """Content key of a PIL image, numpy array or tensor: exact (a hash of every byte), not perceptual."""
    if hasattr(img, "tobytes") and hasattr(img, "mode"):  # PIL
        return ("pil", img.mode, img.size, hashlib.blake2b(img.tobytes(), digest_size=16).digest())
    if isinstance(img, torch.Tensor):
        t = img.detach().cpu().contiguous()
        return ("tensor", str(t.dtype), tuple(t.shape), hashlib.blake2b(t.numpy().tobytes(), digest_size=16).digest())
    import numpy as np

    a = np.ascontiguousarray(img)
    return ("array", str(a.dtype), a.shape, hashlib.blake2b(a.tobytes(), digest_size=16).digest())


class DedupImageProcessor:
    """Drop-in wrapper of a Qwen2-VL-style image processor (outputs `pixel_values` rows per image and
    `image_grid_thw`): each distinct image is processed once per call and cached (LRU, `max_items`)."""

    def __init__(self, inner, max_items: int = 512):
        self.inner = inner
        self.max_items = max_items
        self._cache: OrderedDict = OrderedDict()  # (key, kwargs) -> (pixel rows, grid row)
        self.calls = 0  # images the inner processor actually processed (for tests and the benchmark)

    def __getattr__(self, name):  # everything else (merge_size, patch_size, save_pretrained...) is the inner one's
        return getattr(self.inner, name)

    def __call__(self, images=None, **kwargs):
        if images is None or kwargs.get("return_tensors") not in ("pt", None):
            return self.inner(images, **kwargs)
        flat = _flat_images(images)
        opts = repr(sorted((k, repr(v)) for k, v in kwargs.items()))
        keys = [(image_key(im), opts) for im in flat]
        missing: dict = {}
        for k, im in zip(keys, flat):
            if k not in self._cache and k not in missing:
                missing[k] = im
        if missing:
            out = self.inner(list(missing.values()), **{**kwargs, "return_tensors": "pt"})
            grids = out["image_grid_thw"]
            rows = torch.split(out["pixel_values"], grids.prod(dim=-1).tolist())
            for k, pv, g in zip(missing, rows, grids):
                self._cache[k] = (pv, g)
            self.calls += len(missing)
        parts = []
        for k in keys:
            self._cache.move_to_end(k)
            parts.append(self._cache[k])
        while len(self._cache) > self.max_items:
            self._cache.popitem(last=False)
        from transformers import BatchFeature

        return BatchFeature({"pixel_values": torch.cat([p for p, _ in parts]),
                             "image_grid_thw": torch.stack([g for _, g in parts])},
                            tensor_type=kwargs.get("return_tensors"))


# --- vision tower -------------------------------------------------------------------------------------------

def _install(obj, name: str, fn, stats_name: str, stats: dict):
    """Put `fn` on the instance as `name` (with its counters); undo() removes both, so the class's own method
    shows through again."""
    setattr(obj, name, fn)
    setattr(obj, stats_name, stats)

    def undo():
        obj.__dict__.pop(name, None)
        obj.__dict__.pop(stats_name, None)

    return undo


def _unique_images(pixel_values: torch.Tensor, grid_thw: torch.Tensor):
    """Split the flattened patch rows per image; return (unique index per image, list of unique images' rows).
    Candidates are matched by a cheap signature and confirmed with torch.equal (exact)."""
    sizes = grid_thw.prod(dim=-1).tolist()
    chunks = torch.split(pixel_values, sizes)
    sig_groups: dict = {}
    uniques: list[int] = []
    index: list[int] = []
    for i, (c, g) in enumerate(zip(chunks, grid_thw.tolist())):
        sig = (tuple(g), float(c[:, :1].sum()), float(c[-1:].sum()))
        for u in sig_groups.get(sig, ()):
            if torch.equal(chunks[uniques[u]], c):
                index.append(u)
                break
        else:
            sig_groups.setdefault(sig, []).append(len(uniques))
            index.append(len(uniques))
            uniques.append(i)
    return index, uniques, chunks


def dedup_vision_tower(model):
    """Install the once-per-distinct-image vision forward on a Qwen2/2.5-VL-style model; returns an undo()."""
    inner = getattr(model, "model", model)
    if not hasattr(inner, "get_image_features"):
        raise TypeError(f"{type(model).__name__} has no get_image_features: not a Qwen-VL-style model")
    original = inner.get_image_features
    stats = {"images": 0, "computed": 0}

    def get_image_features(pixel_values, image_grid_thw=None, **kwargs):
        # Only the plain call is deduplicated; precomputed per-image kwargs would be ambiguous to re-index.
        if image_grid_thw is None or any(k.startswith("image_") for k in kwargs):
            return original(pixel_values, image_grid_thw, **kwargs)
        index, uniques, chunks = _unique_images(pixel_values, image_grid_thw)
        stats["images"] += len(index)
        stats["computed"] += len(uniques)
        if len(uniques) == len(index):
            return original(pixel_values, image_grid_thw, **kwargs)
        out = original(torch.cat([chunks[u] for u in uniques]), image_grid_thw[uniques], **kwargs)
        per_unique = out.pooler_output
        out.pooler_output = tuple(per_unique[u] for u in index)
        out.last_hidden_state = None  # rows of the distinct images only: not meaningful per copy
        return out

    return _install(inner, "get_image_features", get_image_features, "_refine_vision_dedup_stats", stats)


# --- shared prompt in the loss forward -------------------------------------------------------------------------

# Length of the (left-padded) prompt block of the sequences being scored; None outside the loss's log-probs.
PROMPT_LENGTH: contextvars.ContextVar = contextvars.ContextVar("refine_iqa_prompt_length", default=None)


def _rows_images(mm_token_type_ids, image_grid_thw, merge: int, n_rows: int) -> list[list[int]]:
    """Which images (indices into image_grid_thw) belong to each row, from the rows' image-token counts."""
    per_image = (image_grid_thw.prod(dim=-1) // (merge * merge)).tolist()
    counts = (mm_token_type_ids == 1).sum(dim=1).tolist()
    out, k = [], 0
    for r in range(n_rows):
        mine, need = [], counts[r]
        while need > 0:
            if k >= len(per_image):
                raise ValueError("image tokens and image_grid_thw disagree")
            mine.append(k)
            need -= per_image[k]
            k += 1
        if need != 0:
            raise ValueError("image tokens and image_grid_thw disagree")
        out.append(mine)
    return out


def _prompt_groups(input_ids, attention_mask, mm_token_type_ids, pixel_values, image_grid_thw, P: int, merge: int):
    """Rows whose first P tokens, mask and images are identical form one group.
    Returns (group of each row, leader row of each group, images of each row, per-image pixel rows)."""
    B = input_ids.size(0)
    rows_imgs = _rows_images(mm_token_type_ids[:, :P], image_grid_thw, merge, B)
    img_index, _, chunks = _unique_images(pixel_values, image_grid_thw)
    ids_np, mask_np = input_ids[:, :P].cpu().numpy(), attention_mask[:, :P].cpu().numpy()
    groups: dict = {}
    leader_of: list[int] = []
    for r in range(B):
        key = (ids_np[r].tobytes(), mask_np[r].tobytes(), tuple(img_index[i] for i in rows_imgs[r]))
        leader_of.append(groups.setdefault(key, len(groups)))
    leaders = [leader_of.index(g) for g in range(len(groups))]
    return leader_of, leaders, rows_imgs, chunks


def shared_prompt_forward(model):
    """Install the shared-prompt forward on a Qwen2/2.5-VL backbone (`model.model`); returns an undo()."""
    from transformers import DynamicCache

    inner = model.model
    original = inner.forward
    merge = model.config.vision_config.spatial_merge_size
    stats = {"rows": 0, "prompts": 0}

    def forward(input_ids=None, attention_mask=None, position_ids=None, pixel_values=None, image_grid_thw=None,
                mm_token_type_ids=None, use_cache=None, **kwargs):
        P = PROMPT_LENGTH.get()
        plain = dict(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                     pixel_values=pixel_values, image_grid_thw=image_grid_thw, mm_token_type_ids=mm_token_type_ids,
                     use_cache=use_cache, **kwargs)
        if (P is None or input_ids is None or attention_mask is None or position_ids is not None
                or mm_token_type_ids is None or image_grid_thw is None or pixel_values is None
                or kwargs.get("cache") is not None or kwargs.get("past_key_values") is not None
                or any(k.startswith(("pixel_values_", "video", "inputs_embeds")) for k in kwargs)
                or inner.language_model.gradient_checkpointing or not 0 < P < input_ids.size(1)):
            return original(**plain)
        B = input_ids.size(0)
        leader_of, leaders, rows_imgs, chunks = _prompt_groups(input_ids, attention_mask, mm_token_type_ids,
                                                               pixel_values, image_grid_thw, P, merge)
        stats["rows"] += B
        stats["prompts"] += len(leaders)
        if len(leaders) == B:
            return original(**plain)
        # Positions of the whole batch, exactly as the plain forward computes them (3-D for image tokens).
        positions, _ = inner.get_rope_index(input_ids, mm_token_type_ids=mm_token_type_ids,
                                            image_grid_thw=image_grid_thw, attention_mask=attention_mask)
        lead = torch.tensor(leaders, device=input_ids.device)
        lead_imgs = [i for r in leaders for i in rows_imgs[r]]
        cache = DynamicCache(config=inner.config.text_config)
        head = original(input_ids=input_ids[lead, :P], attention_mask=attention_mask[lead, :P],
                        position_ids=positions[:, lead, :P], pixel_values=torch.cat([chunks[i] for i in lead_imgs]),
                        image_grid_thw=image_grid_thw[lead_imgs], mm_token_type_ids=mm_token_type_ids[lead, :P],
                        use_cache=True, cache=cache, **kwargs)
        expand = torch.tensor(leader_of, device=input_ids.device)
        for layer in cache.layers:  # one copy of the prompt's keys/values per row, inside the autograd graph
            layer.keys = layer.keys.index_select(0, expand)
            layer.values = layer.values.index_select(0, expand)
        tail = original(input_ids=input_ids[:, P:], attention_mask=attention_mask, position_ids=positions[:, :, P:],
                        mm_token_type_ids=mm_token_type_ids[:, P:], use_cache=True, cache=cache, **kwargs)
        hidden = torch.cat([head.last_hidden_state.index_select(0, expand), tail.last_hidden_state], dim=1)
        tail.last_hidden_state = hidden
        tail.cache = None
        return tail

    return _install(inner, "forward", forward, "_refine_prompt_share_stats", stats)


def shared_prompt_generate(model):
    """Rollouts from one prefill per distinct prompt: TRL asks `generate` for G copies of each prompt; the
    prompt (all but its last token) is prefilled once per distinct prompt, its cache and 3-D position offsets
    are copied to the G rows, and `generate` continues from that cache. Returns an undo()."""
    from transformers import DynamicCache

    original = model.generate
    inner = model.model
    merge = model.config.vision_config.spatial_merge_size
    stats = {"rows": 0, "prefills": 0}

    def generate(input_ids=None, attention_mask=None, pixel_values=None, image_grid_thw=None,
                 mm_token_type_ids=None, **kwargs):
        plain = dict(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values,
                     image_grid_thw=image_grid_thw, mm_token_type_ids=mm_token_type_ids, **kwargs)
        if (input_ids is None or attention_mask is None or pixel_values is None or image_grid_thw is None
                or mm_token_type_ids is None or input_ids.size(1) < 2 or kwargs.get("cache") is not None
                or kwargs.get("past_key_values") is not None or any(k.startswith(("pixel_values_", "video"))
                                                                   for k in kwargs)):
            return original(**plain)
        P = input_ids.size(1) - 1  # the last prompt token is left for generate's own first forward
        leader_of, leaders, rows_imgs, chunks = _prompt_groups(input_ids, attention_mask, mm_token_type_ids,
                                                               pixel_values, image_grid_thw, P, merge)
        stats["rows"] += input_ids.size(0)
        stats["prefills"] += len(leaders)
        if len(leaders) == input_ids.size(0) or bool(mm_token_type_ids[:, P:].any()):
            return original(**plain)
        lead = torch.tensor(leaders, device=input_ids.device)
        lead_imgs = [i for r in leaders for i in rows_imgs[r]]
        cache = DynamicCache(config=inner.config.text_config)
        inner.rope_deltas = None
        with torch.no_grad():
            inner(input_ids=input_ids[lead, :P], attention_mask=attention_mask[lead, :P],
                  pixel_values=torch.cat([chunks[i] for i in lead_imgs]), image_grid_thw=image_grid_thw[lead_imgs],
                  mm_token_type_ids=mm_token_type_ids[lead, :P], use_cache=True, cache=cache)
        expand = torch.tensor(leader_of, device=input_ids.device)
        for layer in cache.layers:
            layer.keys = layer.keys.index_select(0, expand)
            layer.values = layer.values.index_select(0, expand)
        inner.rope_deltas = inner.rope_deltas.index_select(0, expand)  # set by the prefill, one row per prompt
        return original(input_ids=input_ids, attention_mask=attention_mask, mm_token_type_ids=mm_token_type_ids,
                        cache=cache, **kwargs)

    return _install(model, "generate", generate, "_refine_prefill_share_stats", stats)


def compact_lm_head():
    """Make TRL's fused LM head score only the labelled positions on every device (see the module doc);
    returns an undo(). A TRL without that switch is left as it is."""
    import trl.trainer.utils as trl_utils

    original = getattr(trl_utils, "_use_triton", None)
    if original is None:
        return lambda: None
    # Only trl.trainer.utils' name is replaced (its one use: the compact-or-not choice of the fused head); the
    # kernel module keeps its own, so the CPU still folds tiles in torch.
    trl_utils._use_triton = lambda device: True

    def undo():
        trl_utils._use_triton = original

    return undo


@contextmanager
def fast_vlm(model, processor, *, vision: bool = True, preprocessing: bool = True, shared_prompt: bool = True,
             compact_head: bool = True):
    """The levers for the duration of the block (training), restored afterwards (saving, evaluation)."""
    undo = []
    if compact_head:
        undo.append(compact_lm_head())
    if vision:
        undo.append(dedup_vision_tower(model))
    if shared_prompt:
        undo.append(shared_prompt_forward(model))
        undo.append(shared_prompt_generate(model))
    original_ip = processor.image_processor
    if preprocessing:
        proxy = DedupImageProcessor(original_ip)
        processor.image_processor = proxy
        save = processor.save_pretrained

        def save_pretrained(*args, **kwargs):  # checkpoints save the processor: the real one, not the proxy
            processor.image_processor = original_ip
            try:
                return save(*args, **kwargs)
            finally:
                processor.image_processor = proxy

        processor.save_pretrained = save_pretrained
    try:
        yield
    finally:
        processor.image_processor = original_ip
        processor.__dict__.pop("save_pretrained", None)
        for u in reversed(undo):
            u()
