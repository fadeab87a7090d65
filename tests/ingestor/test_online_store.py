"""The online store contract, run against both backends (SQLite WAL and a real redis-server)."""

from __future__ import annotations

import itertools
import sqlite3
import time
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from movierec_core.config import DataConfig
from movierec_core.events import AccountCreation, Rating, RecommendationRequest, WatchMinute
from movierec_core.online_store import (
    OnlineStore,
    RedisOnlineStore,
    SqliteOnlineStore,
    UserInteraction,
    open_store,
)

T0 = datetime(2025, 3, 2, 14, 0, 0)
_prefixes = itertools.count()


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


class OnlineStoreContract:
    """Every backend passes these; subclasses provide the ``store`` fixture."""

    def test_given_empty_store_then_nothing_is_known(self, store: OnlineStore) -> None:
        assert store.interactions(1) == []
        assert store.account_created_at(1) is None

    def test_watch_minutes_count_distinct_minutes_and_highest(self, store: OnlineStore) -> None:
        store.apply([WatchMinute(at(0), 7, "heat+1995", 0), WatchMinute(at(60), 7, "heat+1995", 1),
                     WatchMinute(at(120), 7, "heat+1995", 1)])
        store.apply([WatchMinute(at(180), 7, "heat+1995", 5)])
        assert store.interactions(7) == [UserInteraction("heat+1995", 3, 5, None, at(180))]

    def test_apply_is_idempotent_per_line(self, store: OnlineStore) -> None:
        events = [WatchMinute(at(0), 8, "a+1", 3), WatchMinute(at(60), 8, "a+1", 4),
                  Rating(at(90), 8, "a+1", 4), AccountCreation(at(-100), 8),
                  WatchMinute(at(30), 8, "b+2", 10)]
        store.apply(events)
        first = store.interactions(8)
        store.apply(events)
        store.apply(events[::-1])
        assert store.interactions(8) == first == [
            UserInteraction("a+1", 2, 4, 4, at(90)),
            UserInteraction("b+2", 1, 10, None, at(30)),
        ]
        assert store.account_created_at(8) == at(-100)

    def test_latest_rating_wins_by_event_time_not_arrival(self, store: OnlineStore) -> None:
        store.apply([Rating(at(100), 9, "x", 5)])
        store.apply([Rating(at(50), 9, "x", 1)])  # late arrival of an older rating
        assert store.interactions(9) == [UserInteraction("x", 0, -1, 5, at(100))]
        store.apply([Rating(at(200), 9, "x", 2), WatchMinute(at(150), 9, "x", 0)])
        assert store.interactions(9) == [UserInteraction("x", 1, 0, 2, at(200))]

    def test_watermark_is_the_newest_event_time_applied_and_never_goes_back(
            self, store: OnlineStore) -> None:
        assert store.watermark() is None
        store.apply([WatchMinute(at(60), 12, "a+1", 0), Rating(at(90), 12, "a+1", 3)])
        assert store.watermark() == at(90)
        store.apply([WatchMinute(at(30), 13, "b+1", 0)])  # a late event: the clock stays
        assert store.watermark() == at(90)
        store.apply([AccountCreation(at(500), 14)])
        assert store.watermark() == at(500)
        store.apply([])
        assert store.watermark() == at(500)

    def test_newest_first_and_limit(self, store: OnlineStore) -> None:
        store.apply([WatchMinute(at(i), 10, f"m{i}", 0) for i in range(20)])
        got = store.interactions(10, limit=5)
        assert [i.movie_id for i in got] == ["m19", "m18", "m17", "m16", "m15"]
        assert len(store.interactions(10)) == 20

    def test_earliest_account_creation_is_kept(self, store: OnlineStore) -> None:
        store.apply([AccountCreation(at(10), 11)])
        store.apply([AccountCreation(at(20), 11), AccountCreation(at(5.5), 11)])
        assert store.account_created_at(11) == at(5.5)

    def test_rekey_moves_every_user_and_drops_the_unmapped(self, store: OnlineStore) -> None:
        store.apply([WatchMinute(at(0), 20, "m", 1), Rating(at(5), 20, "m", 4),
                     AccountCreation(at(-9), 20), WatchMinute(at(1), 21, "n", 2),
                     AccountCreation(at(-8), 22)])
        store.erase([23, 24])
        before = store.interactions(20)
        mapping = {20: 9_000_000_020, 22: 9_000_000_022, 23: 9_000_000_023}  # 21, 24: unmapped
        assert store.rekey(mapping.get) == (3, 1)
        assert store.interactions(9_000_000_020) == before
        assert store.account_created_at(9_000_000_020) == at(-9)
        assert store.account_created_at(9_000_000_022) == at(-8)
        for old in (20, 21, 22):
            assert store.interactions(old) == [] and store.account_created_at(old) is None
        # an unmapped erased user stays marked under the old key (models of that key know them)
        assert store.erased_users() == {9_000_000_023, 24}
        # the moved user's minutes moved too: a redelivered minute is still not counted twice
        store.apply([WatchMinute(at(0), 9_000_000_020, "m", 1)])
        assert store.interactions(9_000_000_020) == before

    def test_microseconds_and_other_users_are_kept_apart(self, store: OnlineStore) -> None:
        t = datetime(2025, 3, 2, 14, 7, 33, 123456)
        store.apply([WatchMinute(t, 12, "m", 1), WatchMinute(t, 13, "m", 2),
                     RecommendationRequest(t, 12, "s", 200, ("m",), "", 5)])
        assert store.interactions(12) == [UserInteraction("m", 1, 1, None, t)]
        assert store.interactions(13) == [UserInteraction("m", 1, 2, None, t)]

    def test_reads_take_about_a_millisecond(self, store: OnlineStore) -> None:
        store.apply([WatchMinute(at(i), 14, f"m{i % 200}", i % 90) for i in range(5000)])
        start = time.perf_counter()
        for _ in range(200):
            store.interactions(14)
        per_read = (time.perf_counter() - start) / 200
        # informative, not a timed assertion: the figure shows up with -rA
        print(f"{type(store).__name__}: {per_read * 1e3:.3f} ms per read of 200 interactions")
        assert len(store.interactions(14)) == 200

    def test_apply_tables_equals_apply(self, store, tmp_path) -> None:
        """``apply_tables`` (Arrow watch minutes, the ingestor's path) equals ``apply``."""
        import pyarrow as pa

        from movierec_core.lake import SCHEMAS, WATCH_MINUTES

        watches = [WatchMinute(at(i), 20 + i % 3, f"m{i % 4}", i % 7) for i in range(60)]
        watches.append(WatchMinute(at(99), 20, "m0", 999_999_999))  # an absurd minute stays exact
        table = pa.table({
            "event_id": list(range(len(watches))), "time": [w.time for w in watches],
            "user_id": [w.user_id for w in watches], "movie_id": [w.movie_id for w in watches],
            "minute": [w.minute for w in watches]}, schema=SCHEMAS[WATCH_MINUTES])
        reference = SqliteOnlineStore(tmp_path / "reference.sqlite")
        reference.apply(watches)
        store.apply_tables(table, [Rating(at(200), 20, "m0", 3)])
        store.apply_tables(table)  # replayed batch
        reference.apply([Rating(at(200), 20, "m0", 3)])
        for user in (20, 21, 22):
            assert store.interactions(user) == reference.interactions(user)
        assert store.interactions(20)[0] == UserInteraction("m0", 6, 999_999_999, 3, at(200))
        reference.close()


