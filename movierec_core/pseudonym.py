"""Pseudonymous user ids: a keyed HMAC of the id is what the platform stores.

With a key ring configured, the ingestor replaces every user id by its pseudonym before
anything is written (lake, online store, erasure ledger, logs), the trainer learns on
pseudonyms only (a bundle records which key: ``pseudonym_key_id`` in its metadata), and the
model server turns the id of a request into its pseudonym at the serving edge, the only place a
real id is met. Nothing maps a pseudonym back: the platform holds no table from pseudonyms to
ids, and needs none (erasure and serving go forward, id → pseudonym).

A pseudonym is the first 59 bits of HMAC-SHA256(key, decimal id): a non-negative integer of at
most 18 digits, like every user id the telemetry contract admits, so every column, index, API
and stored telemetry line (a logged recommendation line carries its pseudonym) stays valid.
1M users collide with probability ~9·10⁻⁷.

Keys: ``MOVIEREC_PSEUDONYM_KEYS`` in the environment (the chart sets it from a Secret with
``secretKeyRef``) or the file ``data.pseudonym_keys_file`` names (a mounted Secret), holding
``<key id>=<secret>`` entries separated by commas or newlines, the **current key first**. A
secret of fewer than 16 bytes is refused. Without keys, ids are stored as they come (a
developer's machine; ``make demo`` and the tests' default).

Rotation (docs/security.md): put the new key first and keep the old one after it, restart the
ingestor and the model servers, and run ``python -m ingestor rekey --users FILE`` with the ids
of the account system: the lake, the online store and the erasure ledger move to the new key;
the next training run produces a bundle with the new key id. A bundle trained under an older
key still in the ring keeps being served (the model server pseudonymises a request with the
bundle's key for the model and with the current key for the online store).

The lake records its key in ``<lake>/_pseudonym.json``; the ingestor refuses to write a lake
pseudonymised with another key (or none) than its current one.
"""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

KEYS_ENV = "MOVIEREC_PSEUDONYM_KEYS"
MARKER = "_pseudonym.json"
MIN_SECRET_BYTES = 16


class PseudonymKeyError(ValueError):
    """The key ring or the lake's key marker is unusable; the message says why."""


def pseudonym(key: bytes, user_id: int) -> int:
    """The pseudonym of ``user_id`` under ``key`` (see the module's docstring)."""
    digest = hmac.digest(key, b"%d" % user_id, "sha256")
    return int.from_bytes(digest[:8], "big") >> 5  # its first 59 bits: < 2**59 < 10**18


class Pseudonymizer:
    """``pid(user_id)`` under one key, memoised (a bounded cache: the active users)."""

    def __init__(self, key_id: str, secret: bytes, cache_size: int = 1 << 20) -> None:
        self.key_id = key_id
        self._secret = secret
        self._cache: dict[int, int] = {}
        self._cache_size = cache_size

    def __repr__(self) -> str:  # never the secret
        return f"Pseudonymizer(key_id={self.key_id!r})"

    def pid(self, user_id: int) -> int:
        cached = self._cache.get(user_id)
        if cached is None:
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            cached = self._cache[user_id] = pseudonym(self._secret, int(user_id))
        return cached

    def pids(self, user_ids: Iterable[int]) -> list[int]:
        pid = self.pid
        return [pid(u) for u in user_ids]


