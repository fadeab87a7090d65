"""Pseudonymous user ids (issue 21): the HMAC, the key ring, the lake's key marker, and the
ingest batch's pseudonymisation, which must equal parsing lines that carried the pseudonyms."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingestor.pipeline import map_user_ids, parse_batch, pseudonymise
from model_server.provenance import ProvenanceLog
from movierec_core.config import DataConfig
from movierec_core.events import (
    DEFAULT_SETTINGS,
    account_line,
    rating_line,
    recommendation_line,
    watch_line,
)
from movierec_core.pseudonym import (
    KEYS_ENV,
    KeyRing,
    PseudonymKeyError,
    check_lake_key,
    lake_key_id,
    pseudonym,
)

SECRET = b"0123456789abcdef-test-only"
RING = KeyRing.parse(f"k2={'x' * 20}, k1={SECRET.decode()}")


def test_pseudonym_is_the_first_59_bits_of_the_hmac() -> None:
    digest = hmac.new(SECRET, b"42", hashlib.sha256).digest()
    assert pseudonym(SECRET, 42) == int.from_bytes(digest[:8], "big") >> 5
    assert pseudonym(SECRET, 42) != pseudonym(b"another-secret-of-16", 42)
    assert pseudonym(SECRET, 42) != pseudonym(SECRET, 43)


@given(st.lists(st.integers(0, 10**18), max_size=50))
def test_column_mapping_equals_the_scalar_one(users: list[int]) -> None:
    p = RING.get("k1")
    column = map_user_ids("ratings", pa.table({"user_id": pa.array(users, pa.int64())}),
                          p.pid).column("user_id")
    assert column.to_pylist() == [pseudonym(SECRET, u) for u in users]
    assert all(0 <= v < 10**18 for v in column.to_pylist())  # a valid id (EVENTS.md)


def test_ring_current_key_is_the_first_and_secrets_never_print() -> None:
    assert RING.current_id == "k2" and RING.key_ids == ["k2", "k1"]
    assert RING.current.pid(7) == pseudonym(b"x" * 20, 7)
    assert SECRET.decode() not in repr(RING) + repr(RING.get("k1"))
    assert RING.get(None) is None
    with pytest.raises(PseudonymKeyError, match="'k9' is not in the key ring"):
        RING.get("k9")
    assert not KeyRing.parse("") and KeyRing.parse("").current is None


@pytest.mark.parametrize(("text", "message"), [
    ("k1", "expected '<key id>=<secret>'"),
    ("k1=short", "at least 16 bytes"),
    (f"k1={'a' * 16},k1={'b' * 16}", "appears twice"),
    (f"k 1={'a' * 16}", "letters, digits"),
])
def test_bad_key_rings_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(PseudonymKeyError, match=message):
        KeyRing.parse(text)


def test_keys_come_from_the_environment_or_a_file(tmp_path, monkeypatch) -> None:
    path = tmp_path / "keys"
    path.write_text(f"# rotated 2026-12\nnew={'n' * 16}\nold={'o' * 16}\n")
    monkeypatch.delenv(KEYS_ENV, raising=False)
    assert KeyRing.from_config(DataConfig(pseudonym_keys_file=str(path))).key_ids == ["new", "old"]
    monkeypatch.setenv(KEYS_ENV, f"env={'e' * 16}")
    assert KeyRing.from_config(DataConfig(pseudonym_keys_file=str(path))).key_ids == ["env"]
    monkeypatch.delenv(KEYS_ENV)
    with pytest.raises(PseudonymKeyError, match="cannot read the pseudonym keys file"):
        KeyRing.from_config(DataConfig(pseudonym_keys_file=str(tmp_path / "missing")))


def test_lake_marker(tmp_path) -> None:
    lake = tmp_path / "lake"
    check_lake_key(lake, KeyRing())  # raw ids into an empty lake: nothing to say
    assert lake_key_id(lake) is None
    check_lake_key(lake, RING)  # an empty lake takes the current key
    assert lake_key_id(lake) == "k2"
    check_lake_key(lake, RING)
    with pytest.raises(PseudonymKeyError, match="no pseudonym key is configured"):
        check_lake_key(lake, KeyRing())
    with pytest.raises(PseudonymKeyError, match="under key 'k2', the current key is 'k1'.*rekey"):
        check_lake_key(lake, KeyRing.parse(f"k1={SECRET.decode()}"))
    raw = tmp_path / "raw"
    (raw / "ratings").mkdir(parents=True)
    pq.write_table(pa.table({"user_id": [1]}), raw / "ratings" / "x.parquet")
    with pytest.raises(PseudonymKeyError, match="holds raw user ids.*rekey"):
        check_lake_key(raw, RING)


def _lines(users: list[int]) -> list[bytes]:
    t0 = datetime(2026, 3, 1, 20, 0)
    out = []
    for i, u in enumerate(users):
        t = (t0 + timedelta(seconds=i)).isoformat()
        out += [watch_line(t, u, "heat+1995", i), rating_line(t, u, "heat+1995", 4),
                account_line(t, u),
                recommendation_line(t, u, "router:8082", 200, ["heat+1995", "up+2009"], "", 9)]
    return [line.encode() for line in out] + [b"2026-03-01T20:00:00,12,GET /nonsense"]


@given(st.lists(st.integers(0, 10**12), min_size=1, max_size=20))
def test_a_pseudonymised_batch_equals_the_batch_of_lines_with_pseudonyms(users) -> None:
    p = RING.current

    def parsed(lines):
        n = len(lines)
        return parse_batch(lines, [0] * n, list(range(n)), [0] * n, DEFAULT_SETTINGS)

    got = pseudonymise(parsed(_lines(users)), p)
    want = parsed(_lines([p.pid(u) for u in users]))
    assert set(got.tables) == set(want.tables)
    for name, table in want.tables.items():
        expected = table.drop_columns(["event_id"])  # the line id hashes the raw line
        assert got.tables[name].drop_columns(["event_id"]).equals(expected), name
    assert got.events == want.events and got.user_ids == want.user_ids
    assert [r.rejection.line for r in got.rejected] == [b"2026-03-01T20:00:00,12,GET /nonsense"]


def test_provenance_names_users_by_pseudonym(tmp_path) -> None:
    log = ProvenanceLog(tmp_path / "provenance.jsonl", pseudonyms=RING.current,
                        flush_interval_s=0.01)
    log.log("r1", 42, ["heat+1995"], {"version": "v1"}, "recommend", "model")
    log.close()
    record = json.loads((tmp_path / "provenance.jsonl").read_text().splitlines()[0])
    assert record["user_id"] == RING.current.pid(42) != 42
