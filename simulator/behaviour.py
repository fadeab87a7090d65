"""Users' behaviour on a simulated clock, batched over all users with numpy.

One :meth:`Simulation.step` is one simulated minute. In it:

* new accounts sign up (``GET /create_account``) and start a first session soon, with no history;
* idle users start sessions at ``session_rate_per_hour``; a user choosing a movie first asks the
  recommendation endpoint (with ``request_prob``), logs the ``recommendation request`` line, and
  scans the list: entry ``j`` catches them with probability
  ``attention * position_decay**j * affinity**pick_gamma`` (first catch wins); failing that, or
  without a list, they choose organically (candidates drawn by popularity, weighted by
  ``affinity**organic_gamma``). Watched movies are ``rewatch_factor`` less attractive;
* watching users emit one watch line per minute; the length of a watch is exponential with mean
  ``runtime * affinity * watch_mean_factor`` (capped at the runtime): liked movies are watched
  long, disliked ones abandoned early;
* after a watch the user may rate it (stars rise with affinity) and may pick another movie.

Per-user state is a set of numpy columns; the only per-user Python objects are the sets of
watched movies of users who watched something.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection
from datetime import datetime, timedelta
from typing import Any, Protocol

import numpy as np

from movierec_core.events import (
    EventKind,
    account_line,
    rating_line,
    recommendation_line,
    watch_line,
)
from simulator.faults import FaultInjector
from simulator.ledger import Ledger
from simulator.recommenders import Recommender
from simulator.world import World, _grow, _synth_title

IDLE, WATCHING = 0, 1


class Sink(Protocol):
    def send(self, lines: list[bytes]) -> None: ...

    def flush(self) -> None: ...


class Simulation:
    """The behaviour engine. ``recommender`` may be ``None`` (organic choices only)."""

    def __init__(self, world: World, cfg: Any, recommender: Recommender | None = None,
                 faults: FaultInjector | None = None) -> None:
        self.world = world
        self.cfg = cfg
        self.b = cfg.behaviour
        self.recommender = recommender
        self.seed = int(cfg.seed)
        self.rng = np.random.default_rng(self.seed)
        self.faults = faults or FaultInjector(
            cfg.faults.invalid_rate, cfg.faults.duplicate_rate, list(cfg.faults.kinds),
            cfg.faults.huge_line_bytes, seed=self.seed + 1,
            rating_max=cfg.behaviour.rating_scale_max, movie_ids=world.movie_ids)
        self.start = datetime.fromisoformat(str(cfg.clock.start))
        self.tick = 0
        self.ledger = Ledger()
        self.seen: dict[int, set[int]] = {}
        self.lock = threading.Lock()  # endpoints served from this process read `seen`
        self.server = recommender.server if recommender is not None else ""
        self.signup_age_shift = 0.0
        self.signup_female_share = 0.45
        self.signup_rate = float(self.b.signups_per_hour) / 60
        self.drift = cfg.drift
        # Timestamps: each user keeps a second (and maybe a fraction) within the minute.
        table = sorted({(s * 1_000_000, f"{s:02d}") for s in range(60)}
                       | {_fraction(s, self.rng) for s in range(60) for _ in range(5)})
        self.suffixes = [text for _, text in table]
        self._plain = np.array([i for i, (_, text) in enumerate(table) if "." not in text])
        self._fract = np.array([i for i, (_, text) in enumerate(table) if "." in text])
        n = world.n_users
        self.state = np.zeros(n, np.int8)
        self.movie = np.full(n, -1, np.int32)
        self.minute = np.zeros(n, np.int16)
        self.remaining = np.zeros(n, np.int16)
        self.next_start = np.zeros(n, np.int64)
        self.suffix = np.zeros(n, np.int16)
        self.n_users = 0
        self._init_users(world.n_users, first_session=self._session_gaps)
        self._refresh_popularity()
        self._warm_start(float(getattr(self.b, "warm_start_share", 0.0)))

    def _warm_start(self, share: float) -> None:
        """Start the clock in a steady state: ``share`` of users are mid-way through a movie
        (chosen organically before the log began, so no request line precedes it)."""
        if share <= 0 or self.n_users == 0:
            return
        users = np.flatnonzero(self.rng.random(self.n_users) < share)
        if not len(users):
            return
        picks = self._pick_organic(users)
        lengths = self._watch_lengths(users, picks)
        done = (self.rng.random(len(users)) * lengths).astype(np.int16)
        self.state[users] = WATCHING
        self.movie[users] = picks
        self.minute[users] = done
        self.remaining[users] = lengths - done
        for u, m in zip(users.tolist(), picks.tolist(), strict=True):
            self.seen.setdefault(u, set()).add(m)

    # ------------------------------------------------------------------ state helpers
    def _session_gaps(self, n: int) -> np.ndarray:
        p = min(1.0, float(self.b.session_rate_per_hour) / 60)
        return self.rng.geometric(p, n) if p > 0 else np.full(n, 2**40)

    def _init_users(self, upto: int, first_session: Callable[[int], np.ndarray]) -> np.ndarray:
        new = np.arange(self.n_users, upto)
        n = len(new)
        self.state = _grow(self.state, self.n_users, np.zeros(n, np.int8))
        self.movie = _grow(self.movie, self.n_users, np.full(n, -1, np.int32))
        self.minute = _grow(self.minute, self.n_users, np.zeros(n, np.int16))
        self.remaining = _grow(self.remaining, self.n_users, np.zeros(n, np.int16))
        self.next_start = _grow(self.next_start, self.n_users, self.tick + first_session(n))
        fractional = self.rng.random(n) < float(self.b.fractional_time_share)
        suffix = self._plain[self.rng.integers(0, len(self._plain), n)]
        suffix[fractional] = self._fract[self.rng.integers(0, len(self._fract), fractional.sum())]
        self.suffix = _grow(self.suffix, self.n_users, suffix.astype(np.int16))
        self.n_users = upto
        return new

    def _refresh_popularity(self) -> None:
        pop = self.world.popularity[: self.world.n_movies]
        self._pop_cum = np.cumsum(pop / pop.sum())
        self._pop_cum[-1] = 1.0

    def _seen_factor(self, users: np.ndarray, movies: np.ndarray) -> np.ndarray:
        factor = np.ones(movies.shape, np.float32)
        rewatch = float(self.b.rewatch_factor)
        for row, user in enumerate(users.tolist()):
            seen = self.seen.get(user)
            if seen:
                hit = [m in seen for m in movies[row].tolist()]
                if any(hit):
                    factor[row, np.array(hit)] = rewatch
        return factor

    # ------------------------------------------------------------------ choices
    def _pick_from_lists(self, users: np.ndarray, lists: np.ndarray) -> np.ndarray:
        """Index picked per user from their list, or -1 (``lists`` is padded with -1)."""
        known = lists >= 0
        movies = np.where(known, lists, 0)
        affinity = self.world.affinity(users[:, None], movies)
        k = lists.shape[1]
        attention = float(self.b.attention) * float(self.b.position_decay) ** np.arange(k)
        attraction = attention * affinity ** float(self.b.pick_gamma)
        attraction *= self._seen_factor(users, movies) * known
        caught = self.rng.random(lists.shape) < attraction
        first = caught.argmax(axis=1)
        picked = lists[np.arange(len(users)), first]
        return np.where(caught.any(axis=1), picked, -1)

    def _pick_organic(self, users: np.ndarray, chunk: int = 8192) -> np.ndarray:
        if len(users) > chunk:  # bounded memory: (users x candidates x dims) per chunk
            return np.concatenate([self._pick_organic(users[i:i + chunk], chunk)
                                   for i in range(0, len(users), chunk)])
        c = int(self.b.organic_candidates)
        candidates = np.searchsorted(self._pop_cum, self.rng.random((len(users), c)))
        candidates = np.minimum(candidates, self.world.n_movies - 1)
        weight = self.world.affinity(users[:, None], candidates) ** float(self.b.organic_gamma)
        weight *= self._seen_factor(users, candidates)
        cum = np.cumsum(weight, axis=1)
        draw = self.rng.random(len(users)) * cum[:, -1]
        chosen = np.minimum((cum < draw[:, None]).sum(axis=1), c - 1)
        return candidates[np.arange(len(users)), chosen]

    def _watch_lengths(self, users: np.ndarray, movies: np.ndarray) -> np.ndarray:
        affinity = self.world.affinity(users, movies)
        runtime = self.world.runtime[movies].astype(np.float64)
        mean = runtime * affinity * float(self.b.watch_mean_factor)
        minutes = np.ceil(self.rng.exponential(np.maximum(mean, 1e-3)))
        return np.clip(minutes, 1, runtime).astype(np.int16)

    # ------------------------------------------------------------------ one minute
    def step(self) -> list[bytes]:
        """Advance one simulated minute; the lines it produced (faults included)."""
        t = self.tick
        now = self.start + timedelta(minutes=t)
        base = now.strftime("%Y-%m-%dT%H:%M:")
        sfx = self.suffixes
        counts = self.ledger.valid
        if int(self.drift.at_minute) == t:
            self.apply_drift()
        lines: list[str] = []

        # Sign-ups: new users with no history, a first session within minutes.
        n_new = int(self.rng.poisson(self.signup_rate)) if self.signup_rate > 0 else 0
        if n_new:
            self.world.add_users(n_new, rng=self.rng, age_shift=self.signup_age_shift,
                                 female_share=self.signup_female_share)
            new = self._init_users(self.world.n_users,
                                   first_session=lambda n: 1 + self.rng.geometric(0.2, n))
            lines += [account_line(base + sfx[s], u)
                      for u, s in zip(new.tolist(), self.suffix[new].tolist(), strict=True)]
            counts[EventKind.ACCOUNT.value] += n_new

        n = self.n_users
        state = self.state[:n]
        # Watch minutes of everyone watching (they started in an earlier minute).
        watching = np.flatnonzero(state == WATCHING)
        if len(watching):
            watching = watching[np.argsort(self.suffix[watching], kind="stable")]
            ids = self.world.movie_ids
            lines += [watch_line(base + sfx[s], u, ids[m], k) for u, s, m, k in zip(
                watching.tolist(), self.suffix[watching].tolist(),
                self.movie[watching].tolist(), self.minute[watching].tolist(), strict=True)]
            counts[EventKind.WATCH.value] += len(watching)
            self.minute[watching] += 1
            self.remaining[watching] -= 1
            done = watching[self.remaining[watching] <= 0]
            if len(done):
                lines += self._finish(done, base, t)

        # Choices: session starts and users going on to another movie.
        choosers = np.flatnonzero((state == IDLE) & (self.next_start[:n] == t))
        if len(choosers):
            lines += self._choose(choosers, base)

        self.tick += 1
        if lines:
            self.ledger.last_time = now.isoformat()
            if not self.ledger.first_time:
                self.ledger.first_time = now.isoformat()
        out = [line.encode() for line in lines]
        return self.faults.apply(out, self.ledger)

    def _finish(self, done: np.ndarray, base: str, t: int) -> list[str]:
        b = self.b
        movies = self.movie[done]
        self.state[done] = IDLE
        rating = self.rng.random(len(done)) < float(b.rating_prob)
        lines: list[str] = []
        if rating.any():
            users, rated = done[rating], movies[rating]
            affinity = self.world.affinity(users, rated)
            scale = int(b.rating_scale_max)
            # Liking on [0, 1] from the affinity's logit: 0.01 -> ~0.07, 0.1 -> ~0.47,
            # 0.5 -> ~0.83, 0.9 -> 1 (watched movies are mostly liked ones: 3-4 stars typical).
            logit = np.log(affinity) - np.log1p(-affinity)
            noisy = (logit + 5) / 6 + self.rng.normal(0, float(b.rating_noise), len(users))
            stars = 1 + np.rint((scale - 1) * np.clip(noisy, 0, 1)).astype(np.int64)
            ids = self.world.movie_ids
            sfx = self.suffixes
            lines = [rating_line(base + sfx[s], u, ids[m], r) for u, s, m, r in zip(
                users.tolist(), self.suffix[users].tolist(), rated.tolist(), stars.tolist(),
                strict=True)]
            self.ledger.valid[EventKind.RATE.value] += len(lines)
        go_on = self.rng.random(len(done)) < float(b.continue_prob)
        self.next_start[done] = np.where(go_on, t + 1, t + 1 + self._session_gaps(len(done)))
        return lines

    def _choose(self, users: np.ndarray, base: str) -> list[str]:
        picks = np.full(len(users), -1, np.int64)
        lines: list[str] = []
        if self.recommender is not None:
            asks = self.rng.random(len(users)) < float(self.b.request_prob)
            asked = users[asks]
            if len(asked):
                responses = self.recommender.recommend(asked.tolist())
                k = max([len(r.movie_ids) for r in responses] + [1])
                lists = np.full((len(asked), k), -1, np.int64)
                index_of = self.world.index_of
                sfx = self.suffixes
                server = self.recommender.server
                for row, (u, s, r) in enumerate(zip(asked.tolist(), self.suffix[asked].tolist(),
                                                    responses, strict=True)):
                    if r.status == 200:
                        lists[row, : len(r.movie_ids)] = [index_of.get(m, -1) for m in r.movie_ids]
                    lines.append(recommendation_line(base + sfx[s], u, r.server or server,
                                                     r.status, r.movie_ids, r.error,
                                                     r.response_ms))
                self.ledger.valid[EventKind.RECOMMEND.value] += len(asked)
                picks[asks] = self._pick_from_lists(asked, lists)
        organic = picks < 0
        if organic.any():
            picks[organic] = self._pick_organic(users[organic])
        self.state[users] = WATCHING
        self.movie[users] = picks
        self.minute[users] = 0
        self.remaining[users] = self._watch_lengths(users, picks)
        with self.lock:
            for u, m in zip(users.tolist(), picks.tolist(), strict=True):
                self.seen.setdefault(u, set()).add(m)
        return lines

    # ------------------------------------------------------------------ drift
    def apply_drift(self, kinds: list[str] | None = None) -> dict[str, Any]:
        """Taste shift, new-release burst and/or demographic shift of sign-ups, now."""
        d = self.drift
        kinds = list(kinds if kinds is not None else d.kinds)
        record: dict[str, Any] = {"minute": self.tick,
                                  "time": (self.start + timedelta(minutes=self.tick)).isoformat(),
                                  "kinds": kinds}
        world = self.world
        if "taste_shift" in kinds:
            who = np.flatnonzero(self.rng.random(world.n_users) < float(d.taste_shift_share))
            s = float(d.taste_shift_strength)
            fresh = self.rng.standard_normal((len(who), world.cfg.latent_dim)).astype(np.float32)
            fresh /= np.linalg.norm(fresh, axis=1, keepdims=True)
            mixed = (1 - s) * world.user_taste[who] + s * fresh
            world.user_taste[who] = mixed / np.linalg.norm(mixed, axis=1, keepdims=True)
            record["users_shifted"] = len(who)
        if "new_releases" in kinds:
            n = int(d.new_releases)
            year = self.start.year
            titles = [_synth_title(self.rng, i) + " " + "new" for i in range(n)]
            genres = [[g] for g in self.rng.choice(["Action", "Comedy", "Drama", "Sci-Fi",
                                                   "Animation"], n).tolist()]
            top = float(world.popularity[: world.n_movies].max())
            added = world._append_movies(titles, [year] * n, genres, self.rng,
                                         popularity_scale=top * 10 * float(d.new_release_popularity))
            self._refresh_popularity()
            record["movies_added"] = len(added)
        if "signup_shift" in kinds:
            self.signup_age_shift = float(d.signup_age_shift)
            self.signup_female_share = float(d.signup_female_share)
            self.signup_rate *= float(d.signup_rate_factor)
            record["signups"] = {"age_shift": self.signup_age_shift,
                                 "female_share": self.signup_female_share}
        self.ledger.drift.append(record)
        return record

    # ------------------------------------------------------------------ running
    def run(self, minutes: int, sink: Sink, speed: float = 0.0,
            stop: threading.Event | None = None,
            on_tick: Callable[[Simulation, int], None] | None = None) -> Ledger:
        """Run ``minutes`` simulated minutes (0: until ``stop``) into ``sink``.

        ``speed`` is simulated seconds per real second (60: a simulated minute per second);
        0 runs as fast as possible.
        """
        started = time.monotonic()
        done = 0
        while (minutes <= 0 or done < minutes) and not (stop is not None and stop.is_set()):
            batch = self.step()
            sink.send(batch)
            done += 1
            if on_tick is not None:
                on_tick(self, len(batch))
            if speed > 0:
                delay = started + done * 60.0 / speed - time.monotonic()
                if delay > 0:
                    if stop is not None:
                        stop.wait(delay)
                    else:
                        time.sleep(delay)
        sink.flush()
        return self.ledger

    def seen_ids(self, user_id: int) -> set[int]:
        """What ``user_id`` watched, safe to call from other threads (served endpoints)."""
        with self.lock:
            return set(self.seen.get(user_id, ()))

    def seen_in_thread(self, user_id: int) -> Collection[int]:
        """What ``user_id`` watched, for recommenders called from the simulation's own thread."""
        return self.seen.get(user_id, ())


def _fraction(second: int, rng: np.random.Generator) -> tuple[int, str]:
    digits = int(rng.integers(1, 7))
    value = int(rng.integers(1, 10**digits))
    text = f"{value:0{digits}d}".rstrip("0") or "1"
    micros = int(round(float("0." + text) * 1_000_000))
    return second * 1_000_000 + micros, f"{second:02d}.{text}"

