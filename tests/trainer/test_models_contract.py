"""One contract, every candidate: a mixin run against each model on a known-answer matrix.

The matrix has three taste groups: users 0-3 like items 0-5, users 4-7 items 6-11, users 8-11
items 12-17; each user has seen four of their group's six items. A personalised model must
recommend the two unseen items of the user's own group first; popularity models the most
popular unseen items.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from movierec_core.models import (
    ALSModel,
    BPRModel,
    ColdStartModel,
    EASEModel,
    ItemKNNModel,
    PopularityModel,
    load_model,
)

N_GROUPS, USERS_PER_GROUP, ITEMS_PER_GROUP = 3, 4, 6


def known_answer_matrix() -> sp.csr_matrix:
    rows, cols = [], []
    for g in range(N_GROUPS):
        for j in range(USERS_PER_GROUP):
            u = g * USERS_PER_GROUP + j
            items = [g * ITEMS_PER_GROUP + (j + t) % ITEMS_PER_GROUP for t in range(4)]
            rows += [u] * len(items)
            cols += items
    # one extra popular item per group is seen by everyone in the group except user j=0
    n_users, n_items = N_GROUPS * USERS_PER_GROUP, N_GROUPS * ITEMS_PER_GROUP
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_users, n_items))


def group_items(user: int) -> set[int]:
    g = user // USERS_PER_GROUP
    return set(range(g * ITEMS_PER_GROUP, (g + 1) * ITEMS_PER_GROUP))


class RecommenderContract:
    """Inherit and define ``make()``; ``personalised`` says which known answer applies."""

    personalised = True

    def make(self):
        raise NotImplementedError

    @pytest.fixture
    def x(self) -> sp.csr_matrix:
        return known_answer_matrix()

    @pytest.fixture
    def fitted(self, x):
        return self.make().fit(x)

    def test_fit_returns_self_and_knows_items(self, x):
        model = self.make()
        assert model.fit(x) is model
        assert model.n_items == x.shape[1]

    def test_recommend_excludes_seen_and_is_sorted(self, fitted, x):
        for u in range(x.shape[0]):
            items, scores = fitted.recommend(u, k=5, exclude_seen=True)
            assert len(items) == 5
            assert not set(items.tolist()) & set(x[u].indices.tolist())
            assert np.all(np.diff(scores) <= 0)

    def test_recommend_can_include_seen(self, fitted, x):
        items, _ = fitted.recommend(0, k=x.shape[1], exclude_seen=False)
        assert len(items) == x.shape[1]

    def test_known_answer(self, fitted, x):
        for u in range(x.shape[0]):
            items, _ = fitted.recommend(u, k=2)
            unseen_in_group = group_items(u) - set(x[u].indices.tolist())
            if self.personalised:
                assert set(items.tolist()) == unseen_in_group, (u, items)
            else:
                pop = np.asarray((x > 0).sum(axis=0)).ravel()
                best = max(pop[i] for i in range(x.shape[1]) if i not in x[u].indices)
                assert pop[items[0]] == best

    def test_score_shapes(self, fitted, x):
        n = x.shape[1]
        assert fitted.scores_for_user(0).shape == (n,)
        assert fitted.scores_for_items(x[0]).shape == (n,)
        assert fitted.scores_for_items(x[:3]).shape == (3, n)

    def test_batch_matches_single(self, fitted, x):
        users = np.arange(x.shape[0])
        batch = fitted.recommend_batch(users, k=3)
        for u in users:
            np.testing.assert_array_equal(batch[u], fitted.recommend(int(u), k=3)[0])

    def test_fold_in_new_user_gets_their_group(self, fitted, x):
        # a new user who saw three items of group 1 → the other group-1 items rank first
        row = np.zeros(x.shape[1], np.float32)
        row[[6, 7, 8]] = 1.0
        items, _ = fitted.recommend_items(sp.csr_matrix(row), k=3)
        assert not {6, 7, 8} & set(items.tolist())
        if self.personalised:
            assert set(items[:2].tolist()) <= {9, 10, 11}
        assert np.asarray(fitted.fold_in(sp.csr_matrix(row))).ndim == 1

    def test_save_load_roundtrip(self, fitted, x, tmp_path):
        fitted.save(tmp_path / "m")
        loaded = load_model(tmp_path / "m")
        assert type(loaded) is type(fitted)
        np.testing.assert_allclose(loaded.scores_for_items(x[:4]), fitted.scores_for_items(x[:4]),
                                   rtol=1e-5, atol=1e-6)
        loaded.user_items = x
        np.testing.assert_array_equal(loaded.recommend(1, k=3)[0], fitted.recommend(1, k=3)[0])

    def test_same_seed_same_model(self, x):
        a, b = self.make().fit(x), self.make().fit(x)
        np.testing.assert_array_equal(a.scores_for_items(x), b.scores_for_items(x))


class TestALS(RecommenderContract):
    def make(self):
        return ALSModel(factors=3, regularization=0.1, iterations=30, random_state=1, num_threads=1)


class TestBPR(RecommenderContract):
    def make(self):
        return BPRModel(factors=8, learning_rate=0.05, regularization=0.001, iterations=300,
                        random_state=1)


class TestEASE(RecommenderContract):
    def make(self):
        return EASEModel(l2=1.0)


class TestItemKNN(RecommenderContract):
    def make(self):
        return ItemKNNModel(neighbours=10, num_threads=1)


class TestPopularity(RecommenderContract):
    personalised = False

    def make(self):
        return PopularityModel()


class TestColdStart(RecommenderContract):
    personalised = False

    def make(self):
        return ColdStartModel(list_size=10, min_users=1)


def test_cold_start_lists_are_each_segment_keys_most_watched() -> None:
    """Every key of the fallback chain (age|gender|occupation, age|gender, age) with at least
    ``min_users`` users gets the items most watched by exactly those users, computed here row
    by row (which of several items tied at the cut-off is kept is not specified)."""
    rng = np.random.default_rng(3)
    n_users, n_items = 600, 80
    matrix = sp.random(n_users, n_items, density=0.08, random_state=4, format="csr",
                       dtype=np.float32)
    segments = [None if rng.random() < 0.2 else
                f"{rng.choice(['<18', '18-24'])}|{rng.choice(['M', 'F'])}|{rng.integers(0, 6)}"
                for _ in range(n_users)]
    model = ColdStartModel(list_size=15, min_users=12).fit(matrix, segments)
    members: dict[str, list[int]] = {}
    for row, seg in enumerate(segments):
        a, g, o = (seg or "?|?|?").split("|")
        for key in (f"{a}|{g}|{o}", f"{a}|{g}", a):
            members.setdefault(key, []).append(row)
    expected = {key: rows for key, rows in members.items() if len(rows) >= 12}
    assert set(model.lists) == {"*", *expected}
    binary = (matrix > 0).astype(np.float32)
    for key, rows in expected.items():
        counts = np.asarray(binary[rows].sum(axis=0)).ravel()
        best = sorted(counts[counts > 0], reverse=True)[:15]
        assert [counts[i] for i in model.lists[key]] == best, key
