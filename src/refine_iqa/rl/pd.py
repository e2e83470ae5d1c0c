"""The probability-difference (PD) reward (paper Eqs. 2-5), computed on the live policy.

For every think rollout that is already correct (r_ans = r_fmt = 1, the only ones Eq. 5 adds r_pd to), the
predicted score is replaced by the ground truth `s` (one decimal), prompt + completion is teacher-forced
through the current policy, and the softmax probabilities of the ground-truth digit tokens are read:
r_think = sum_k w_k z_k. r_ref is the same quantity for the fixed no-think completion
`[answer]Score: s[/answer]` under the no-think prompt, once per prompt. r_pd = clip(r_think - r_ref, 0, 1).

All sequences of a step go through one batched forward pass without gradient (chunked by `chunk_size`);
every process makes the same number of forward calls (DeepSpeed ZeRO-3 gathers parameters collectively).
Inputs come from `rl/forcing.py`, the same path as TRL's loss forward (mm_token_type_ids included, so the
model uses its 3-D mrope positions). Only the hidden states of the rows that predict a digit go through the
output head, in float32; gradient checkpointing is off for this forward.
"""

from __future__ import annotations

import math
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch

from refine_iqa import parsing
from refine_iqa import prompts as P
from refine_iqa.rewards import answer_reward, completion_text, digit_prob_reward, pd_reward
from refine_iqa.rl.fastpath import PROMPT_LENGTH
from refine_iqa.rl.forcing import prompt_completion_inputs, to_device


@dataclass
class TeacherForcedItem:
    messages: list  # the prompt conversation, images in its content parts
    completion_ids: list[int]
    digit_positions: list[int]  # indices into completion_ids of the ground-truth digit tokens
    digit_token_ids: list[int]


def _with_text(messages, text: str):
    """The same user turn (same image slots) with the prompt text replaced."""
    new = []
    for m in messages:
        if m["role"] == "user" and isinstance(m.get("content"), list):
            content = [p for p in m["content"] if p.get("type") != "text"] + [{"type": "text", "text": text}]
            new.append({**m, "content": content})
        else:
            new.append(m)
    return new


def substitute_score(text: str, score: float, tags) -> tuple[str, tuple[int, int]] | None:
    """Replace the predicted score by `score` (one decimal); returns (new text, span of the new number)."""
    span = parsing.score_span(text, tags)
    if span is None:
        return None
    s = P.format_score(score)
    return text[: span[0]] + s + text[span[1] :], (span[0], span[0] + len(s))


@contextmanager
def checkpointing_off(model):
    """Gradient checkpointing off for a no-grad forward (nothing to recompute), restored afterwards."""
    layers = [m for m in model.modules() if getattr(m, "gradient_checkpointing", False) is True]
    for m in layers:
        m.gradient_checkpointing = False
    try:
        yield
    finally:
        for m in layers:
            m.gradient_checkpointing = True


def _zero3_gathered(params):
    """Under DeepSpeed ZeRO-3 a parameter outside its module's forward is a stub: gather it for reading."""
    from transformers.integrations import is_deepspeed_zero3_enabled

    if is_deepspeed_zero3_enabled():
        import deepspeed

        return deepspeed.zero.GatheredParameters(params, modifier_rank=None)
    return nullcontext()


def token_log_probs(hidden: torch.Tensor, head: torch.nn.Module, targets: torch.Tensor, vocab_chunk: int = 16384) -> torch.Tensor:
    """log softmax(head(hidden))[target] per row, in float32, for the given rows only.

    hidden (N, H), targets (N,). The output head is applied in float32 chunk by chunk over the vocabulary (a
    bf16 logit carries ~0.1 absolute error, several percent on a probability), so the transient memory is
    N x vocab_chunk floats, never a (positions x vocabulary) tensor.
    """
    weight, bias = head.weight, getattr(head, "bias", None)
    with _zero3_gathered([weight] + ([bias] if bias is not None else [])):
        h = hidden.float()
        parts = []
        for a in range(0, weight.shape[0], vocab_chunk):
            logits = h @ weight[a : a + vocab_chunk].float().T
            if bias is not None:
                logits = logits + bias[a : a + vocab_chunk].float()
            parts.append(torch.logsumexp(logits, dim=-1))
        target = (h * weight[targets].float()).sum(-1) + (bias[targets].float() if bias is not None else 0.0)
    return target - torch.logsumexp(torch.stack(parts, dim=-1), dim=-1)


