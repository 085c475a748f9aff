"""Seeded, pairwise-disjoint splits of the valid records (docs/method.md §1)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sherlock.data.records import Record, SourceDataError


@dataclass(frozen=True)
class Splits:
    d_a: list[Record]
    d_b: list[Record]
    pools: list[list[Record]]  # pools[k - 1] is the unlabeled pool of online iteration k


def make_splits(
    records: list[Record], d_a: int, d_b: int, pool: int, iterations: int, seed: int
) -> Splits:
    """D_A, D_B and one pool per online iteration, drawn without replacement.

    The draw depends only on the seed and on the set of record ids (records are ordered by id
    first), so re-ordering the source file does not change the splits.
    """
    needed = d_a + d_b + pool * iterations
    if needed > len(records):
        raise SourceDataError(
            f"the splits need {needed} records (splits.d_a {d_a} + splits.d_b {d_b} + "
            f"{iterations} online iterations × splits.pool {pool}) but only {len(records)} "
            "valid source records exist"
        )
    ordered = sorted(records, key=lambda r: r.id)
    order = np.random.default_rng(seed).permutation(len(ordered))
    shuffled = [ordered[i] for i in order[:needed]]
    pools = [shuffled[d_a + d_b + k * pool : d_a + d_b + (k + 1) * pool] for k in range(iterations)]
    return Splits(shuffled[:d_a], shuffled[d_a : d_a + d_b], pools)