class TestSqliteOnlineStore(OnlineStoreContract):
    @pytest.fixture
    def store(self, tmp_path):
        s = SqliteOnlineStore(tmp_path / "online.sqlite")
        yield s
        s.close()

    def test_open_store_defaults_to_sqlite_in_wal_mode(self, tmp_path) -> None:
        s = open_store(DataConfig(online_store_path=str(tmp_path / "o.sqlite")))
        assert isinstance(s, SqliteOnlineStore)
        mode = s._conn().execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"
        s.close()

    def test_a_second_connection_sees_writes(self, tmp_path) -> None:
        writer = SqliteOnlineStore(tmp_path / "o.sqlite")
        reader = SqliteOnlineStore(tmp_path / "o.sqlite")
        writer.apply([WatchMinute(at(0), 1, "m", 0)])
        assert reader.interactions(1) == [UserInteraction("m", 1, 0, None, at(0))]
        writer.close()
        reader.close()


# movie ids that JSON escapes or spells in UTF-8 (the batch path sends its rows as JSON) and
# a user id near the top of int64
_MOVIES = st.sampled_from(["a", "b+1995", "c", 'q"uote', "back\\slash", "é+2001", "😀", "t\tab"])
_USERS = st.sampled_from([1, 2, 3, 2**63 - 1])
_event = st.one_of(
    st.builds(WatchMinute, st.integers(0, 5_000).map(at), _USERS, _MOVIES,
              st.one_of(st.integers(0, 300), st.integers(0, 70_000),
                        st.sampled_from([0, 7, 8, 65_535, 65_536, 70_000]))),
    st.builds(Rating, st.integers(0, 5_000).map(at), _USERS, _MOVIES, st.integers(1, 5)),
    st.builds(AccountCreation, st.integers(0, 5_000).map(at), st.integers(1, 3)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(_event, max_size=40), min_size=1, max_size=4))
