"""What every HTTP service of the platform shares to be safe to expose: the admin token check
(with an audit line per admin call) and a per-client token-bucket rate limit.

Admin token: ``MOVIEREC_ADMIN_TOKEN`` in the environment (the chart sets it from a Kubernetes
Secret with ``secretKeyRef``), or the first line of the file a service's ``admin_token_file``
names (a mounted Secret; re-read when the file changes, so a rotated Secret takes effect
without a restart). A request is admitted with ``Authorization: Bearer <token>`` (constant-time
comparison); without a token configured, only clients on the loopback interface are admitted
(a developer's machine), every other caller gets 403 "admin disabled". Missing credentials: 401,
wrong ones: 403.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

audit_log = logging.getLogger("movierec.audit")

TOKEN_ENV = "MOVIEREC_ADMIN_TOKEN"


@dataclass(frozen=True)
class AuthResult:
    status: int  # 0: admitted; else the HTTP status to answer (401 or 403)
    message: str
    caller: str  # who, for the audit line: "token:<sha256 prefix>", "loopback", or the peer

    @property
    def ok(self) -> bool:
        return self.status == 0


def is_loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


class AdminAuth:
    """Checks the ``Authorization`` header of admin calls; see the module's docstring."""

    def __init__(self, token: str | None = None, token_file: str | Path | None = None,
                 allow_loopback_without_token: bool = True) -> None:
        self._fixed = token or None
        self._file = Path(token_file) if token_file else None
        self._file_state: tuple[float, int] | None = None
        self._file_token: str | None = None
        self.allow_loopback = allow_loopback_without_token
        self._lock = threading.Lock()

    @classmethod
    def from_environment(cls, token_file: str = "", *,
                         allow_loopback_without_token: bool = True) -> AdminAuth:
        return cls(os.environ.get(TOKEN_ENV) or None, token_file or None,
                   allow_loopback_without_token)

    def token(self) -> str | None:
        if self._fixed:
            return self._fixed
        if self._file is None:
            return None
        with self._lock:
            try:
                st = self._file.stat()
                state = (st.st_mtime, st.st_size)
                if state != self._file_state:
                    lines = self._file.read_text().splitlines()
                    self._file_token = lines[0].strip() if lines and lines[0].strip() else None
                    self._file_state = state
            except OSError:
                self._file_token, self._file_state = None, None
            return self._file_token

    def check(self, authorization: str | None, client_host: str | None) -> AuthResult:
        token = self.token()
        if token is None:
            if self.allow_loopback and is_loopback(client_host):
                return AuthResult(0, "", "loopback")
            return AuthResult(403, "admin disabled: no admin token is configured "
                                   f"({TOKEN_ENV} or the service's admin_token_file)",
                              client_host or "?")
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            return AuthResult(401, "admin endpoints need 'Authorization: Bearer <token>'",
                              client_host or "?")
        if not hmac.compare_digest(given.strip().encode(), token.encode()):
            return AuthResult(403, "wrong admin token", client_host or "?")
        return AuthResult(0, "", "token:" + hashlib.sha256(token.encode()).hexdigest()[:8])


    def admit(self, service: str, method: str, path: str, authorization: str | None,
              client_host: str | None, audit_admitted: bool = True) -> AuthResult:
        """:meth:`check` and its audit line: every refusal, and an admitted call unless its
        handler audits it itself once it knows what it changed (``audit_admitted=False``)."""
        result = self.check(authorization, client_host)
        if not result.ok or audit_admitted:
            audit(service, method, path, result, result.status or 200, client_host)
        return result


def audit(service: str, method: str, path: str, result: AuthResult, status: int,
          client_host: str | None, detail: str = "") -> None:
    """One line per admin call, admitted or not: who, from where, what, the outcome."""
    audit_log.info("audit service=%s caller=%s client=%s %s %s -> %d%s", service, result.caller,
                   client_host or "?", method, path, status, f" {detail}" if detail else "")


class RateLimiter:
    """A token bucket per client: ``rate`` requests per second on average, bursts of ``burst``.
    ``allow(client)`` returns 0.0 when the request may go, else the seconds until it could
    (the ``Retry-After``). Clients in ``exempt`` (addresses or CIDR blocks, e.g. the cluster's
    pod network for internal callers) are never limited. At most ``max_clients`` buckets are
    kept (least recently seen evicted: a full bucket again, which only errs on the lenient
    side). Thread-safe."""

    def __init__(self, rate: float, burst: float, exempt: Iterable[str] = (),
                 max_clients: int = 100_000, clock=time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate limit: rate must be > 0 and burst >= 1")
        self.rate, self.burst = float(rate), float(burst)
        self.exempt = [ipaddress.ip_network(e, strict=False) for e in exempt]
        self.max_clients = max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()
        self._lock = threading.Lock()

    def is_exempt(self, client: str) -> bool:
        if not self.exempt:
            return False
        try:
            address = ipaddress.ip_address(client.split("%", 1)[0])
        except ValueError:
            return False
        return any(address in net for net in self.exempt)

    def allow(self, client: str) -> float:
        if self.is_exempt(client):
            return 0.0
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(client)
            if bucket is None:
                bucket = self._buckets[client] = [self.burst, now]
                if len(self._buckets) > self.max_clients:
                    self._buckets.popitem(last=False)
            else:
                self._buckets.move_to_end(client)
                bucket[0] = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
                bucket[1] = now
            if bucket[0] >= 1.0:
                bucket[0] -= 1.0
                return 0.0
            return (1.0 - bucket[0]) / self.rate


def rate_limiter(rate: float, burst: float, exempt: Iterable[str] = ()) -> RateLimiter | None:
    """A limiter, or None when ``rate`` is 0 (off)."""
    return RateLimiter(rate, max(burst, 1.0), exempt) if rate > 0 else None
