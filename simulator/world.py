"""The simulated world: users with hidden low-rank tastes, movies, and the true affinity between them.

Everything is derived from one seed, so ``World.build(cfg)`` gives the same world every time.
Tastes are low rank on purpose (``latent_dim`` 8-16): collaborative filtering on the logged
events must be able to recover them, and the oracle (:meth:`World.true_top_k`) is the ceiling
every online metric is compared against.

Memory stays lean (1,000,000 users fit in ~60 MB): per-user data are numpy columns (float32
tastes, int8/int16 demographics); movie data are columns plus two lists of strings.

Taste model::

    score(u, m)    = sharpness * <taste_u, taste_m> + quality_m
    affinity(u, m) = sigmoid(score(u, m) - offset)        # in (0, 1)

User tastes are a demographic centroid (age band + gender + occupation) plus individual noise,
so demographics are correlated with tastes; movie tastes are the mean of their genres'
vectors plus individual noise, so genres carry signal too.
"""

from __future__ import annotations

import copy
import csv
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from movierec_core.config import SHARED_DIR
from movierec_core.events import is_valid_movie_id

MOVIELENS_DIR = SHARED_DIR / "data" / "ml-latest-small"

GENRES = (
    "Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "IMAX", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)
# TMDB genre ids, so /movie/<id> looks like TMDB.
TMDB_GENRE_IDS = {
    "Action": 28, "Adventure": 12, "Animation": 16, "Children": 10751, "Comedy": 35,
    "Crime": 80, "Documentary": 99, "Drama": 18, "Fantasy": 14, "Film-Noir": 10770,
    "Horror": 27, "IMAX": 10402, "Musical": 10402, "Mystery": 9648, "Romance": 10749,
    "Sci-Fi": 878, "Thriller": 53, "War": 10752, "Western": 37,
}
OCCUPATIONS = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer",
)
GENDERS = ("M", "F")
AGE_BANDS = (13, 18, 25, 35, 45, 56, 66, 90)  # band b covers [AGE_BANDS[b], AGE_BANDS[b+1])
_K12 = OCCUPATIONS.index("K-12 student")
_STUDENT = OCCUPATIONS.index("college/grad student")
_RETIRED = OCCUPATIONS.index("retired")

# Words for synthesized titles: deliberately full of the id's awkward characters.
_ADJ = ("lost", "dark", "silent", "golden", "broken", "last", "wild", "hidden", "crimson",
        "little", "eternal", "frozen", "electric", "secret", "endless", "bitter", "brave",
        "naïve", "café", "über", "señor", "mañana", "déjà", "o'brien's", "rock'n'roll")
_NOUN = ("river", "city", "heart", "night", "empire", "garden", "machine", "kingdom", "summer",
         "storm", "shadow", "road", "island", "letter", "dream", "war", "ghost", "bridge",
         "mirror", "detective", "ocean", "star", "dragon", "hotel", "train", "piano")
_FORMS = ("the {a} {n}", "{a} {n}", "{n} & {n2}", "the {n} of {n2}", "{a} {n}: part {d}",
          "{n}++", "{a} {n} {d}", "mr. {n}", "{n}: the {a} {n2}", "{n} vs. {n2}",
          "a {n} for {n2}", "{a} & {a2}", "{n} 2: {a} {n2}", "l'{n}", "{a} {n} (director's cut)")


@dataclass
class WorldConfig:
    """The world's size and taste model (the ``simulator.world`` config group)."""

    seed: int = 42
    n_users: int = 10_000
    n_movies: int = 20_000
    latent_dim: int = 8
    sharpness: float = 6.0  # how strongly taste alignment drives affinity
    offset: float = 5.0  # affinity = sigmoid(score - offset): most movies are of low affinity
    demographic_weight: float = 0.6  # share of a user's taste explained by demographics
    genre_weight: float = 0.6  # share of a movie's taste explained by its genres
    quality_sd: float = 0.5
    popularity_exponent: float = 1.0  # Zipf exponent of the long tail
    movielens_dir: str = str(MOVIELENS_DIR)
    start_year: int = 2025  # the "current" year: new releases carry it


