from __future__ import annotations

import numpy as np

from movierec_core.events import is_valid_movie_id
from simulator.world import OCCUPATIONS, World, WorldConfig, movie_id_for


def test_given_same_seed_when_built_twice_then_worlds_are_identical():
    a = World.build(WorldConfig(seed=3, n_users=300, n_movies=500))
    b = World.build(WorldConfig(seed=3, n_users=300, n_movies=500))
    assert a.movie_ids == b.movie_ids
    assert np.array_equal(a.user_taste[: a.n_users], b.user_taste[: b.n_users])
    assert np.array_equal(a.movie_taste, b.movie_taste)
    assert np.array_equal(a.age[: a.n_users], b.age[: b.n_users])


def test_movie_ids_are_valid_unique_and_include_the_awkward_cases(small_world):
    ids = small_world.movie_ids
    assert len(ids) == len(set(ids)) == small_world.n_movies == 4000
    assert all(is_valid_movie_id(m) for m in ids)
    assert ids[0] == "toy+story+1995"  # seeded from MovieLens
    for needle in ("++", "&", "'", ":", "."):
        assert any(needle in m for m in ids), needle
    assert any(m.endswith("+") for m in ids)  # unknown year
    assert any(any(ord(c) > 127 for c in m) for m in ids)  # accents kept somewhere


def test_movie_id_format():
    assert movie_id_for("The Lion King", 1994) == "the+lion+king+1994"
    assert movie_id_for("Crouching Tiger, Hidden Dragon", 2000) == "crouching+tiger++hidden+dragon+2000"
    assert movie_id_for("Babylon 5", None) == "babylon+5+"
    assert movie_id_for("Amélie", 2001, keep_accents=False) == "amelie+2001"
    assert movie_id_for("Face/Off", 1997) == "face+off+1997"


def test_oracle_is_the_top_of_true_affinity(small_world):
    user = 17
    top = small_world.true_top_k(user, 20)
    affinity = small_world.affinity(user, np.arange(small_world.n_movies))
    assert top == np.argsort(-affinity, kind="stable")[:20].tolist() or \
        np.allclose(np.sort(affinity[top])[::-1], np.sort(affinity)[::-1][:20])
    excluded = small_world.true_top_k(user, 20, exclude={top[0], top[1]})
    assert top[0] not in excluded and top[1] not in excluded and excluded[0] == top[2]
    batch = small_world.true_top_k_batch(np.array([user, 3]), 20)
    assert batch[0].tolist() == top


def test_affinity_broadcasts_and_is_a_probability(small_world):
    users = np.arange(10)
    movies = np.arange(50)
    grid = small_world.affinity(users[:, None], movies[None, :])
    assert grid.shape == (10, 50)
    assert ((grid > 0) & (grid < 1)).all()
    assert np.allclose(grid[3, 7], small_world.affinity(3, 7))


def test_demographics_are_correlated_with_tastes(small_world):
    w = small_world
    taste = w.user_taste[: w.n_users]
    young = taste[w.age[: w.n_users] < 18].mean(axis=0)
    old = taste[w.age[: w.n_users] >= 66].mean(axis=0)
    # Segment means are far apart compared with the spread of a mean of random users.
    assert np.linalg.norm(young - old) > 0.3
    assert set(np.unique(w.occupation[: w.n_users])) <= set(range(len(OCCUPATIONS)))


def test_a_million_users_fit_in_a_lean_world():
    world = World.build(WorldConfig(seed=1, n_users=1_000_000, n_movies=500))
    assert world.n_users == 1_000_000
    per_user = (world.user_taste.nbytes + world.age.nbytes + world.gender.nbytes
                + world.occupation.nbytes) / world.n_users
    assert per_user <= 60  # 12 float32 dims + 4 bytes of demographics
    assert world.user_record(999_999)["user_id"] == 999_999