class KeyRing:
    """Named keys, the current one first. Empty: pseudonymisation is off."""

    def __init__(self, keys: list[tuple[str, bytes]] | None = None) -> None:
        self._keys = dict(keys or [])
        self.current_id = keys[0][0] if keys else None
        self._by_id = {kid: Pseudonymizer(kid, secret) for kid, secret in self._keys.items()}

    def __repr__(self) -> str:
        return f"KeyRing(keys={list(self._keys)!r})"

    def __bool__(self) -> bool:
        return bool(self._keys)

    @property
    def key_ids(self) -> list[str]:
        return list(self._keys)

    @property
    def current(self) -> Pseudonymizer | None:
        return self._by_id[self.current_id] if self.current_id else None

    def get(self, key_id: str | None) -> Pseudonymizer | None:
        """The pseudonymizer of ``key_id``; None for None (raw ids); KeyError if unknown."""
        if key_id is None:
            return None
        try:
            return self._by_id[key_id]
        except KeyError:
            raise PseudonymKeyError(
                f"pseudonym key {key_id!r} is not in the key ring (have {self.key_ids})") from None

    @classmethod
    def parse(cls, text: str) -> KeyRing:
        keys: list[tuple[str, bytes]] = []
        for n, entry in enumerate(e.strip() for e in text.replace("\n", ",").split(",")):
            if not entry or entry.startswith("#"):
                continue
            key_id, sep, secret = entry.partition("=")
            key_id, secret = key_id.strip(), secret.strip()
            if not sep or not key_id or not secret:
                raise PseudonymKeyError(f"pseudonym key entry {n + 1}: expected "
                                        "'<key id>=<secret>'")
            if not key_id.replace("-", "").replace("_", "").isalnum():
                raise PseudonymKeyError(f"pseudonym key id {key_id!r}: letters, digits, - and _")
            if len(secret.encode()) < MIN_SECRET_BYTES:
                raise PseudonymKeyError(f"pseudonym key {key_id!r}: the secret must have at "
                                        f"least {MIN_SECRET_BYTES} bytes")
            if key_id in dict(keys):
                raise PseudonymKeyError(f"pseudonym key id {key_id!r} appears twice")
            keys.append((key_id, secret.encode()))
        return cls(keys)

    @classmethod
    def from_config(cls, data_cfg) -> KeyRing:
        """From ``MOVIEREC_PSEUDONYM_KEYS`` or ``data.pseudonym_keys_file`` (see above)."""
        text = os.environ.get(KEYS_ENV, "")
        path = str(getattr(data_cfg, "pseudonym_keys_file", "") or "")
        if not text and path:
            try:
                text = Path(path).read_text()
            except OSError as exc:
                raise PseudonymKeyError(f"cannot read the pseudonym keys file {path}: "
                                        f"{exc.strerror}") from None
        return cls.parse(text)


# ------------------------------------------------------------------------------ lake marker
def lake_key_id(lake_root: Path | str) -> str | None:
    """The key the lake's user ids are pseudonymised with; None: raw ids (or an empty lake)."""
    path = Path(lake_root) / MARKER
    if not path.is_file():
        return None
    return json.loads(path.read_text())["key_id"]


def write_lake_key(lake_root: Path | str, key_id: str | None) -> None:
    path = Path(lake_root) / MARKER
    if key_id is None:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"key_id": key_id, "since": datetime.now(UTC).isoformat()}))
    os.replace(tmp, path)


def lake_has_data(lake_root: Path | str) -> bool:
    root = Path(lake_root)
    return root.is_dir() and any(p.suffix == ".parquet" for p in root.rglob("*.parquet"))


def check_lake_key(lake_root: Path | str, ring: KeyRing) -> None:
    """Before writing: the lake must be pseudonymised with the ring's current key (an empty
    lake is marked with it). Raises :class:`PseudonymKeyError` with what to do otherwise."""
    have = lake_key_id(lake_root)
    want = ring.current_id
    if have == want:
        return
    if have is None and want is not None and not lake_has_data(lake_root):
        write_lake_key(lake_root, want)
        return
    if want is None:
        raise PseudonymKeyError(
            f"the lake at {lake_root} holds pseudonyms under key {have!r} but no pseudonym key "
            f"is configured (MOVIEREC_PSEUDONYM_KEYS or data.pseudonym_keys_file)")
    raise PseudonymKeyError(
        f"the lake at {lake_root} holds {'raw user ids' if have is None else f'pseudonyms under key {have!r}'}"
        f", the current key is {want!r}: run `python -m ingestor rekey` first")
