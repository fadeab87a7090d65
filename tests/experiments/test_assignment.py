import hashlib
from collections import Counter

import pytest

from experiments.assignment import BUCKETS, Allocation, bucket, moved_buckets

# Pinned: changing the hash reshuffles every running experiment's users.
VECTORS = [
    ("baseline", 0, 5454),
    ("baseline", 1, 8225),
    ("baseline", 48211, 3680),
    ("canary-als", 42, 8758),
    ("canary-als", 990017, 5233),
    ("exp", 123456789, 5198),
]


@pytest.mark.parametrize(("experiment", "user", "expected"), VECTORS)
def test_bucket_pinned_vectors(experiment, user, expected):
    assert bucket(experiment, user) == expected


def test_bucket_is_sha256_of_experiment_colon_user_first_8_bytes_mod_10000():
    digest = hashlib.sha256(b"baseline:48211").digest()
    assert bucket("baseline", 48211) == int.from_bytes(digest[:8], "big") % 10000


def test_buckets_are_uniform_and_depend_on_the_experiment():
    counts = Counter(bucket("uniform", u) // 1000 for u in range(100_000))
    assert all(9_500 < c < 10_500 for c in counts.values())
    same = sum(bucket("a", u) == bucket("b", u) for u in range(10_000))
    assert same < 10


def test_contiguous_ranges_from_weights():
    alloc = Allocation.from_weights({"champion": 95, "challenger": 5})
    assert alloc.ranges() == {"champion": range(0, 9500), "challenger": range(9500, 10000)}
    assert alloc.variant_of_bucket(9499) == "champion"
    assert alloc.variant_of_bucket(9500) == "challenger"
    assert alloc.shares() == {"champion": 0.95, "challenger": 0.05}


def test_given_challenger_grows_from_5_to_25_then_exactly_2000_buckets_move_all_to_it():
    before = Allocation.from_weights({"champion": 95, "challenger": 5})
    after = Allocation.from_weights({"champion": 75, "challenger": 25})
    assert moved_buckets(before, after) == {("champion", "challenger"): 2000}


def test_whole_canary_ladder_never_moves_a_user_back_to_the_champion():
    ladder = [0, 5, 25, 50, 100]
    allocs = [Allocation.from_weights({"champion": 100 - p, "challenger": p}) for p in ladder]
    moves = [moved_buckets(a, b) for a, b in zip(allocs, allocs[1:], strict=False)]
    assert moves == [{("champion", "challenger"): 500}, {("champion", "challenger"): 2000},
                     {("champion", "challenger"): 2500}, {("champion", "challenger"): 5000}]


def test_three_variants_growing_the_last_takes_only_from_its_neighbours_edge():
    before = Allocation.from_weights([("a", 50), ("b", 40), ("c", 10)])
    after = Allocation.from_weights([("a", 50), ("b", 30), ("c", 20)])
    assert moved_buckets(before, after) == {("b", "c"): 1000}
    users = range(20_000)
    moved_users = [u for u in users if before.variant_of("x", u) != after.variant_of("x", u)]
    assert {(before.variant_of("x", u), after.variant_of("x", u)) for u in moved_users} == {("b", "c")}


def test_zero_weight_variant_gets_no_bucket():
    alloc = Allocation.from_weights({"champion": 100, "challenger": 0})
    assert {alloc.variant_of_bucket(b) for b in range(BUCKETS)} == {"champion"}


@pytest.mark.parametrize("weights", [{}, {"a": 0}, {"a": -1, "b": 2}])
def test_bad_weights_are_rejected(weights):
    with pytest.raises(ValueError):
        Allocation.from_weights(weights)
