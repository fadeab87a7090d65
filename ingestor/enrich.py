"""Enrichment: user and movie metadata from the metadata API into the lake's users/movies tables.

Runs on its own thread and never blocks ingestion: the consumer only hands over ids
(:meth:`Enricher.offer`, a set update). Ids already in the lake or already answered are cached
and never fetched again; the rest go in bulk requests of at most ``bulk_size`` ids
(``GET /user/1,2,3``); 429, 5xx and connection errors are retried with exponential backoff while
the ids wait. Unknown ids (404 or absent from a bulk answer) are remembered and not asked again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx
import pyarrow as pa
import pyarrow.parquet as pq

from ingestor import metrics
from ingestor.lake import LakeWriter
from movierec_core.lake import MOVIES, SCHEMAS, USERS, table_dir
from movierec_core.snapshot import data_files

log = logging.getLogger(__name__)


def _int(value: Any) -> int | None:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _year_of(movie_id: str) -> int | None:
    tail = movie_id.rsplit("+", 1)[-1]
    return int(tail) if len(tail) == 4 and tail.isdigit() else None


def user_row(record: dict, fetched_at: datetime) -> dict:
    age = _int(record.get("age"))
    return {"user_id": _int(record.get("user_id")),
            "age": age if age is not None and 0 <= age < 32768 else None,
            "gender": record.get("gender"), "occupation": record.get("occupation"),
            "fetched_at": fetched_at}


def movie_row(movie_id: str, record: dict, fetched_at: datetime) -> dict:
    genres = record.get("genres") or []
    names = [g.get("name") if isinstance(g, dict) else str(g) for g in genres
             if isinstance(g, dict | str)]
    runtime = _int(record.get("runtime"))
    release = record.get("release_date")
    return {"movie_id": movie_id, "title": record.get("title"), "year": _year_of(movie_id),
            "genres": [n for n in names if n],
            "runtime": runtime if runtime is not None and abs(runtime) < 2**31 else None,
            "cost": _float(record.get("cost")), "popularity": _float(record.get("popularity")),
            "vote_average": _float(record.get("vote_average")),
            "release_date": str(release) if release is not None else None,
            "fetched_at": fetched_at}


class Enricher:
    """Fetches metadata for new ids on a background thread and appends it to the lake."""

    def __init__(self, lake_root: str, api_url: str, bulk_size: int = 200,
                 timeout_s: float = 2.0, interval_s: float = 1.0,
                 max_backoff_s: float = 30.0, pseudonyms=None) -> None:
        self.lake_root = lake_root
        # users are asked of the API by their ids and stored under their pseudonyms
        # (movierec_core/pseudonym.py); ``_known`` holds what the lake holds
        self._pid = pseudonyms.pid if pseudonyms is not None else int
        self.api_url = api_url.rstrip("/")
        self.bulk_size = max(1, min(int(bulk_size), 200))
        self.interval_s = interval_s
        self.max_backoff_s = max_backoff_s
        self.writer = LakeWriter(lake_root)
        self._client = httpx.Client(timeout=timeout_s)
        self._lock = threading.Lock()
        self._known: dict[str, set] = {USERS: set(), MOVIES: set()}
        self._pending: dict[str, set] = {USERS: set(), MOVIES: set()}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._backoff = 0.0
        self._load_known()

    def _load_known(self) -> None:
        for table, column in ((USERS, "user_id"), (MOVIES, "movie_id")):
            for path in data_files(table_dir(self.lake_root, table)):
                values = pq.ParquetFile(path).read(columns=[column]).column(column)
                self._known[table].update(values.to_pylist())

    # -- the consumer side: cheap, never blocks on the network
    def offer(self, user_ids: Iterable[int], movie_ids: Iterable[str]) -> None:
        with self._lock:
            known, pid = self._known[USERS], self._pid
            self._pending[USERS].update(u for u in user_ids if pid(u) not in known)
            self._pending[MOVIES].update(m for m in movie_ids if m not in self._known[MOVIES])

    def pending(self) -> int:
        with self._lock:
            return len(self._pending[USERS]) + len(self._pending[MOVIES])

    # -- the background side
    def start(self) -> Enricher:
        self._thread = threading.Thread(target=self._run, name="enricher", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self._client.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                worked = self.step()
            except Exception:  # noqa: BLE001 - enrichment must never take ingestion down
                log.exception("enrichment step failed")
                worked = False
            if self._backoff:
                self._stop.wait(self._backoff)
            elif not worked:
                self._stop.wait(self.interval_s)

    def step(self) -> bool:
        """One bulk request for users or movies; True when there was something to do."""
        for table in (USERS, MOVIES):
            with self._lock:
                ids = sorted(self._pending[table], key=str)[: self.bulk_size]
            if ids:
                self._fetch(table, ids)
                return True
        return False

    def _fetch(self, table: str, ids: list) -> None:
        kind = "user" if table == USERS else "movie"
        path = ",".join(quote(str(i), safe="+'&:!()*") for i in ids)
        try:
            response = self._client.get(f"{self.api_url}/{kind}/{path}")
        except httpx.HTTPError as exc:
            self._retry_later(f"{type(exc).__name__}: {exc}")
            return
        if response.status_code == 429 or response.status_code >= 500:
            self._retry_later(f"HTTP {response.status_code}")
            return
        self._backoff = 0.0
        now = datetime.utcnow().replace(microsecond=0)  # noqa: DTZ003 - naive UTC, lake-wide
        records: list[dict] = []
        if response.status_code == 200:
            body = response.json()
            records = body if isinstance(body, list) else [body]
            metrics.ENRICHMENT.labels("ok").inc()
        elif response.status_code == 404:
            metrics.ENRICHMENT.labels("not_found").inc()
        else:
            metrics.ENRICHMENT.labels("error").inc()
            log.warning("metadata API answered %s for %d %s ids", response.status_code,
                        len(ids), kind)
        rows = []
        wanted = set(ids)
        for record in records:
            if not isinstance(record, dict):
                continue
            if table == USERS:
                row = user_row(record, now)
                key = row["user_id"]
                if key in wanted:
                    row["user_id"] = self._pid(key)
            else:
                key = str(record.get("id") or record.get("movie_id") or "")
                row = movie_row(key, record, now)
            if key in wanted:
                rows.append(row)
        if rows:
            data = pa.Table.from_pylist(rows, schema=SCHEMAS[table])
            self.writer.write(table, None, data)
        with self._lock:  # answered (found or not): never asked again
            self._known[table].update(ids if table == MOVIES else map(self._pid, ids))
            self._pending[table].difference_update(ids)

    def _retry_later(self, why: str) -> None:
        metrics.ENRICHMENT.labels("retry").inc()
        self._backoff = min(max(self._backoff * 2, 0.5), self.max_backoff_s)
        log.warning("metadata API unavailable (%s); enrichment retries in %.1fs, ingestion "
                    "continues", why, self._backoff)