def _fold(text: str, keep_accents: bool) -> str:
    if keep_accents:
        return text
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def movie_id_for(title: str, year: int | None, keep_accents: bool = True) -> str:
    """EVENTS.md's id: lowercase title, ``+`` for spaces and for ``/ , =``, then the year.

    An unknown year leaves a trailing ``+``. Nothing else is normalised, so ``++``, ``&``,
    ``'``, ``:``, ``.``, digits and accents all survive.
    """
    slug = _fold(title.strip().lower(), keep_accents)
    slug = re.sub(r"[\s/,=]", "+", slug)
    # '?', '#' and '%' are legal in ids but awkward in URLs of the metadata API: dropped here.
    slug = "".join(c for c in slug if c.isprintable() and c not in "?#%")
    return f"{slug}+{year}" if year is not None else f"{slug}+"


_YEAR_RE = re.compile(r"\s*\((\d{4})(?:[–-]\d{0,4})?\)\s*$")
_ARTICLE_RE = re.compile(r"^(.*), (The|A|An|Les|La|Le|L'|Il|Der|Die|Das|El)$")


def _split_movielens_title(raw: str) -> tuple[str, int | None]:
    match = _YEAR_RE.search(raw)
    year = int(match.group(1)) if match else None
    title = raw[: match.start()] if match else raw.strip()
    # "American President, The (Foo, La)" -> "The American President (Foo, La)"
    head, paren, tail = title.partition(" (")
    article = _ARTICLE_RE.match(head)
    if article:
        head = f"{article.group(2)} {article.group(1)}"
        title = head + (paren + tail if paren else "")
    return title, year


