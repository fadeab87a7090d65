"""Fuzz: at least 1,000,000 random and mutated lines through the parser, zero exceptions escaping."""

from __future__ import annotations

import random

import pytest

from movierec_core import events as events_module
from movierec_core.invalid import InvalidKind, make_invalid

SEEDS = [
    b"2025-03-02T14:07:33,48211,GET /data/m/the+lion+king+1994/57.mpg",
    b"2025-03-02T14:09:02.41,48211,GET /rate/the+lion+king+1994=4",
    b"2025-03-02T14:10:00,990017,GET /create_account",
    b"2025-03-02T14:11:12.004,48211,recommendation request rec-1.svc:8082, status 200, "
    b"result: toy+story+1995, heat+1995, the+lion+king+1994, 87 ms",
    b"2025-03-02T14:11:13,48212,recommendation request rec-1.svc:8082, status 0, "
    b"result: java.net.SocketTimeoutException: Read timed out, 600 ms",
]
TOKENS = [b",", b", ", b"/", b"=", b".mpg", b"-", b" ms", b"status ", b"result: ", b"\xff", b"\x00",
          b"\xc3\xa9", b"\n", b"T", b":", b".", b"9" * 30, b"GET /", b"recommendation request "]


def _mutate(rng: random.Random, line: bytes) -> bytes:
    data = bytearray(line)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        pos = rng.randrange(len(data) + 1)
        if op == 0 and data:  # flip a byte
            data[min(pos, len(data) - 1)] = rng.randrange(256)
        elif op == 1:  # insert a token
            data[pos:pos] = rng.choice(TOKENS)
        elif op == 2 and data:  # delete a span
            del data[pos:pos + rng.randint(1, 8)]
        elif op == 3:  # truncate
            del data[pos:]
        else:  # duplicate a span
            data[pos:pos] = data[pos:pos + rng.randint(1, 16)]
    return bytes(data)


@pytest.mark.slow
def test_one_million_random_and_mutated_lines_never_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    # Call the inner parser so that an exception would escape instead of being turned into a
    # rejection by parse()'s safety net: the fuzz checks the parser itself never raises.
    inner = events_module._parse
    settings = events_module.DEFAULT_SETTINGS
    rng = random.Random(20261129)
    kinds = list(InvalidKind)
    counts = {"event": 0, "rejection": 0}
    n = 1_000_000
    for i in range(n):
        r = i % 10
        if r < 6:
            line = _mutate(rng, rng.choice(SEEDS))
        elif r < 8:
            line = rng.randbytes(rng.randrange(120))
        elif r < 9:
            line = make_invalid(rng.choice(kinds[:-1]), rng, user_id=rng.randrange(10**7))
        else:
            line = rng.choice(SEEDS)
        result = inner(line, settings)
        counts["rejection" if isinstance(result, events_module.Rejection) else "event"] += 1
    # a megabyte line or two, too
    for _ in range(3):
        inner(make_invalid(InvalidKind.HUGE_LINE, rng), settings)
    assert counts["event"] + counts["rejection"] == n
    assert counts["event"] >= n // 10  # the unmutated seeds alone
    assert counts["rejection"] > n // 2
