"""Enrichment against the simulator's metadata API: bulk, cached, retried, never blocking."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingestor import metrics
from ingestor.enrich import Enricher, movie_row
from movierec_core.lake import MOVIES, SCHEMAS, USERS, table_dir
from movierec_core.snapshot import data_files


@pytest.fixture(scope="module")
def world():
    from simulator.world import World, WorldConfig

    return World.build(WorldConfig(n_users=500, n_movies=300))


@pytest.fixture
def api(world):
    from simulator.metadata_api import serve

    handle = serve(world, port=0)
    yield handle
    handle.stop()


def lake_table(root, table) -> pa.Table:
    files = data_files(table_dir(root, table))
    return pa.concat_tables(pq.ParquetFile(p).read() for p in files) if files else \
        SCHEMAS[table].empty_table()


def drain(enricher: Enricher, steps: int = 50) -> None:
    for _ in range(steps):
        if not enricher.step():
            return


def test_messy_movie_record_becomes_a_typed_row() -> None:
    row = movie_row("heat+1995", {"id": "heat+1995", "title": "Heat", "runtime": "170",
                                  "cost": "2.5", "genres": [{"id": 1, "name": "Crime"}],
                                  "popularity": None, "vote_average": "8"}, None)
    assert (row["year"], row["runtime"], row["cost"], row["genres"], row["popularity"],
            row["vote_average"]) == (1995, 170, 2.5, ["Crime"], None, 8.0)


def test_new_ids_are_fetched_in_bulk_once_and_written_to_the_lake(api, world, tmp_path) -> None:
    enricher = Enricher(str(tmp_path), api.url, bulk_size=200)
    users = list(range(450)) + [10**9]  # the last one does not exist
    movies = list(world.movie_ids[:250])
    before = metrics.ENRICHMENT.labels("ok")._value.get()
    enricher.offer(users, movies)
    drain(enricher)
    assert enricher.pending() == 0
    requests = metrics.ENRICHMENT.labels("ok")._value.get() - before
    assert requests == 3 + 2  # ceil(451/200) user requests + ceil(250/200) movie requests
    got_users = lake_table(tmp_path, USERS)
    assert sorted(got_users.column("user_id").to_pylist()) == list(range(450))
    got_movies = lake_table(tmp_path, MOVIES)
    assert sorted(got_movies.column("movie_id").to_pylist()) == sorted(movies)
    # cached: offering them again (even to a new process reading the lake) fetches nothing
    enricher.offer(users[:10], movies[:10])
    assert not enricher.step()
    again = Enricher(str(tmp_path), api.url)
    again.offer(users[:450], movies)
    assert again.pending() == 0


def test_an_outage_delays_enrichment_and_it_catches_up(api, tmp_path) -> None:
    faults = api.server.config.app.state.faults
    faults.update({"error_rate": 1.0})
    enricher = Enricher(str(tmp_path), api.url, max_backoff_s=0.01)
    enricher.offer([1, 2, 3], [])
    before = metrics.ENRICHMENT.labels("retry")._value.get()
    enricher.step()
    enricher.step()
    assert metrics.ENRICHMENT.labels("retry")._value.get() - before == 2
    assert enricher.pending() == 3 and lake_table(tmp_path, USERS).num_rows == 0
    faults.update({"error_rate": 0.0})
    drain(enricher)
    assert sorted(lake_table(tmp_path, USERS).column("user_id").to_pylist()) == [1, 2, 3]


def test_an_unreachable_api_never_blocks_offer(tmp_path) -> None:
    enricher = Enricher(str(tmp_path), "http://127.0.0.1:9", timeout_s=0.2).start()
    try:
        for i in range(100):
            enricher.offer(range(i * 10, i * 10 + 10), [f"m{i}"])
        assert enricher.pending() >= 1000
    finally:
        enricher.stop()
