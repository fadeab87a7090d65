"""Router weights from a Kubernetes ConfigMap: every router replica follows one source of truth.

On a cluster without a mesh the router is the one component that decides which model serves a
request. With several replicas, weights posted to one replica's admin API would reach that
replica only; instead the weights live in a ConfigMap (key ``weights.json``) that the canary
controller (or ``kubectl``) patches and every replica polls through the API with its
service-account token. A change names the instant it takes effect (``effective_at``, a little
in the future), so all replicas switch on the same request time and an analysis that recomputes
each user's variant from the weights history agrees with what the routers did.

``weights.json``: ``{"weights": {"champion": 95, "challenger": 5}, "source": "canary",
"effective_at": "2026-12-01T10:00:05Z"}``. Upstream URLs never come from here: only variants
the router was configured with can get weight.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

log = logging.getLogger("experiments.weights")

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
API = "https://kubernetes.default.svc"
KEY = "weights.json"


@dataclass(frozen=True)
class WeightsUpdate:
    weights: dict[str, float]
    source: str
    effective_at: datetime | None  # None: at once
    version: str  # the ConfigMap's resourceVersion

    def delay_s(self, now: datetime) -> float:
        if self.effective_at is None:
            return 0.0
        return max(0.0, (self.effective_at - now).total_seconds())


def parse_payload(text: str, version: str = "") -> WeightsUpdate:
    """``weights.json`` -> update; ValueError with the reason when it is not usable."""
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{KEY} is not JSON: {exc}") from exc
    if not isinstance(body, dict) or not isinstance(body.get("weights"), dict):
        raise ValueError(f'{KEY} needs an object "weights": {{variant: percent}}')
    weights: dict[str, float] = {}
    for name, value in body["weights"].items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
            raise ValueError(f"weight of {name!r} must be a number in [0, 100], not {value!r}")
        weights[str(name)] = float(value)
    if sum(weights.values()) <= 0:
        raise ValueError("weights sum to zero")
    effective = body.get("effective_at")
    at = None
    if effective:
        try:
            at = datetime.fromisoformat(str(effective).replace("Z", "+00:00"))
        except ValueError as exc:
            raise ValueError(f"effective_at {effective!r} is not an ISO time") from exc
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
    return WeightsUpdate(weights, str(body.get("source", "configmap")), at, version)


def render_payload(weights: Mapping[str, float], source: str, delay_s: float = 5.0,
                   now: datetime | None = None) -> str:
    """What a writer (the canary controller) puts under ``weights.json``."""
    at = (now or datetime.now(UTC)) + timedelta(seconds=delay_s)
    return json.dumps({"weights": {k: float(v) for k, v in weights.items()}, "source": source,
                       "effective_at": at.isoformat().replace("+00:00", "Z")}, sort_keys=True)


class InClusterAPI:
    """The pod's own API credentials (service-account token, CA, namespace)."""

    def __init__(self, sa_dir: Path = SA_DIR, base_url: str = API, timeout_s: float = 5.0) -> None:
        self.sa_dir = sa_dir
        self.namespace = (sa_dir / "namespace").read_text().strip()
        self.client = httpx.Client(base_url=base_url, verify=str(sa_dir / "ca.crt"),
                                   timeout=timeout_s)

    def _headers(self) -> dict[str, str]:
        # the kubelet rotates the projected token: read it per call
        return {"Authorization": f"Bearer {(self.sa_dir / 'token').read_text().strip()}"}

    def get_configmap(self, name: str) -> dict[str, Any]:
        resp = self.client.get(f"/api/v1/namespaces/{self.namespace}/configmaps/{name}",
                               headers=self._headers())
        resp.raise_for_status()
        return resp.json()

    def deployment_available(self, name: str) -> bool:
        """At least one ready replica of ``name``'s current version (a canary predictor)."""
        resp = self.client.get(f"/apis/apps/v1/namespaces/{self.namespace}/deployments/{name}",
                               headers=self._headers())
        if resp.status_code == 404:
            return False
        resp.raise_for_status()
        status = resp.json().get("status", {})
        return int(status.get("availableReplicas") or 0) >= 1 and \
            int(status.get("updatedReplicas") or 0) >= 1

    def patch_configmap(self, name: str, data: Mapping[str, str]) -> dict[str, Any]:
        resp = self.client.patch(f"/api/v1/namespaces/{self.namespace}/configmaps/{name}",
                                 headers={**self._headers(),
                                          "Content-Type": "application/merge-patch+json"},
                                 content=json.dumps({"data": dict(data)}))
        resp.raise_for_status()
        return resp.json()


class ConfigMapWeights:
    """Polls the ConfigMap and hands each new update to ``apply`` at its effective instant."""

    def __init__(self, name: str, apply: Callable[[WeightsUpdate], None], api: Any,
                 poll_s: float = 2.0, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.name, self.apply, self.api = name, apply, api
        self.poll_s, self.clock, self.sleep = poll_s, clock, sleep
        self.version = ""
        self.errors = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll_once(self) -> WeightsUpdate | None:
        """Fetch; the update when the ConfigMap changed and is valid (applied when due)."""
        try:
            cm = self.api.get_configmap(self.name)
        except (httpx.HTTPError, OSError) as exc:
            self.errors += 1
            log.warning("weights ConfigMap %s unreadable: %s", self.name, exc)
            return None
        version = str(cm.get("metadata", {}).get("resourceVersion", ""))
        if version == self.version:
            return None
        self.version = version
        try:
            update = parse_payload((cm.get("data") or {}).get(KEY, ""), version)
        except ValueError as exc:
            self.errors += 1
            log.error("weights ConfigMap %s (version %s) ignored: %s", self.name, version, exc)
            return None
        delay = update.delay_s(self.clock())
        if delay > 0:
            self.sleep(delay)
        try:
            self.apply(update)
        except ValueError as exc:  # e.g. a variant the router was not configured with
            self.errors += 1
            log.error("weights ConfigMap %s (version %s) refused: %s", self.name, version, exc)
            return None
        return update

    def start(self) -> None:
        self.poll_once()
        self._thread = threading.Thread(target=self._run, name="weights-configmap", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.poll_once()

    def stop(self) -> None:
        self._stop.set()