class TeacherForcer:
    """Teacher-forces prompt + completion through the trainer's own input path and reads digit probabilities."""

    def __init__(self, processor, chunk_size: int = 16):
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.chunk_size = chunk_size

    def item(self, messages, completion: str, digit_span: tuple[int, int]) -> TeacherForcedItem:
        enc = self.tokenizer(completion, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = enc["input_ids"], enc["offset_mapping"]
        positions, tokens = [], []
        for char_pos in range(digit_span[0], digit_span[1]):
            if not completion[char_pos].isdigit():
                continue  # the "." between the digits is not scored
            idx = next((i for i, (a, b) in enumerate(offsets) if a == char_pos), None)
            if idx is None or offsets[idx][1] != char_pos + 1:
                raise ValueError(f"digit at {char_pos} of {completion!r} is not a single token; the PD reward needs a tokenizer that splits digits")
            positions.append(idx)
            tokens.append(ids[idx])
        return TeacherForcedItem(messages, ids, positions, tokens)

    @torch.no_grad()
    def digit_probs(self, model, items: list[TeacherForcedItem], n_calls: int | None = None, device=None) -> list[list[float]]:
        """Probabilities of each item's digit tokens. `n_calls` forces that many forward calls (ZeRO-3)."""
        out: list[list[float]] = []
        chunks = [items[i : i + self.chunk_size] for i in range(0, len(items), self.chunk_size)]
        n_calls = max(n_calls or 0, len(chunks))
        device = device if device is not None else next(model.parameters()).device
        for c in range(n_calls):
            chunk = chunks[c] if c < len(chunks) else chunks[-1][:1]  # a dummy call keeps ranks in step
            probs = self._forward(model, chunk, device)
            if c < len(chunks):
                out.extend(probs)
        return out

    def _forward(self, model, chunk: list[TeacherForcedItem], device) -> list[list[float]]:
        inputs, prompt_len = prompt_completion_inputs(self.processor, [it.messages for it in chunk],
                                                      [it.completion_ids for it in chunk])
        # Only the rows that predict a digit are read: logits at position P + j - 1 predict completion token j.
        k = max(len(it.digit_positions) for it in chunk)
        rows = torch.zeros((len(chunk), k), dtype=torch.long)
        targets = torch.zeros((len(chunk), k), dtype=torch.long)
        for i, it in enumerate(chunk):
            pos = [prompt_len + p - 1 for p in it.digit_positions] or [prompt_len - 1]
            tok = list(it.digit_token_ids) or [0]
            rows[i] = torch.tensor((pos + pos[-1:] * k)[:k])  # short rows repeat their last entry
            targets[i] = torch.tensor((tok + tok[-1:] * k)[:k])
        # The prompt block ends at prompt_len: with the fast path on (rl/fastpath.py), rows of one prompt run it once.
        token = PROMPT_LENGTH.set(prompt_len)
        try:
            with checkpointing_off(model):
                hidden = model.model(**to_device(inputs, device)).last_hidden_state
        finally:
            PROMPT_LENGTH.reset(token)
        picked = torch.take_along_dim(hidden, rows.to(hidden.device)[..., None], dim=1)  # (B, k, H)
        logp = token_log_probs(picked.reshape(-1, picked.shape[-1]), model.get_output_embeddings(),
                               targets.reshape(-1).to(hidden.device)).view(len(chunk), k)
        return [[math.exp(logp[i, j].item()) for j in range(len(it.digit_positions))] for i, it in enumerate(chunk)]


class PDReward:
    """TRL reward function (callable) for Eq. 5's r_pd term; attach the trainer with `bind(trainer)`.

    Returns r_pd for think rollouts with r_ans = r_fmt = 1 and 0.0 for all others, so the trainer's weighted
    sum of answer, format and PD rewards is exactly Eq. 5.
    """

    __name__ = "pd_reward"

    def __init__(self, processor, *, tags="paper", eps: float = 0.5, weights=(1.0, 0.1), no_think_template: str | None = None,
                 chunk_size: int = 16):
        self.tags = P.get_tag_style(tags)
        self.eps = eps
        self.weights = tuple(weights)
        self.no_think_text = P.score_prompt(think=False, tags=self.tags, template=no_think_template)
        self.forcer = TeacherForcer(processor, chunk_size=chunk_size)
        self.trainer = None

    def bind(self, trainer) -> "PDReward":
        self.trainer = trainer
        return self

    def _model(self):
        return self.trainer.model

    def _device(self):
        # The accelerator's device, not a parameter's: under ZeRO-3 with parameter offload those sit on the CPU.
        acc = getattr(self.trainer, "accelerator", None)
        return acc.device if acc is not None else None

    def _n_calls(self, n_local: int) -> int:
        """Same number of forward calls on every process (the maximum over processes)."""
        acc = getattr(self.trainer, "accelerator", None)
        if acc is None or acc.num_processes == 1:
            return n_local
        t = torch.tensor([n_local], device=acc.device)
        return int(acc.gather(t).max().item())

    def __call__(self, prompts, completions, mos_scaled, log_metric=None, **kwargs) -> list[float]:
        texts = [completion_text(c) for c in completions]
        rewards = [0.0] * len(texts)
        # r_ref depends only on (prompt, s), so it is computed once per run of rollouts with equal prompt and
        # score (TRL puts the G rollouts of a prompt next to each other). This needs no group size and holds on
        # every process: when a group straddles two processes, each computes r_ref for its own part. The score
        # is part of the key so that two neighbouring groups with the same image but different labels each get
        # their own reference.
        groups: list[list[int]] = []
        for i in range(len(prompts)):
            if i == 0 or float(mos_scaled[i]) != float(mos_scaled[i - 1]) or prompts[i] != prompts[i - 1]:
                groups.append([])
            groups[-1].append(i)
        items, owners = [], []  # owners[k] = (group index, rollout index or None for the reference)
        for g, members in enumerate(groups):
            first = members[0]
            s = float(mos_scaled[first])
            ref_messages = _with_text(prompts[first], self.no_think_text)
            ref_text = P.no_think_reference_completion(s, self.tags)
            ref_span = parsing.score_span(ref_text, self.tags)
            items.append(self.forcer.item(ref_messages, ref_text, ref_span))
            owners.append((g, None))
            for i in members:
                if not self._correct(texts[i], s):
                    continue  # Eq. 5: r_pd only counts for rollouts with r_ans = r_fmt = 1
                text, span = substitute_score(texts[i], s, self.tags)
                items.append(self.forcer.item(prompts[first], text, span))
                owners.append((g, i))
        n_local = math.ceil(len(items) / self.forcer.chunk_size)
        probs = self.forcer.digit_probs(self._model(), items, n_calls=self._n_calls(n_local), device=self._device())
        ref_probs = {g: z for (g, i), z in zip(owners, probs) if i is None}
        think_vals = []
        for (g, i), z in zip(owners, probs):
            if i is not None:
                rewards[i] = pd_reward(z, ref_probs[g], self.weights)
                think_vals.append(digit_prob_reward(z, self.weights))
        if log_metric is not None:
            refs = [digit_prob_reward(z, self.weights) for z in ref_probs.values()]
            log_metric("pd/r_ref", sum(refs) / max(len(refs), 1))
            if think_vals:
                log_metric("pd/r_think", sum(think_vals) / len(think_vals))
        return rewards

    def _correct(self, text: str, s: float) -> bool:
        return parsing.is_think_format(text, self.tags) and answer_reward(parsing.parse_score(text, self.tags), s, self.eps) == 1.0
