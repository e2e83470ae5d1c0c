"""Which prompts a GRPO step sees: TRL's RepeatSampler, optionally with answer-balanced (stratified) batches.

Why (docs/learnability.md, "Balanced batches"): while the policy still ignores the image, every split between
two answer words earns the same expected reward, so nothing holds the words in balance; a step whose images
happen to be lopsided (3 dark, 1 bright) pushes the answer word's bias one way, and over many steps the bias
random-walks until one word is never sampled again (collapse). Drawing each step's prompts in proportion to
their answer classes removes that drift term while the image-dependent gradient is unchanged. It does not
remove the per-group sampling noise: a collapse can still happen (docs/learnability.md, Stage-1 seed 3).

The order is systematic sampling: each stratum is shuffled, item j of a stratum of n items gets the key
(j + u) / n with one random offset u per stratum, and the keys are sorted. Any window of B consecutive
prompts then holds each stratum's share p*B to within 1 + K*p prompts for K strata (two equal classes
alternate exactly), where plain shuffling is off by about sqrt(B*p); every item is still seen once per epoch.
Every process builds the same order from the same seed (TRL's requirement: the G rollouts of a prompt may be
spread over processes).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from trl.trainer.utils import RepeatSampler


def stratified_order(strata: Sequence, generator: torch.Generator) -> list[int]:
    """A permutation of range(len(strata)) in which every stratum is spread evenly (see module docstring)."""
    groups: dict = {}
    for i, s in enumerate(strata):
        groups.setdefault(s, []).append(i)
    keyed = []
    for s in sorted(groups, key=str):  # a fixed stratum order: same permutation on every process
        members = groups[s]
        perm = torch.randperm(len(members), generator=generator).tolist()
        offset = torch.rand(1, generator=generator).item()
        n = len(members)
        keyed.extend(((j + offset) / n, members[perm[j]]) for j in range(n))
    keyed.sort()
    return [i for _, i in keyed]


class StratifiedRepeatSampler(RepeatSampler):
    """RepeatSampler whose per-epoch permutation balances `strata` within each step (shuffle is implied)."""

    def __init__(self, data_source, strata: Sequence, **kwargs):
        kwargs["shuffle"] = True
        super().__init__(data_source, **kwargs)
        if len(strata) != self.num_samples:
            raise ValueError(f"{len(strata)} strata for {self.num_samples} prompts")
        self.strata = list(strata)

    @classmethod
    def like(cls, sampler: RepeatSampler, strata: Sequence) -> StratifiedRepeatSampler:
        """The same repeat structure and seed as TRL's `sampler`, with balanced batches."""
        return cls(sampler.data_source, strata, mini_repeat_count=sampler.mini_repeat_count,
                   batch_size=sampler.batch_size, repeat_count=sampler.repeat_count, seed=sampler.seed)

    def __iter__(self):
        order = stratified_order(self.strata, self.generator)
        chunks = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        for chunk in chunks:
            if len(chunk) < self.batch_size:
                continue  # as RepeatSampler: an incomplete last batch is dropped
            for _ in range(self.repeat_count):
                for index in chunk:
                    for _ in range(self.mini_repeat_count):
                        yield index
