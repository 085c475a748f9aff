import pytest

from sherlock.data.records import Record, SourceDataError
from sherlock.data.splits import make_splits


def _records(n):
    return [Record(f"r{i:03d}", f"img{i}.png", f"q{i}", "a") for i in range(n)]


def test_splits_are_disjoint_sized_and_seeded():
    records = _records(100)
    splits = make_splits(records, d_a=30, d_b=20, pool=10, iterations=2, seed=7)
    groups = [splits.d_a, splits.d_b, *splits.pools]
    assert [len(g) for g in groups] == [30, 20, 10, 10]
    ids = [r.id for g in groups for r in g]
    assert len(ids) == len(set(ids)) == 70
    again = make_splits(list(reversed(records)), 30, 20, 10, 2, seed=7)  # order-independent
    assert [r.id for r in again.d_a] == [r.id for r in splits.d_a]
    other = make_splits(records, 30, 20, 10, 2, seed=8)
    assert [r.id for r in other.d_a] != [r.id for r in splits.d_a]


def test_not_enough_records_names_the_sizes():
    with pytest.raises(SourceDataError, match=r"need 70 records .* only 50"):
        make_splits(_records(50), 30, 20, 10, 2, seed=0)
