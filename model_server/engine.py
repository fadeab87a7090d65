"""One model version in service: a loaded bundle plus everything precomputed to rank fast.

An :class:`Engine` is immutable once built; :mod:`model_server.swap` replaces it whole. Its
methods are pure CPU (no I/O): the online-store read and the metadata lookup happen in
:mod:`model_server.service`, which passes their results in.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from model_server.npy_rows import NpyRows
from model_server.ranking import NormPrunedScorer, cost_adjusted, first_unseen, top_k
from movierec_core.features import candidate_features, user_features
from movierec_core.models.bundle import Bundle, load_bundle
from movierec_core.models.confidence import ConfidenceWeights, confidence, recency_weight
from movierec_core.models.factor import FactorModel
from movierec_core.models.ranker import Ranker, exploring
from movierec_core.models.retrieval import AnnIndex

log = logging.getLogger(__name__)

FALLBACK_SIZE = 100  # popularity entries kept precomputed for fallbacks and cold starts


def _utc_now() -> datetime:
    """The clock as the lake and the online store write times: naive UTC."""
    return datetime.now(UTC).replace(tzinfo=None)


_NO_ITEMS = np.empty(0, dtype=np.int64)  # (read-only: shared by every request without events)
_NO_ITEMS.flags.writeable = False
_NO_CONFIDENCES = np.empty(0, dtype=np.float32)
_NO_CONFIDENCES.flags.writeable = False


@dataclass(frozen=True)
class Answer:
    """A ranked list and where it came from.

    ``source``: ``model`` (stored user factors), ``fold_in`` (factors recomputed from the online
    store), ``segment`` / ``popularity`` (cold start), ``fallback`` (error or deadline).
    """

    items: list[str]
    source: str
    engine: Engine | None
    cold_start: bool = False


@dataclass(frozen=True)
class ColdStart:
    """The user is unknown to the model and has no usable recent events: a segment is needed."""

    seen: frozenset[int] = field(default_factory=frozenset)


def confidence_weights(config: dict[str, Any], rating_scale_max: int) -> ConfidenceWeights:
    """The confidence rule the bundle was trained with (the trainer records its resolved config
    in the manifest: ``trainer.confidence`` and ``trainer.rating_scale_max``), so fresh events
    are weighted like the training history."""
    trainer = config.get("trainer") or {}
    given = dict(config.get("confidence") or trainer.get("confidence") or {})
    scale = (given.get("scale_max") or trainer.get("rating_scale_max")
             or (config.get("data") or {}).get("rating_scale_max") or rating_scale_max)
    fields = ConfidenceWeights.__dataclass_fields__
    return ConfidenceWeights(**{**{k: v for k, v in given.items() if k in fields},
                                "scale_max": int(scale)})


class Engine:
    """Ranks for one bundle: exclusion of seen items, fold-in, cost-aware re-ranking."""

    def __init__(self, bundle: Bundle, *, rating_scale_max: int = 5, retrieval: str = "exact",
                 candidates: int = 200, ranker: bool = True, exploration_share: float = 0.0,
                 exploration_salt: int = 0, compile_ranker: str = "off",
                 compile_cache: str | None = None) -> None:
        """``retrieval``: ``exact`` (every item that can make the list is scored) or ``ann``
        (two stages: the bundle's ANN index retrieves ``candidates`` items, which are then
        scored exactly, cost included; exact when the bundle has no index).

        ``ranker``: when the bundle holds one (:mod:`movierec_core.models.ranker`), the factor
        model's best ``ranker.candidates`` unseen items are ranked again by it over
        :mod:`movierec_core.features`. ``exploration_share``: the share of users (by
        :func:`~movierec_core.models.ranker.exploring` with ``exploration_salt``) whose lists
        are shuffled, so the trainer can measure position bias.

        ``compile_ranker``: ``off`` (LightGBM scores), ``background`` (LightGBM scores until
        the trees are compiled to machine code on a thread, :meth:`Ranker.compile`) or
        ``blocking`` (compiled before the engine serves); ``compile_cache``: where compiled
        rankers are kept (default: the temp dir)."""
        self.bundle = bundle
        self.path = Path(bundle.path).resolve()
        manifest = bundle.manifest
        self.version = str(manifest.get("version") or self.path.name)
        self.model_type = str(manifest.get("model_type", ""))
        snapshot = manifest.get("snapshot") or {}
        self.provenance = {
            "model_version": self.version,
            "model_type": self.model_type,
            "code_version": str(manifest.get("code_version") or ""),
            "snapshot_id": str(snapshot.get("id") or ""),
            "snapshot_hash": str(snapshot.get("hash") or ""),
        }
        self.model = bundle.model
        if hasattr(self.model, "num_threads"):
            # fold-in solves one user per request: OpenMP fan-out costs ~100x the solve
            # (27 ms vs 0.3 ms measured), so the lazily built solver gets one thread
            self.model.num_threads = 1
        if isinstance(getattr(self.model, "user_factors", None), np.memmap):
            # same memory-mapped pages, without np.memmap's per-slice subclass overhead
            self.model.user_factors = np.asarray(self.model.user_factors)
        items = getattr(self.model, "item_factors", None)
        if isinstance(items, np.ndarray) and not items.flags.writeable:
            # one in-memory copy (n_items x f, 5 MB at 20K x 64): implicit's fold-in kernels
            # need a writable buffer and would copy it anyway; the mapping is then dropped
            self.model.item_factors = np.array(items, dtype=np.float32)
        self.n_items = bundle.n_items
        self.item_ids: list[str] = [str(m) for m in bundle.item_ids]
        self._item_index = {m: i for i, m in enumerate(self.item_ids)}
        # plain ndarray views of the memory maps: np.memmap's subclass hooks cost microseconds
        # on every slice of the hot path; the data stays mapped, not copied
        self.user_ids = np.asarray(bundle.user_ids)
        limits = np.iinfo(self.user_ids.dtype)
        self._id_type, self._id_min, self._id_max = self.user_ids.dtype.type, limits.min, limits.max
        self._first_id = int(self.user_ids[0]) if self.user_ids.shape[0] else 0
        # ids that run without a gap (most bundles): a user's row is the id's offset from the
        # first, and the mapped array is never read per request (checked once from the file)
        self._consecutive = self._ids_consecutive(bundle.user_ids, self.path / "user_ids.npy")
        # a request needs a few bytes of the seen arrays: mapped, a million random users made
        # every page of them resident (19 MiB at 1M users x 8 in bench/serve.py); read from
        # the file on demand they stay in the page cache, shared and reclaimable
        self.seen_indptr = self._on_demand(bundle.seen_indptr, self.path / "seen_indptr.npy")
        self.seen_indices = self._on_demand(bundle.seen_indices, self.path / "seen_indices.npy")
        # the confidences are read only for users with fresh events: from the file, on demand
        self.seen_data = self._on_demand(bundle.seen_data, self.path / "seen_confidence.npy")
        self.costs = np.array(bundle.costs, dtype=np.float32)
        popularity = np.asarray(bundle.popularity, dtype=np.float32)
        self.popular = top_k(popularity.copy(), min(FALLBACK_SIZE, self.n_items))
        self._runtimes = None if bundle.runtimes is None else np.array(bundle.runtimes)
        self._weights = confidence_weights(manifest.get("config") or {}, rating_scale_max)
        # how the users' rows were weighed by time (trainer.recency): the online store's
        # events are folded in at the same half-life, their age taken at the request's instant
        recency = manifest.get("recency") or {}
        self.fold_in_half_life_h = float(recency.get("user_half_life_h") or
                                         recency.get("half_life_h") or 0.0)
        # its user ids are pseudonyms under this key (movierec_core/pseudonym.py); None: raw
        self.pseudonym_key_id: str | None = manifest.get("pseudonym_key_id")
        self._fallback = {k: self.answer(self.popular[:k], "fallback") for k in (20,)}
        # factor models (ALS, BPR): exact top-k scoring only the items that can make the list
        self.scorer = (NormPrunedScorer(self.model.item_factors, self.costs)
                       if isinstance(self.model, FactorModel) and self.n_items else None)
        if retrieval not in ("exact", "ann"):
            raise ValueError(f"serving.retrieval must be exact or ann, not {retrieval!r}")
        self.retrieval = (AnnIndex.load(self.path, candidates)
                          if retrieval == "ann" and self.scorer is not None else None)
        self.candidates = int(candidates)
        self.ranker = (Ranker.load(self.path) if ranker and self.scorer is not None
                       and Ranker.present(self.path) else None)
        if compile_ranker not in ("off", "background", "blocking"):
            raise ValueError("model_server.compile_ranker must be off, background or blocking, "
                             f"not {compile_ranker!r}")
        if self.ranker is not None and compile_ranker != "off":
            if compile_ranker == "blocking":
                self._compile_ranker(compile_cache)
            else:
                threading.Thread(target=self._compile_ranker, args=(compile_cache,),
                                 name="compile-ranker", daemon=True).start()
        self.exploration_share = float(exploration_share)
        self.exploration_salt = int(exploration_salt)
        self._rng = np.random.default_rng()
        # touch the scorer once so the first request does not pay for lazy setup
        if self.n_items and self.user_ids.shape[0]:
            self.model.scores_for_user(0)
        if self.n_items:
            one = sp.csr_matrix((np.ones(1, np.float32), np.zeros(1, np.int32), np.array([0, 1])),
                                shape=(1, self.n_items))
            self.model.scores_for_items(one)

    @classmethod
    def load(cls, path: Path | str, *, rating_scale_max: int = 5, retrieval: str = "exact",
             candidates: int = 200, ranker: bool = True, exploration_share: float = 0.0,
             exploration_salt: int = 0, compile_ranker: str = "off",
             compile_cache: str | None = None) -> Engine:
        return cls(load_bundle(path, mmap=True), rating_scale_max=rating_scale_max,
                   retrieval=retrieval, candidates=candidates, ranker=ranker,
                   exploration_share=exploration_share, exploration_salt=exploration_salt,
                   compile_ranker=compile_ranker, compile_cache=compile_cache)

    def _compile_ranker(self, cache: str | None) -> None:
        """The ranker's trees as machine code; on failure LightGBM keeps scoring (logged)."""
        try:
            seconds = self.ranker.compile(cache)
        except Exception:
            log.exception("compiling the ranker of %s failed; LightGBM scores its candidates",
                          self.version)
            return
        log.info("ranker of %s compiled in %.1f s (lleaves)", self.version, seconds)

    # --- lookups -------------------------------------------------------------------------
    @staticmethod
    def _on_demand(array: np.ndarray, file: Path) -> np.ndarray | NpyRows:
        """``array`` read by :class:`NpyRows` from its file when it is a memory map (sliced
        only: ``[a:b]``), else as it is."""
        if isinstance(array, np.memmap) and file.is_file():
            return NpyRows(file)
        return np.asarray(array)

    @classmethod
    def _ids_consecutive(cls, ids: np.ndarray, file: Path) -> bool:
        """Whether the sorted user ids are exactly ``first, first + 1, ...`` (read from the file
        into a transient buffer when mapped, so that the check leaves no page resident)."""
        n = ids.shape[0]
        if n == 0 or int(ids[-1]) - int(ids[0]) != n - 1:
            return False
        return bool(np.all(np.diff(cls._on_demand(ids, file)[:]) == 1))

    def user_row(self, user_id: int) -> int:
        """Training row of a user, -1 for a user the model has never seen."""
        ids = self.user_ids
        if not self._id_min <= user_id <= self._id_max:
            return -1
        # ids are sorted and, in most bundles, a run of consecutive integers: the row is then
        # the id's offset from the first (no read at all, instead of a binary search over 1M
        # ids); otherwise a guess at that offset, then the search
        guess = user_id - self._first_id
        if self._consecutive:
            return guess if 0 <= guess < ids.shape[0] else -1
        if 0 <= guess < ids.shape[0] and ids[guess] == user_id:
            return guess
        # the key in the array's own type: a Python int against int32 ids would make numpy
        # widen the whole array to int64 on every call (4 MB copied per request at 1M users)
        pos = int(np.searchsorted(ids, self._id_type(user_id)))
        if pos < ids.shape[0] and int(ids[pos]) == user_id:
            return pos
        return -1

    def answer(self, indices: Sequence[int] | np.ndarray, source: str,
               cold_start: bool = False) -> Answer:
        ids = self.item_ids
        return Answer([ids[i] for i in np.asarray(indices, dtype=np.int64).tolist()], source, self,
                      cold_start)

    def popular_answer(self, k: int) -> Answer:
        """Global popularity as a cold start (a user nobody can know)."""
        return self.answer(self.popular[:k], "popularity", cold_start=True)

    def fallback(self, k: int) -> Answer:
        """Global popularity, no personalisation: what is served when anything goes wrong."""
        cached = self._fallback.get(k)
        return cached if cached is not None else self.answer(self.popular[:k], "fallback")

    # --- ranking -------------------------------------------------------------------------
    def rank(self, user_id: int, interactions: Sequence[Any], k: int, *,
             cost_lambda: float = 0.0, fold_in: bool = True,
             now: datetime | None = None) -> Answer | ColdStart:
        """Top-``k`` for a user, excluding everything seen in training and in ``interactions``
        (the online store's recent events, newest first). ``now``: the request's instant (the
        ranker's time features, the events' ages under recency; default the clock, naive UTC
        like the lake)."""
        state = self.user_state(user_id, interactions, fold_in, now)
        if isinstance(state, ColdStart):
            return state
        vector, user_items, row, seen, source = state
        if self.ranker is not None:
            ranked = self._ranked(vector, interactions, k, seen, cost_lambda,
                                  now if now is not None else _utc_now())
        elif vector is not None and (self.retrieval is not None or not cost_lambda):
            ranked = (self._two_stage(vector, k, seen, cost_lambda) if self.retrieval is not None
                      else self.scorer.top_k(vector, k, seen))
        else:
            scores = (self.model.scores_for_items(user_items) if user_items is not None
                      else self.model.scores_for_user(row))
            ranked = top_k(cost_adjusted(np.asarray(scores, dtype=np.float32), self.costs,
                                         cost_lambda), k, seen)
        if self.exploration_share and exploring(user_id, self.exploration_share,
                                                self.exploration_salt)[0]:
            ranked = self._rng.permutation(np.asarray(ranked))
        return self.answer(ranked, source, cold_start=row < 0)

    def user_state(self, user_id: int, interactions: Sequence[Any], fold_in: bool = True,
                   now: datetime | None = None
                   ) -> tuple[np.ndarray | None, Any, int, np.ndarray, str] | ColdStart:
        """What ranking a user starts from: ``(vector, user_items, row, seen, source)``, the
        user's factor vector (stored or folded in; None where the model has no vectors or cost
        needs every score), their confidence row when folded in, training row (-1: unknown),
        the item indices to exclude, and ``model`` or ``fold_in``; or :class:`ColdStart`.
        ``now``: the instant the events' ages are taken at (the bundle's recency half-life;
        default the clock)."""
        row = self.user_row(user_id)
        start = end = 0
        if row >= 0:
            start, end = (int(v) for v in self.seen_indptr[row:row + 2])
        hist_items = self.seen_indices[start:end].astype(np.int64)
        online_items, online_conf = self._online(interactions, now)
        fresh = False
        if online_items.size:
            seen = np.union1d(hist_items, online_items)
            # confidences are only read when there is something to compare
            hist_conf = self.seen_data[start:end].astype(np.float32)
            fresh = self._has_news(hist_items, hist_conf, online_items, online_conf)
        else:
            seen = hist_items
        if fold_in and fresh:
            user_items = self._merged_row(hist_items, hist_conf, online_items, online_conf)
            source = "fold_in"
        elif row >= 0:
            user_items = None
            source = "model"
        else:
            return ColdStart(frozenset(int(i) for i in seen))
        vector = None
        if self.scorer is not None:  # the user's vector, stored or folded in
            vector = (self.model.fold_in(user_items) if user_items is not None
                      else self.model.user_factors[row])
        return vector, user_items, row, seen, source

    def first_stage(self, vector: np.ndarray, seen: np.ndarray, items: np.ndarray | None = None,
                    n: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """The factor model's view for the ranker: ``(items, scores, ranks, best)``. With
        ``items``, their scores and ranks among the unseen items (0: the best); otherwise the
        best ``n`` unseen items (retrieved by the ANN index when serving uses it)."""
        vector = np.asarray(vector, np.float32)
        if items is None:
            # the ranker's candidates straight from the index with their scores, or the
            # norm-pruned exact top n
            if self.retrieval is not None:
                chosen, scores = self._retrieve(vector, n, seen)
                order = np.lexsort((chosen, -scores))
                chosen, scores = chosen[order], scores[order]
            else:
                chosen = np.asarray(self.scorer.top_k(vector, n, seen), np.int64)
                scores = self.model.item_factors[chosen] @ vector
            best = float(scores[0]) if scores.size else 0.0
            return chosen, scores, np.arange(chosen.size, dtype=np.float32), best
        full = self.model.item_factors @ vector
        if len(seen):
            full[np.asarray(seen, np.int64)] = -np.inf
        items = np.asarray(items, np.int64)
        scores = self.model.item_factors[items] @ vector
        ordered = np.sort(full[np.isfinite(full)])
        ranks = (ordered.size - np.searchsorted(ordered, scores, side="right")).astype(np.float32)
        return items, scores, ranks, float(ordered[-1]) if ordered.size else 0.0

    def _ranked(self, vector: np.ndarray, interactions: Sequence[Any], k: int, seen: np.ndarray,
                cost_lambda: float, now: datetime) -> np.ndarray:
        """Two stages with the learned ranker: the factor model's best candidates, ordered by
        the ranker (minus ``cost_lambda`` x the normalised licence cost)."""
        ranker = self.ranker
        cands, scores, ranks, best = self.first_stage(vector, seen, n=max(ranker.candidates, k))
        if cands.size == 0:
            return cands
        user = user_features(interactions, self._item_index, ranker.items, now)
        rows = candidate_features(user, cands, scores, ranks, best, ranker.items, now)
        value = ranker.score(rows)
        if cost_lambda:
            value = value - cost_lambda * self.costs[cands]
        return cands[np.lexsort((ranks, -value))][:k]

    def _retrieve(self, vector: np.ndarray, n: int, seen: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
        """The ANN index's ``n`` best unseen items (seen ones filtered during the search) and
        their exact scores ``f_i · u``, in no particular order."""
        found, scores = self.retrieval.search_scored(vector, n, exclude=seen)
        if scores is None:
            scores = self.model.item_factors[found] @ np.asarray(vector, np.float32)
        return found, np.asarray(scores, np.float32)

    def _two_stage(self, vector: np.ndarray, k: int, seen: np.ndarray,
                   cost_lambda: float) -> np.ndarray:
        """Retrieval: the ANN index's ``candidates`` unseen items; ranking: those by their
        exact scores, cost included, best first (ties to the lower index). Falls back to exact
        scoring when too few candidates remain."""
        found, scores = self._retrieve(vector, self.candidates, seen)
        if found.size < k:
            return top_k(cost_adjusted(np.asarray(self.model.item_factors @ vector, np.float32),
                                       self.costs, cost_lambda), k, seen)
        if cost_lambda:
            scores = scores - np.float32(cost_lambda) * self.costs[found]
        return found[np.lexsort((found, -scores))][:k]

    def cold_start(self, demographics: tuple[Any, Any, Any] | None, k: int,
                   unknown: ColdStart) -> Answer:
        """The bundle's list for the user's demographic segment (its fallback chain ends in
        everyone's list), topped up from global popularity; without demographics, popularity."""
        if demographics is not None:
            picked = list(self.bundle.cold_start_items(*demographics, k=k,
                                                       exclude=sorted(unknown.seen)))
            if len(picked) < k:
                picked += first_unseen(self.popular, k - len(picked),
                                       set(unknown.seen) | set(picked))
            return self.answer(picked, "segment", cold_start=True)
        return self.answer(first_unseen(self.popular, k, unknown.seen), "popularity",
                           cold_start=True)

    # --- fold-in helpers -----------------------------------------------------------------
    def _online(self, interactions: Sequence[Any], now: datetime | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
        """Item indices and confidences of the online store's interactions (unknown movies
        skipped: the model cannot score them), weighed by their age at ``now`` when the bundle's
        users were (``trainer.recency``: the same weight as the trainer's)."""
        if not interactions:
            return _NO_ITEMS, _NO_CONFIDENCES
        index = self._item_index
        items, minutes, stars, times = [], [], [], []
        for it in interactions:
            i = index.get(it.movie_id)
            if i is not None:
                items.append(i)
                minutes.append(it.minutes)
                stars.append(np.nan if it.stars is None else it.stars)
                times.append(it.last_time)
        if not items:
            return _NO_ITEMS, _NO_CONFIDENCES
        items_arr = np.asarray(items, dtype=np.int64)
        runtime = self._runtimes[items_arr] if self._runtimes is not None else np.nan
        conf = np.asarray(confidence(np.asarray(minutes, dtype=np.float64), runtime,
                                     np.asarray(stars, dtype=np.float64), self._weights),
                          dtype=np.float32).reshape(-1)
        if self.fold_in_half_life_h:
            at = now if now is not None else _utc_now()
            ages = [(at - t).total_seconds() / 3600.0 for t in times]
            conf = conf * recency_weight(ages, self.fold_in_half_life_h).astype(np.float32)
        # a watched-but-zero-confidence movie (e.g. a dislike) is still excluded, not folded in
        return items_arr, conf

    @staticmethod
    def _has_news(hist_items: np.ndarray, hist_conf: np.ndarray, online_items: np.ndarray,
                  online_conf: np.ndarray) -> bool:
        """True when the online store knows something the training row does not."""
        if hist_items.size == 0:
            return bool(np.any(online_conf > 0))
        order = np.argsort(hist_items, kind="stable")
        hist_items, hist_conf = hist_items[order], hist_conf[order]
        pos = np.searchsorted(hist_items, online_items)
        pos = np.minimum(pos, hist_items.size - 1)
        known = hist_items[pos] == online_items
        return bool(np.any(~known & (online_conf > 0))
                    or np.any(known & (online_conf > hist_conf[pos] + 1e-6)))

    def _merged_row(self, hist_items: np.ndarray, hist_conf: np.ndarray,
                    online_items: np.ndarray, online_conf: np.ndarray) -> sp.csr_matrix:
        """1 × n_items confidences: training row and online events, the larger value per item
        (the store may hold events the snapshot already had)."""
        items = np.concatenate([hist_items, online_items])
        conf = np.concatenate([hist_conf, online_conf])
        order = np.lexsort((-conf, items))
        items, conf = items[order], conf[order]
        first = np.ones(items.size, dtype=bool)
        first[1:] = items[1:] != items[:-1]
        items, conf = items[first], conf[first]
        keep = conf > 0
        items, conf = items[keep], conf[keep]
        return sp.csr_matrix((conf, items.astype(np.int32), np.array([0, items.size])),
                             shape=(1, self.n_items), dtype=np.float32)