def _load_movielens(directory: Path) -> list[tuple[str, int | None, list[str]]]:
    path = Path(directory) / "movies.csv"
    if not path.exists():
        return []
    out = []
    with path.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            title, year = _split_movielens_title(row["title"])
            genres = [g for g in row["genres"].split("|") if g in GENRES]
            out.append((title, year, genres))
    return out


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class World:
    """Users, movies and their hidden tastes. Build it with :meth:`World.build`."""

    def __init__(self, cfg: WorldConfig) -> None:
        self.cfg = cfg
        self.rng = np.random.default_rng(cfg.seed)
        d = cfg.latent_dim
        # Taste components shared by segments and genres.
        self.genre_vectors = self.rng.standard_normal((len(GENRES), d)).astype(np.float32)
        self.age_vectors = self.rng.standard_normal((len(AGE_BANDS) - 1, d)).astype(np.float32)
        self.gender_vectors = self.rng.standard_normal((len(GENDERS), d)).astype(np.float32) * 0.6
        self.occupation_vectors = self.rng.standard_normal((len(OCCUPATIONS), d)).astype(np.float32)
        # Per-user columns (capacity grows with sign-ups).
        self.n_users = 0
        self.user_taste = np.zeros((0, d), np.float32)
        self.age = np.zeros(0, np.int16)
        self.gender = np.zeros(0, np.int8)
        self.occupation = np.zeros(0, np.int8)
        # Per-movie columns.
        self.n_movies = 0
        self.movie_ids: list[str] = []
        self.titles: list[str] = []
        self.movie_genres: list[tuple[str, ...]] = []
        self.year = np.zeros(0, np.int16)  # 0: unknown
        self.movie_taste = np.zeros((0, d), np.float32)
        self.quality = np.zeros(0, np.float32)
        self.popularity = np.zeros(0, np.float64)  # sampling weight of organic choice
        self.runtime = np.zeros(0, np.int16)
        self.cost = np.zeros(0, np.float32)
        self.index_of: dict[str, int] = {}

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(cls, cfg: WorldConfig | Any) -> World:
        """A world for ``cfg`` (a :class:`WorldConfig`, or any object/DictConfig with its fields)."""
        if not isinstance(cfg, WorldConfig):
            cfg = WorldConfig(**{k: cfg[k] for k in WorldConfig.__dataclass_fields__ if k in cfg})
        world = cls(cfg)
        world._build_movies(cfg.n_movies)
        world.add_users(cfg.n_users)
        return world

    def _build_movies(self, n: int) -> None:
        catalog = _load_movielens(Path(self.cfg.movielens_dir))[:n]
        titles = [t for t, _, _ in catalog]
        years = [y for _, y, _ in catalog]
        genres = [g for _, _, g in catalog]
        rng = np.random.default_rng(self.cfg.seed + 1)
        # Some catalogue entries lose their year (the trailing '+' case), as feeds do.
        years = [None if drop else y for y, drop in zip(years, rng.random(len(years)) < 0.01,
                                                           strict=True)]
        genre_freq = np.ones(len(GENRES))
        for gs in genres:
            for g in gs:
                genre_freq[GENRES.index(g)] += 1
        genre_p = genre_freq / genre_freq.sum()
        for i in range(n - len(catalog)):
            titles.append(_synth_title(rng, i))
            years.append(None if rng.random() < 0.02 else int(min(2024, 1930 + rng.gamma(6, 9))))
            k = int(rng.integers(1, 4))
            genres.append(sorted({GENRES[j] for j in rng.choice(len(GENRES), k, p=genre_p)}))
        self._append_movies(titles, years, genres, rng, popularity_rank_boost=len(catalog))

    def _append_movies(self, titles, years, genres, rng, popularity_rank_boost: int = 0,
                       popularity_scale: float = 1.0) -> np.ndarray:
        """Append movies; returns their indices. Popularity follows a Zipf long tail."""
        cfg = self.cfg
        n = len(titles)
        start = self.n_movies
        ids = []
        for i, (title, year) in enumerate(zip(titles, years, strict=True)):
            keep_accents = (start + i) % 3 != 0  # accents dropped or kept, as in the wild
            mid = movie_id_for(title, year, keep_accents)
            suffix = 2
            while mid in self.index_of or not is_valid_movie_id(mid):
                if not is_valid_movie_id(mid):
                    title = f"untitled {start + i}"
                mid = movie_id_for(f"{title} {_roman(suffix)}", year, keep_accents)
                suffix += 1
            self.index_of[mid] = start + i
            ids.append(mid)
        genre_idx = [[GENRES.index(g) for g in gs] for gs in genres]
        d = cfg.latent_dim
        genre_part = np.stack([
            self.genre_vectors[g].mean(axis=0) if g else np.zeros(d, np.float32) for g in genre_idx
        ]) if n else np.zeros((0, d), np.float32)
        noise = rng.standard_normal((n, d)).astype(np.float32)
        taste = _unit(cfg.genre_weight * _unit(genre_part) + (1 - cfg.genre_weight) * noise)
        quality = (rng.standard_normal(n) * cfg.quality_sd).astype(np.float32)
        # Popular movies are somewhat better and (for the seeded catalogue) the known ones.
        key = quality + rng.standard_normal(n).astype(np.float32) * 0.7
        key[: min(popularity_rank_boost, n)] += 1.0
        rank = np.empty(n, np.int64)
        rank[np.argsort(-key, kind="stable")] = np.arange(n)
        popularity = popularity_scale / (rank + 10.0) ** cfg.popularity_exponent
        runtime = np.clip(rng.normal(105, 22, n), 62, 210)
        short = rng.random(n) < 0.03
        runtime[short] = rng.integers(20, 50, short.sum())
        cost = np.round(np.exp(rng.normal(-0.5, 0.6, n)) * (1 + 20 * popularity / popularity.max()),
                        2)
        self.movie_ids.extend(ids)
        self.titles.extend(titles)
        self.movie_genres.extend(tuple(g) for g in genres)
        self.year = np.concatenate([self.year, np.array([y or 0 for y in years], np.int16)])
        self.movie_taste = np.concatenate([self.movie_taste, taste])
        self.quality = np.concatenate([self.quality, quality])
        self.popularity = np.concatenate([self.popularity, popularity])
        self.runtime = np.concatenate([self.runtime, runtime.astype(np.int16)])
        self.cost = np.concatenate([self.cost, cost.astype(np.float32)])
        self.n_movies += n
        return np.arange(start, start + n)

    def add_users(self, n: int, rng: np.random.Generator | None = None,
                  age_shift: float = 0.0, female_share: float = 0.45) -> np.ndarray:
        """Create ``n`` users (ids continue from the last one); returns their ids.

        ``age_shift`` (years) and ``female_share`` let drift move the demographics of sign-ups;
        since tastes follow demographics, their tastes move too.
        """
        rng = rng if rng is not None else np.random.default_rng(self.cfg.seed + 2)
        cfg = self.cfg
        age = np.clip(rng.gamma(5.0, 6.5, n) + 12 + age_shift, 13, 89).astype(np.int16)
        gender = (rng.random(n) < female_share).astype(np.int8)
        occupation = rng.integers(0, len(OCCUPATIONS), n).astype(np.int8)
        occupation[age < 18] = _K12
        young = (age >= 18) & (age < 24) & (rng.random(n) < 0.6)
        occupation[young] = _STUDENT
        occupation[(age >= 65) & (rng.random(n) < 0.7)] = _RETIRED
        band = np.searchsorted(AGE_BANDS, age, side="right") - 1
        centroid = (self.age_vectors[band] + self.gender_vectors[gender]
                    + 0.7 * self.occupation_vectors[occupation])
        noise = rng.standard_normal((n, cfg.latent_dim)).astype(np.float32)
        w = cfg.demographic_weight
        taste = _unit(w * _unit(centroid) + (1 - w) * noise)
        first = self.n_users
        self.user_taste = _grow(self.user_taste, first, taste)
        self.age = _grow(self.age, first, age)
        self.gender = _grow(self.gender, first, gender)
        self.occupation = _grow(self.occupation, first, occupation)
        self.n_users += n
        return np.arange(first, first + n)

    def copy(self) -> World:
        """An independent copy (a simulation grows its world: sign-ups, new releases, drift)."""
        twin = copy.copy(self)
        for name, value in vars(self).items():
            if isinstance(value, np.ndarray | list | dict):
                setattr(twin, name, value.copy())
        return twin

    # ------------------------------------------------------------------ truth
    def score(self, user_ids: Any, movie_idx: Any) -> np.ndarray:
        """Raw true score (monotone in affinity); numpy broadcasting of the two index arrays."""
        u = self.user_taste[np.asarray(user_ids)]
        m = self.movie_taste[np.asarray(movie_idx)]
        return self.cfg.sharpness * np.einsum("...d,...d->...", u, m) + self.quality[movie_idx]

    def affinity(self, user_ids: Any, movie_idx: Any) -> np.ndarray:
        """True affinity in (0, 1); broadcasting: ``affinity(users[:, None], movies[None, :])``."""
        return _sigmoid(self.score(user_ids, movie_idx) - self.cfg.offset).astype(np.float32)

    def scores_for_user(self, user_id: int) -> np.ndarray:
        return self.cfg.sharpness * (self.movie_taste[: self.n_movies] @ self.user_taste[user_id]) \
            + self.quality[: self.n_movies]

    def true_top_k(self, user_id: int, k: int = 20, exclude: Any = ()) -> list[int]:
        """The oracle: indices of the ``k`` movies of highest true affinity, best first."""
        scores = self.scores_for_user(user_id)
        if len(exclude):
            scores[np.fromiter(exclude, np.int64, len(exclude))] = -np.inf
        k = min(k, self.n_movies)
        top = np.argpartition(-scores, k - 1)[:k]
        return top[np.argsort(-scores[top], kind="stable")].tolist()

    def true_top_k_batch(self, user_ids: np.ndarray, k: int = 20) -> np.ndarray:
        """Oracle lists for many users at once (no exclusions): an ``(n, k)`` index array."""
        scores = self.cfg.sharpness * (self.user_taste[user_ids] @ self.movie_taste[: self.n_movies].T)
        scores += self.quality[: self.n_movies]
        k = min(k, self.n_movies)
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, 1), axis=1, kind="stable")
        return np.take_along_axis(top, order, 1)

    def popular_top_k(self, k: int = 20) -> list[int]:
        """Indices of the ``k`` most popular movies (cached until the catalogue changes)."""
        cached = getattr(self, "_popular_cache", None)
        if cached is None or cached[0] != self.n_movies or len(cached[1]) < k:
            order = np.argsort(-self.popularity[: self.n_movies], kind="stable")[: max(k, 100)]
            cached = self._popular_cache = (self.n_movies, order.tolist())
        return cached[1][:k]

    # ------------------------------------------------------------------ metadata
    def user_record(self, user_id: int) -> dict[str, Any] | None:
        if not 0 <= user_id < self.n_users:
            return None
        return {"user_id": int(user_id), "age": int(self.age[user_id]),
                "occupation": OCCUPATIONS[self.occupation[user_id]],
                "gender": GENDERS[self.gender[user_id]]}

    def movie_record(self, idx: int) -> dict[str, Any]:
        """The clean TMDB-like record (the metadata API adds the mess: strings, gaps)."""
        year = int(self.year[idx])
        h = (idx * 2654435761) % 2**32  # cheap deterministic per-movie variation
        pop = float(self.popularity[idx] / self.popularity[: self.n_movies].max() * 100)
        title = self.titles[idx]
        title = title if title != title.lower() else title.title()
        return {
            "id": self.movie_ids[idx],
            "tmdb_id": 10_000 + idx,
            "imdb_id": f"tt{1_000_000 + idx:07d}",
            "title": title,
            "original_title": title,
            "adult": False,
            "belongs_to_collection": {} if h % 7 else {"id": 9000 + h % 500, "name": "Collection"},
            "budget": int(h % 200) * 1_000_000,
            "genres": [{"id": TMDB_GENRE_IDS[g], "name": g} for g in self.movie_genres[idx]],
            "homepage": f"http://example.com/{self.tmdb_slug(idx)}" if h % 3 == 0 else None,
            "original_language": "en" if h % 5 else "fr",
            "overview": f"A {' and '.join(self.movie_genres[idx]).lower() or 'curious'} film.",
            "popularity": round(pop, 4),
            "poster_path": f"/{h:08x}.jpg",
            "production_companies": [{"id": h % 997, "name": f"Studio {h % 997}"}],
            "production_countries": [{"iso_3166_1": "US", "name": "United States of America"}],
            "release_date": f"{year:04d}-{1 + h % 12:02d}-{1 + h % 28:02d}" if year else None,
            "revenue": int(h % 500) * 1_000_000,
            "runtime": int(self.runtime[idx]),
            "spoken_languages": [{"iso_639_1": "en", "name": "English"}],
            "status": "Released",
            "vote_average": round(float(6.0 + 1.5 * np.tanh(self.quality[idx])), 1),
            "vote_count": int(pop * 100),
            "cost": round(float(self.cost[idx]), 2),
        }

    def tmdb_slug(self, idx: int) -> str:
        return f"{10_000 + idx}"


def _unit(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.where(norm == 0, 1, norm)).astype(np.float32)


def _grow(column: np.ndarray, used: int, new: np.ndarray) -> np.ndarray:
    """Append ``new`` after ``used`` rows, doubling capacity when full (sign-ups are frequent)."""
    need = used + len(new)
    if need > len(column):
        bigger = np.zeros((max(need, 2 * len(column)),) + column.shape[1:], column.dtype)
        bigger[:used] = column[:used]
        column = bigger
    column[used:need] = new
    return column


def _roman(n: int) -> str:
    out = ""
    for value, sym in ((10, "x"), (9, "ix"), (5, "v"), (4, "iv"), (1, "i")):
        while n >= value:
            out += sym
            n -= value
    return out


def _synth_title(rng: np.random.Generator, i: int) -> str:
    form = _FORMS[int(rng.integers(len(_FORMS)))]
    return form.format(a=_ADJ[int(rng.integers(len(_ADJ)))], a2=_ADJ[int(rng.integers(len(_ADJ)))],
                       n=_NOUN[int(rng.integers(len(_NOUN)))],
                       n2=_NOUN[int(rng.integers(len(_NOUN)))], d=int(rng.integers(2, 12)))
