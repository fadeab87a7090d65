"""The norm-pruned scorer returns exactly what full scoring returns (ties, exclusions, costs
included) while scoring a fraction of a heavy-tailed catalogue; NpyRows reads .npy slices."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model_server.npy_rows import NpyRows
from model_server.ranking import NormPrunedScorer, cost_adjusted, top_k


def full_top_k(factors, u, k, exclude, costs, lam):
    scores = np.asarray(factors @ u, dtype=np.float32)
    return top_k(cost_adjusted(scores, costs, lam), k, exclude)


@st.composite
def cases(draw):
    n = draw(st.integers(1, 3000))
    f = draw(st.integers(1, 12))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if draw(st.booleans()):
        # small integers: exact float32 dot products, so equal scores (ties) are common
        factors = rng.integers(-2, 3, (n, f)).astype(np.float32)
        u = rng.integers(-2, 3, f).astype(np.float32)
    else:
        tail = (1.0 / np.sqrt(1 + np.arange(n, dtype=np.float32)))[:, None]
        factors = rng.standard_normal((n, f), dtype=np.float32) * tail
        factors = factors[rng.permutation(n)]  # norms not in item order
        u = rng.standard_normal(f, dtype=np.float32) * draw(st.sampled_from([0.0, 0.01, 1.0, 50.0]))
    k = draw(st.integers(1, 60))
    n_excluded = draw(st.integers(0, n))
    exclude = rng.choice(n, size=min(n_excluded, draw(st.integers(0, 200)) if n > 200 else n_excluded),
                         replace=False).astype(np.int64)
    costs = rng.random(n, dtype=np.float32)
    lam = draw(st.sampled_from([0.0, 0.0, 0.1, 0.5]))
    first_block = draw(st.sampled_from([1, 16, 256, 1024]))
    return factors, u, k, exclude, costs, lam, first_block


@settings(max_examples=400, deadline=None)
@given(cases())
def test_pruned_top_k_equals_full_scoring(case):
    factors, u, k, exclude, costs, lam, first_block = case
    scorer = NormPrunedScorer(factors, costs, first_block=first_block)
    expected = full_top_k(factors, u, k, exclude, costs, lam)
    got = scorer.top_k(u, k, exclude, lam)
    assert got.tolist() == expected.tolist()


def test_everything_excluded_or_k_beyond_the_catalogue():
    rng = np.random.default_rng(1)
    factors = rng.standard_normal((50, 4), dtype=np.float32)
    scorer = NormPrunedScorer(factors, None, first_block=8)
    u = rng.standard_normal(4, dtype=np.float32)
    assert scorer.top_k(u, 20, np.arange(50)).tolist() == []
    assert scorer.top_k(u, 0).tolist() == []
    assert scorer.top_k(u, 500).tolist() == full_top_k(factors, u, 500, None, None, 0.0).tolist()
    left = scorer.top_k(u, 20, np.arange(47))
    assert sorted(left.tolist()) == [47, 48, 49]


def test_a_heavy_tailed_catalogue_is_mostly_not_scored():
    """Item norms falling like a popularity curve (as ALS's do): the bound prunes most items."""
    rng = np.random.default_rng(2)
    n, f = 20_000, 32
    factors = rng.standard_normal((n, f), dtype=np.float32) / np.sqrt(1 + np.arange(n))[:, None]
    scorer = NormPrunedScorer(factors.astype(np.float32), None)
    users = rng.standard_normal((200, f), dtype=np.float32)
    for u in users:
        assert scorer.top_k(u, 20).tolist() == full_top_k(factors, u, 20, None, None, 0).tolist()
    assert scorer.requests == 200
    assert scorer.fraction_scored < 0.3, scorer.fraction_scored


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.uint16])
def test_npy_rows_reads_the_slices_np_load_gives(tmp_path, dtype):
    data = (np.arange(10_000) % 977).astype(dtype)
    path = tmp_path / "a.npy"
    np.save(path, data)
    rows = NpyRows(path)
    assert len(rows) == 10_000 and rows.dtype == data.dtype
    for start, stop in [(0, 1), (5, 105), (9_990, 10_000), (3, 3), (9_999, 20_000), (-5, None)]:
        got = rows[start:stop]
        assert got.dtype == data.dtype and got.tolist() == data[start:stop].tolist()
    with pytest.raises(TypeError):
        rows[::2]
    with pytest.raises(TypeError):
        rows[5]


def test_npy_rows_refuses_arrays_it_cannot_slice(tmp_path):
    np.save(tmp_path / "m.npy", np.zeros((3, 2)))
    with pytest.raises(ValueError, match="1-D"):
        NpyRows(tmp_path / "m.npy")
