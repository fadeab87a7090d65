"""Pseudonymous ids end to end (issue 21): the real ingestor with a key consumes the
simulator's stream from a real broker; the lake, the online store, the trained bundle and the
provenance log hold pseudonyms only, none of the stream's ids; the model server answers a
request by the user's id with the personalised list; erasure by id, a key rotation and the
migration of a raw lake work; an ingestor with the wrong key refuses the lake."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from ingestor.lake import LakeWriter
from ingestor.pipeline import parse_batch
from model_server.engine import Answer, Engine
from model_server.service import Recommendations
from movierec_core.config import DataConfig
from movierec_core.erasure import ledger_entries
from movierec_core.events import DEFAULT_SETTINGS, Event, parse
from movierec_core.online_store import SqliteOnlineStore, open_store
from movierec_core.pseudonym import KEYS_ENV, KeyRing, lake_key_id
from movierec_core.registry import FileRegistry
from movierec_core.snapshot import create_snapshot, list_snapshots
from tests.ingestor.helpers import create_topic, produce, simulator_stream, start_ingestor
from tests.ingestor.test_integration import expected_online_state

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
K1 = f"k1={'1' * 32}"
K2 = f"k2={'2' * 32}"
P1 = KeyRing.parse(K1).current
P2 = KeyRing.parse(K2).current


def user_ids_in(root: Path) -> set[int]:
    """Every value of every ``user_id`` column of every Parquet file under ``root``."""
    found: set[int] = set()
    for path in root.rglob("*.parquet"):
        table = pq.read_table(path)
        if "user_id" in table.column_names:
            found.update(pc.unique(table.column("user_id")).to_pylist())
    return found


def logged_lines(root: Path) -> list[str]:
    out: list[str] = []
    for path in (root / "recommendation_requests").rglob("*.parquet"):
        out += pq.read_table(path, columns=["line"]).column("line").to_pylist()
    return out


def cli(*args: str, keys: str | None, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != KEYS_ENV}
    if keys:
        env[KEYS_ENV] = keys
    return subprocess.run([sys.executable, "-m", "ingestor", *args], cwd=REPO, env=env,
                          input=stdin, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def ingested(kafka_broker, tmp_path_factory) -> dict:
    """The stream ingested under key k1 by the real ingestor, one snapshot, one model."""
    work = tmp_path_factory.mktemp("pseudonyms")
    bootstrap, topic = kafka_broker.bootstrap, "it-pseudonyms"
    lines, _ = simulator_stream(12_000, seed=5)
    create_topic(bootstrap, topic)
    produce(bootstrap, topic, lines)
    from simulator.metadata_api import serve
    from simulator.world import World, WorldConfig

    api = serve(World.build(WorldConfig(n_users=2000, n_movies=3000)), port=0)  # the stream's
    saved = os.environ.get(KEYS_ENV)
    os.environ[KEYS_ENV] = K1
    try:  # with enrichment: demographics fetched by id, stored under the pseudonym
        proc = start_ingestor(bootstrap, topic, work, "ingestor.exit_when_idle_s=4",
                              "ingestor.enrichment=true", f"metadata_api.url={api.url}",
                              "ingestor.enrichment_interval_s=0.1")
        assert proc.wait(240) == 0, (work / "ingestor.log").read_text()[-3000:]
    finally:
        os.environ.pop(KEYS_ENV) if saved is None else os.environ.__setitem__(KEYS_ENV, saved)
        api.stop()
    events = [e for e in map(parse, lines) if isinstance(e, Event)]
    return {"work": work, "lake": work / "lake", "store": work / "online.sqlite",
            "lines": lines, "users": {e.user_id for e in events}}


def test_lake_and_online_store_hold_pseudonyms_only(ingested) -> None:
    lake, users = ingested["lake"], ingested["users"]
    assert lake_key_id(lake) == "k1"
    stored = user_ids_in(lake)
    assert stored == {P1.pid(u) for u in users} and not stored & users
    lines = logged_lines(lake)
    assert lines and all(parse(line).user_id in stored for line in lines)
    expected = expected_online_state(ingested["lines"])
    store = SqliteOnlineStore(ingested["store"])
    try:
        got = {u: {i.movie_id: (i.minutes, i.max_minute, i.stars)
                   for i in store.interactions(P1.pid(u), limit=10_000)} for u in expected}
        assert got == expected
        assert all(store.interactions(u) == [] for u in list(expected)[:200])
    finally:
        store.close()
    log = (ingested["work"] / "ingestor.log").read_text()
    assert K1.split("=")[1] not in log
    assert "/user/" not in log  # no request URL naming users by id (httpx logs them at INFO)


def test_demographics_are_kept_apart_under_the_pseudonym(ingested) -> None:
    from movierec_core.lake import USERS, table_dir

    users = pq.read_table(table_dir(ingested["lake"], USERS))
    assert users.num_rows > 100 and set(users.column_names) >= {"user_id", "age", "gender"}
    pids = {P1.pid(u) for u in ingested["users"]}
    assert set(users.column("user_id").to_pylist()) <= pids  # nobody by id


def test_the_model_learns_pseudonyms_and_serves_by_id(ingested, tmp_path) -> None:
    from trainer.cli import main as train

    lake = ingested["lake"]
    snapshot = create_snapshot(lake)
    assert snapshot["pseudonym_key_id"] == "k1"
    rc = train([f"data.lake_root={lake}", f"data.registry_root={tmp_path}/registry",
                f"trainer.output_dir={tmp_path}/runs", "trainer.report_plots=false",
                f"snapshot={snapshot['snapshot_id']}", "trainer.candidates=[als,popularity]",
                "trainer.min_user_interactions=1"])
    assert rc == 0
    bundle = FileRegistry(tmp_path / "registry").resolve("movierec", "champion")
    engine = Engine.load(bundle)
    assert engine.pseudonym_key_id == "k1"
    model_users = set(engine.user_ids.tolist())
    pids = {P1.pid(u) for u in ingested["users"]}
    assert model_users and model_users <= pids

    # the serving edge: a request names the user by id; the answer is their personalised list
    user = next(u for u in sorted(ingested["users"]) if P1.pid(u) in model_users)
    holder = type("Holder", (), {"current": engine})()

    def service(ring: KeyRing | None) -> Recommendations:
        return Recommendations(holder, store_factory=lambda: open_store(DataConfig(
            online_store_path=str(ingested["store"]))), demographics=None, deadline_ms=1000,
            cost_lambda=0.0, fold_in=True, history_limit=500, threads=0, erased_poll_s=0,
            pseudonyms=ring)

    answer = asyncio.run(service(KeyRing.parse(K1)).recommend(user, 10))
    store = SqliteOnlineStore(ingested["store"])
    expected = engine.rank(P1.pid(user), store.interactions(P1.pid(user)), 10)
    store.close()
    assert isinstance(expected, Answer) and not expected.cold_start
    assert answer.items == expected.items and not answer.cold_start
    # the same request without the key finds nobody: it is the pseudonym that names them
    assert asyncio.run(service(None).recommend(user, 10)).cold_start
    # a newer key first in the ring: the store under it, this model under its own key k1
    rotated = service(KeyRing.parse(f"{K2},{K1}"))
    ids = rotated.ids(user, engine)
    assert (ids.raw, ids.model, ids.store) == (user, P1.pid(user), P2.pid(user))


def test_erasure_by_id_removes_the_pseudonym(ingested, tmp_path) -> None:
    lake, store_path = tmp_path / "lake", tmp_path / "online.sqlite"
    shutil.copytree(ingested["lake"], lake)
    shutil.copy(ingested["store"], store_path)
    user = min(ingested["users"])
    assert P1.pid(user) in user_ids_in(lake)
    out = cli("erase", str(user), f"data.lake_root={lake}", f"data.online_store_path={store_path}",
              f"data.registry_root={tmp_path}/registry", keys=K1)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["users"] == [P1.pid(user)]  # the report, too, names the pseudonym
    assert P1.pid(user) not in user_ids_in(lake) and user_ids_in(lake)
    assert [(e["user_id"], e["key_id"]) for e in ledger_entries(lake)] == [(P1.pid(user), "k1")]
    store = SqliteOnlineStore(store_path)
    assert store.interactions(P1.pid(user)) == [] and store.erased_users() == {P1.pid(user)}
    store.close()
    # without the key the lake is not touched: the command says why
    out = cli("erase", str(user), f"data.lake_root={lake}", f"data.online_store_path={store_path}",
              keys=None)
    assert out.returncode == 2 and "no pseudonym key is configured" in out.stderr


def test_key_rotation_moves_lake_store_and_ledger(ingested, tmp_path) -> None:
    lake, store_path = tmp_path / "lake", tmp_path / "online.sqlite"
    shutil.copytree(ingested["lake"], lake)
    shutil.copy(ingested["store"], store_path)
    users = sorted(ingested["users"])
    erased = users[0]
    assert cli("erase", str(erased), f"data.lake_root={lake}",
               f"data.online_store_path={store_path}", keys=K1).returncode == 0
    create_snapshot(lake)  # under k1: linkable by whoever knows k1, so expired by the rotation
    rows_before = sum(pq.ParquetFile(p).metadata.num_rows for p in lake.rglob("*.parquet")
                      if "_snapshots" not in p.parts)
    ring = f"{K2},{K1}"
    args = ("rekey", f"data.lake_root={lake}", f"data.online_store_path={store_path}")

    # the ingestor refuses the lake until it is rekeyed
    out = cli("run", f"data.lake_root={lake}", "ingestor.metrics_port=0", keys=ring)
    assert out.returncode == 2 and "under key 'k1', the current key is 'k2'" in out.stderr
    out = cli(*args, keys=ring)  # a pseudonym cannot be reversed: the ids must come
    assert out.returncode == 2 and "--users" in out.stderr
    out = cli(*args, "--users", "-", keys=ring, stdin="\n".join(map(str, users[1:50])))
    assert out.returncode == 2 and "not among the --users ids; nothing was changed" in out.stderr
    assert lake_key_id(lake) == "k1"

    out = cli(*args, "--users", "-", keys=ring, stdin="\n".join(map(str, users[1:])) + "\n")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert (report["from_key"], report["to_key"], report["lake_rows_dropped"]) == ("k1", "k2", 0)
    assert report["online_store_users_dropped"] == 0 and len(report["snapshots_expired"]) == 1
    assert lake_key_id(lake) == "k2" and list_snapshots(lake) == []
    assert user_ids_in(lake) == {P2.pid(u) for u in users[1:]}
    assert sum(pq.ParquetFile(p).metadata.num_rows for p in lake.rglob("*.parquet")) == rows_before
    assert all(parse(line).user_id in {P2.pid(u) for u in users} for line in logged_lines(lake))
    store = SqliteOnlineStore(store_path)
    assert store.interactions(P2.pid(users[1])) and not store.interactions(P1.pid(users[1]))
    # the erased user, not among the ids, keeps their mark under k1: a k1 model knows them
    assert store.erased_users() == {P1.pid(erased)}
    store.close()
    # the erased user was not in the account system's list: their entry keeps key k1
    assert [(e["user_id"], e["key_id"]) for e in ledger_entries(lake)] == [(P1.pid(erased), "k1")]
    assert cli(*args, keys=ring).returncode == 0  # done already: nothing to do
    # a late event of theirs, pseudonymised under k2 now, is still recognised and dropped
    ingestor = ingestor_on(lake, ring)
    assert ingestor._erased_among({erased, users[1]}) == frozenset({P2.pid(erased)})


def ingestor_on(lake: Path, keys: str):
    from ingestor.app import Ingestor
    from ingestor.config import register_configs
    from movierec_core.config import compose

    register_configs()
    os.environ[KEYS_ENV] = keys
    try:
        return Ingestor(compose("ingestor", [f"data.lake_root={lake}"]))
    finally:
        os.environ.pop(KEYS_ENV)


def test_a_raw_lake_is_migrated_and_late_events_of_the_erased_stay_out(tmp_path) -> None:
    lake = tmp_path / "lake"
    lines, _ = simulator_stream(3_000, seed=9, invalid_rate=0, duplicate_rate=0)
    parsed = parse_batch(lines, [0] * len(lines), list(range(len(lines))), [0] * len(lines),
                         DEFAULT_SETTINGS)
    writer = LakeWriter(lake)
    for name, table in parsed.tables.items():
        writer.write_dated(name, table)
    raw = user_ids_in(lake)
    erased = min(raw)
    assert cli("erase", str(erased), f"data.lake_root={lake}", "ingestor.online_store=false",
               keys=None).returncode == 0  # erased while the ids were raw
    out = cli("rekey", f"data.lake_root={lake}", "ingestor.online_store=false", keys=K1)
    assert out.returncode == 0, out.stderr
    assert user_ids_in(lake) == {P1.pid(u) for u in raw - {erased}}
    assert ledger_entries(lake)[0]["user_id"] == P1.pid(erased)
    # the ingestor's batch path: a late event of the erased user never lands
    ingestor = ingestor_on(lake, K1)
    assert ingestor._erased_among({erased, erased + 1}) == frozenset({P1.pid(erased)})
