"""A tiny synthetic streaming world for drift tests: users with tastes, a genre catalogue,
sessions of watch minutes, ratings, sign-ups and recommendation lists, with optional taste or
demographic shift. Stands in where the full simulator would be too slow for unit tests."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from drift.window import Catalog, Window
from movierec_core.events import AccountCreation, Rating, RecommendationRequest, WatchMinute

GENRES = ["Action", "Comedy", "Drama", "Horror", "Romance", "Animation", "Thriller", "Sci-Fi"]
OCCUPATIONS = ["student", "engineer", "artist", "doctor", "writer", "retired", "other"]
T0 = datetime(2026, 1, 1)


class World:
    def __init__(self, seed: int, n_users: int = 600, n_movies: int = 300) -> None:
        self.rng = np.random.default_rng(seed)
        rng = self.rng
        self.n_users = n_users
        self.movie_ids = [f"movie+{i}+2000" for i in range(n_movies)]
        self.movie_genre = rng.integers(0, len(GENRES), n_movies)
        self.movie_weight = 1.0 / np.arange(1, n_movies + 1) ** 0.8
        self.ages = rng.integers(18, 70, n_users)
        self.genders = rng.choice(["M", "F"], n_users)
        self.occupations = rng.choice(OCCUPATIONS, n_users)
        self.tastes = rng.dirichlet(np.ones(len(GENRES)), n_users)
        self.activity = rng.gamma(2.0, 1.0, n_users)
        self.next_user = n_users

    def catalog(self) -> Catalog:
        users = pd.DataFrame({
            "user_id": np.arange(len(self.ages)), "age": self.ages, "gender": self.genders,
            "occupation": self.occupations,
        })
        movies = pd.DataFrame({
            "movie_id": self.movie_ids,
            "genres": [[GENRES[g], "Drama"] for g in self.movie_genre],
        })
        return Catalog(users, movies)

    def shift_tastes(self, genre: int = 0, strength: float = 0.5) -> None:
        target = np.zeros(len(GENRES))
        target[genre] = 1.0
        self.tastes = (1 - strength) * self.tastes + strength * target

    def add_users(self, n: int, young: bool) -> list[int]:
        rng = self.rng
        ages = rng.integers(16, 25, n) if young else rng.integers(18, 70, n)
        ids = list(range(self.next_user, self.next_user + n))
        self.next_user += n
        self.ages = np.concatenate([self.ages, ages])
        self.genders = np.concatenate([self.genders, rng.choice(["M", "F"], n, p=[0.5, 0.5])])
        occ_p = None
        if young:
            occ_p = np.full(len(OCCUPATIONS), 0.1 / (len(OCCUPATIONS) - 1))
            occ_p[0] = 0.9
        self.occupations = np.concatenate([self.occupations, rng.choice(OCCUPATIONS, n, p=occ_p)])
        self.tastes = np.vstack([self.tastes, rng.dirichlet(np.ones(len(GENRES)), n)])
        self.activity = np.concatenate([self.activity, rng.gamma(2.0, 1.0, n) * (3 if young else 1)])
        return ids

    def window(
        self, index: int, n_events: int = 3000, signups: int = 40, young_signups: bool = False
    ) -> Window:
        """``n_events`` lines over one simulated hour, starting ``index`` hours after T0."""
        rng = self.rng
        start = T0 + timedelta(hours=index)
        events: list = []
        for uid in self.add_users(signups, young_signups):
            events.append(AccountCreation(start + timedelta(seconds=float(rng.uniform(0, 60))), uid))
        p_user = self.activity / self.activity.sum()
        while len(events) < n_events:
            uid = int(rng.choice(len(p_user), p=p_user))
            t = start + timedelta(seconds=float(rng.uniform(0, 3500)))
            genre = rng.choice(len(GENRES), p=self.tastes[uid])
            pool = np.flatnonzero(self.movie_genre == genre)
            w = self.movie_weight[pool] / self.movie_weight[pool].sum()
            movie = self.movie_ids[int(rng.choice(pool, p=w))]
            length = int(rng.geometric(1 / 15))
            for m in range(length):
                events.append(WatchMinute(t + timedelta(seconds=m), uid, movie, m))
            if rng.random() < 0.4:
                stars = int(np.clip(round(rng.normal(3.5, 1)), 1, 5))
                events.append(Rating(t + timedelta(seconds=length), uid, movie, stars))
            if rng.random() < 0.5:
                top = rng.choice(len(self.movie_ids), 20, replace=False,
                                 p=self.movie_weight / self.movie_weight.sum())
                events.append(RecommendationRequest(
                    t, uid, "rec:8082", 200, tuple(self.movie_ids[i] for i in top), "", 40))
        events.sort(key=lambda e: e.time)
        return Window.from_events(events, start, start + timedelta(hours=1))
