"""The length-bucketed batch order: a permutation, little padding, random batch order."""

from __future__ import annotations

import random

import torch

from engine.training.length_batches import BucketedSampler, bucketed_indices


def _lengths(n: int, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(3, 60) for _ in range(n)]


def _padded(order: list[int], lengths: list[int], batch: int) -> int:
    return sum(
        max(lengths[i] for i in order[s : s + batch]) * len(order[s : s + batch])
        for s in range(0, len(order), batch)
    )


def test_a_permutation_with_only_the_last_batch_short() -> None:
    lengths = _lengths(1003)
    order = bucketed_indices(lengths, 12, torch.Generator().manual_seed(1))
    assert sorted(order) == list(range(1003))
    assert len(order) % 12 == 1003 % 12  # batch boundaries stay where the DataLoader cuts
    assert max(lengths[i] for i in order[:12]) == max(lengths)  # the longest batch first


def test_pads_less_than_random_batches_and_than_transformers_megabatches() -> None:
    from transformers.trainer_pt_utils import get_length_grouped_indices

    lengths = _lengths(20_000)
    real = sum(lengths)
    ours = _padded(bucketed_indices(lengths, 12, torch.Generator().manual_seed(0)), lengths, 12)
    theirs = get_length_grouped_indices(lengths, 12, generator=torch.Generator().manual_seed(0))
    shuffled = torch.randperm(20_000, generator=torch.Generator().manual_seed(0)).tolist()
    assert ours / real < 1.03
    assert ours < _padded(theirs, lengths, 12) < _padded(shuffled, lengths, 12)


def test_batches_come_in_random_order_and_change_with_the_epoch() -> None:
    lengths = _lengths(6_000)
    gen = torch.Generator().manual_seed(3)
    sampler = BucketedSampler(12, lengths, gen)
    first, second = list(sampler), list(sampler)
    assert len(sampler) == 6_000 and first != second
    # Not a sweep from long to short: batch lengths go up and down throughout.
    batch_max = [max(lengths[i] for i in first[s : s + 12]) for s in range(12, 6_000, 12)]
    ups = sum(b > a for a, b in zip(batch_max, batch_max[1:], strict=False))
    assert 0.3 < ups / len(batch_max) < 0.7
    same_seed = list(BucketedSampler(12, lengths, torch.Generator().manual_seed(3)))
    assert same_seed == first


def test_tiny_and_empty_data() -> None:
    assert bucketed_indices([], 8) == []
    assert sorted(bucketed_indices([5, 1, 3], 8)) == [0, 1, 2]
