"""Hypothesis strategies for reward batches: unsorted groups of varied size, optional NaN rewards."""

import torch
from hypothesis import strategies as st

import polyreward as pr


@st.composite
def reward_batches(draw, min_k=1, max_k=3, nan=True, min_group=1):
    k = draw(st.integers(min_k, max_k))
    n_groups = draw(st.integers(1, 4))
    sizes = draw(st.lists(st.integers(min_group, 5), min_size=n_groups, max_size=n_groups))
    group_ids = [g for g, size in enumerate(sizes) for _ in range(size)]
    order = draw(st.permutations(range(len(group_ids))))
    group_ids = [group_ids[i] * 7 + 3 for i in order]  # arbitrary, unsorted ids
    value = st.integers(-3, 3).map(float)
    if nan:
        value = st.one_of(value, value, value, st.just(float("nan")))
    rows = draw(st.lists(st.lists(value, min_size=k, max_size=k), min_size=len(group_ids), max_size=len(group_ids)))
    weights = draw(st.lists(st.sampled_from([0.5, 1.0, 2.0, 3.0]), min_size=k, max_size=k))
    return pr.RewardBatch(
        rewards=torch.tensor(rows, dtype=torch.float64),
        names=[f"r{i}" for i in range(k)],
        group_ids=group_ids,
        weights=weights,
    )


def group_sums(values, batch):
    out = torch.zeros(batch.num_groups, dtype=values.dtype)
    return out.index_add_(0, batch.group_index, values)
