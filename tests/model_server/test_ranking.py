"""Pure ranking helpers."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from model_server.ranking import cost_adjusted, first_unseen, top_k


def test_top_k_is_best_first_and_skips_excluded() -> None:
    scores = np.array([0.1, 0.9, 0.5, 0.7, 0.3], dtype=np.float32)
    assert top_k(scores.copy(), 3).tolist() == [1, 3, 2]
    assert top_k(scores.copy(), 3, np.array([1, 2])).tolist() == [3, 4, 0]


def test_top_k_breaks_ties_by_lower_index_and_never_returns_excluded_when_short() -> None:
    scores = np.ones(4, dtype=np.float32)
    assert top_k(scores.copy(), 2).tolist() == [0, 1]
    assert top_k(scores.copy(), 10, np.array([0, 2])).tolist() == [1, 3]


def test_cost_adjusted_subtracts_lambda_times_cost_and_copies() -> None:
    scores = np.array([1.0, 1.0], dtype=np.float32)
    costs = np.array([0.0, 1.0], dtype=np.float32)
    adjusted = cost_adjusted(scores, costs, 0.5)
    assert adjusted.tolist() == [1.0, 0.5]
    off = cost_adjusted(scores, costs, 0.0)
    off[0] = 9
    assert scores.tolist() == [1.0, 1.0]


def test_first_unseen_takes_k_in_order() -> None:
    assert first_unseen([5, 3, 9, 1, 3], 3, {3}) == [5, 9, 1]
    assert first_unseen(np.array([2, 1]), 5, set()) == [2, 1]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 30), min_size=1, max_size=3000), st.integers(1, 40),
       st.data())
def test_top_k_equals_a_full_sort_with_ties_and_exclusions(values, k, data) -> None:
    scores = np.array(values, dtype=np.float32)
    excluded = data.draw(st.lists(st.integers(0, len(values) - 1), max_size=len(values) // 2))
    masked = scores.copy()
    masked[excluded] = -np.inf
    expected = [i for i in sorted(range(len(values)), key=lambda i: (-masked[i], i))
                if np.isfinite(masked[i])][:k]
    got = top_k(scores.copy(), k, np.array(excluded, dtype=np.int64) if excluded else None)
    assert got.tolist() == expected