def test_sqlite_batch_bitmaps_equal_the_per_event_path(tmp_path_factory, batches) -> None:
    """The ingestor's path (``apply_tables``: numpy bitmaps per (user, movie), minutes above
    the bitmap and pairs with stored rows included) leaves exactly the rows, counts, bitmaps
    and watermark that ``apply`` of the same events leaves, batch after batch and replayed."""
    import pyarrow as pa

    from movierec_core.lake import SCHEMAS, WATCH_MINUTES

    d = tmp_path_factory.mktemp("bitmaps")
    fast, reference = SqliteOnlineStore(d / "fast.sqlite"), SqliteOnlineStore(d / "ref.sqlite")
    for events in [*batches, batches[0]]:
        watches = [e for e in events if isinstance(e, WatchMinute)]
        table = pa.table({
            "event_id": list(range(len(watches))), "time": [w.time for w in watches],
            "user_id": [w.user_id for w in watches], "movie_id": [w.movie_id for w in watches],
            "minute": [w.minute for w in watches]}, schema=SCHEMAS[WATCH_MINUTES])
        fast.apply_tables(table, [e for e in events if not isinstance(e, WatchMinute)])
        reference.apply(events)
    dump = ("SELECT * FROM interactions ORDER BY user_id, movie_id",
            "SELECT * FROM seen_minutes ORDER BY 1, 2, 3", "SELECT * FROM accounts ORDER BY 1",
            "SELECT * FROM meta")
    for query in dump:
        assert fast._conn().execute(query).fetchall() == reference._conn().execute(query).fetchall()
    fast.close()
    reference.close()


@pytest.mark.integration
class TestRedisOnlineStore(OnlineStoreContract):
    @pytest.fixture
    def store(self, redis_url):
        s = RedisOnlineStore(redis_url, prefix=f"t{next(_prefixes)}:")
        yield s
        s.close()

    def test_the_recommendation_cache_on_redis_is_shared(self, redis_url) -> None:
        import redis

        from model_server.cache import make_cache

        client = redis.Redis.from_url(redis_url)
        prefix = f"t{next(_prefixes)}:"
        one = make_cache("redis", max_entries=0, ttl_s=30, redis_client=client)
        one.backend.prefix = prefix
        two = make_cache("redis", max_entries=0, ttl_s=30, redis_client=client)
        two.backend.prefix = prefix
        one.store("v1", 42, 10, 7, ["a", "b"], "fold_in", False)
        hit = two.lookup("v1", 42, 10, 7)  # another replica
        assert (hit.items, hit.source, hit.cold_start) == (["a", "b"], "fold_in", False)
        assert two.lookup("v1", 42, 10, 8) is None and two.stale == 1
        assert 0 < client.ttl(f"{prefix}cache:v1:42:10") <= 30

    def test_open_store_redis(self, redis_url) -> None:
        s = open_store(DataConfig(online_store_backend="redis", redis_url=redis_url))
        assert isinstance(s, RedisOnlineStore)
        s.close()


def _open_store(path: str, barrier, results) -> None:
    barrier.wait()
    try:
        SqliteOnlineStore(path)
        results.put("ok")
    except Exception as exc:  # noqa: BLE001 - the answer the test reads
        results.put(repr(exc))


def test_processes_opening_a_new_store_at_once_all_get_it(tmp_path) -> None:
    """Two ingestors started together on a new file race to switch it to WAL; SQLite tells the
    loser "database is locked" without waiting (2 of 120 openers before the retry)."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    answers = []
    for round_ in range(12):
        barrier, results = ctx.Barrier(3), ctx.Queue()
        path = str(tmp_path / f"store-{round_}.sqlite")
        procs = [ctx.Process(target=_open_store, args=(path, barrier, results)) for _ in range(3)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        answers += [results.get(timeout=10) for _ in procs]
    assert answers == ["ok"] * 36


def test_a_locked_switch_to_write_ahead_logging_is_retried(tmp_path, monkeypatch) -> None:
    import movierec_core.online_store as module

    real_connect, refused = module.sqlite3.connect, []

    class Refusing:  # the connection of a process that lost the race once
        def __init__(self, conn) -> None:
            self.conn = conn

        def execute(self, sql, *args):
            if sql == "PRAGMA journal_mode=WAL" and not refused:
                refused.append(sql)
                raise sqlite3.OperationalError("database is locked")
            return self.conn.execute(sql, *args)

        def __getattr__(self, name):
            return getattr(self.conn, name)

    monkeypatch.setattr(module.sqlite3, "connect", lambda *a, **k: Refusing(real_connect(*a, **k)))
    store = SqliteOnlineStore(tmp_path / "s.sqlite")
    assert refused and store._conn().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    monkeypatch.setattr(module.sqlite3, "connect", real_connect)
    with pytest.raises(sqlite3.OperationalError, match="locked"):  # gives up in time
        module._write_ahead_log(_always_locked(real_connect(tmp_path / "t.sqlite")), 0.05)


def _always_locked(conn):
    class Locked:
        def execute(self, sql, *args):
            if sql == "PRAGMA journal_mode=WAL":
                raise sqlite3.OperationalError("database is locked")
            return conn.execute(sql, *args)
    return Locked()
