"""Online drift beside the model server: KServe payload-logger CloudEvents in, metrics out.

The InferenceService's ``spec.predictor.logger`` (``mode: all``, ``url:`` this service) posts
every V1 request and response as a CloudEvent in binary mode: headers ``ce-type:
org.kubeflow.serving.inference.request|response``, ``ce-id`` (shared by a request and its
response), ``ce-source``, ``ce-specversion``, ..., the body being the JSON the model server
received or returned (``{"instances": [{"user_id": 1}]}`` -> ``{"predictions": [{"user_id": 1,
"items": [...]}]}``). Structured mode (``application/cloudevents+json``) is accepted too.

Units: one per requested user (demographics from the lake's users table, ``unknown`` for users
not in it, plus whether the user is known at all: a flood of new users is drift too) and one
per returned list (the same position-weighted popularity score as the batch job, popularity
taken from the first half of the reference lists). The reference is the first
``reference_size`` units of each kind; the current window the latest ``window_size``. Every
``check_every`` payloads the same TabularDrift detectors run and the metrics are updated.
"""

from __future__ import annotations

import json
import threading
from collections import Counter, deque
from collections.abc import Iterable
from typing import Any

import pandas as pd
from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from drift import metrics
from drift.detectors import DetectorResult, DriftRun, compare_tables
from drift.features import UNKNOWN, list_score

REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
DETECTORS = ("online_requests", "online_responses")


def request_user_ids(body: Any) -> list[int]:
    """User ids of a V1 (``instances``) or V2 (``inputs`` named user_id) request body."""
    ids: list[int] = []
    if not isinstance(body, dict):
        return ids
    for inst in body.get("instances") or []:
        uid = inst.get("user_id") if isinstance(inst, dict) else inst
        if isinstance(uid, int | str) and str(uid).isdigit():
            ids.append(int(uid))
    for tensor in body.get("inputs") or []:
        if isinstance(tensor, dict) and tensor.get("name") == "user_id":
            ids.extend(int(u) for u in tensor.get("data") or [] if str(u).isdigit())
    return ids


def response_lists(body: Any) -> list[list[str]]:
    """Recommended id lists of a V1 response (``predictions``: ``{"items": [...]}`` or lists)."""
    lists: list[list[str]] = []
    if not isinstance(body, dict):
        return lists
    for pred in body.get("predictions") or []:
        items = pred.get("items") if isinstance(pred, dict) else pred
        if isinstance(items, list) and items:
            lists.append([str(i) for i in items])
    return lists


class OnlineDriftMonitor:
    """Reference and sliding current windows of payload units, and the detectors over them."""

    def __init__(
        self,
        users: pd.DataFrame | None = None,
        reference_size: int = 500,
        window_size: int = 500,
        check_every: int = 100,
        p_val: float = 0.01,
        correction: str = "bonferroni",
        min_samples: int = 30,
        seed: int = 0,
    ) -> None:
        self.users: dict[int, tuple[float, str, str]] = {}
        if users is not None and len(users):
            for uid, age, gender, occ in zip(users["user_id"], users["age"], users["gender"],
                                              users["occupation"], strict=True):
                self.users[int(uid)] = (float(age), str(gender), str(occ))
        self.reference_size, self.check_every = reference_size, check_every
        self.p_val, self.correction = p_val, correction
        self.min_samples, self.seed = min_samples, seed
        self.ref_requests: list[dict] = []
        self.ref_lists: list[list[str]] = []
        self.cur_requests: deque[dict] = deque(maxlen=window_size)
        self.cur_lists: deque[list[str]] = deque(maxlen=window_size)
        self.since_check = 0
        self.last_run: DriftRun | None = None
        self._lock = threading.Lock()

    def _user_row(self, uid: int) -> dict:
        age, gender, occ = self.users.get(uid, (-1.0, UNKNOWN, UNKNOWN))
        return {"age": age, "gender": gender, "occupation": occ,
                "known_user": "yes" if uid in self.users else "no"}

    def observe(self, ce_type: str, body: Any) -> int:
        """Take one payload; returns the number of units it contributed."""
        with self._lock:
            if ce_type == REQUEST_TYPE:
                units: Iterable = [self._user_row(u) for u in request_user_ids(body)]
                ref, cur = self.ref_requests, self.cur_requests
            elif ce_type == RESPONSE_TYPE:
                units = response_lists(body)
                ref, cur = self.ref_lists, self.cur_lists
            else:
                return 0
            n = 0
            for unit in units:
                n += 1
                (ref if len(ref) < self.reference_size else cur).append(unit)
            self.since_check += 1
            return n

    def ready(self) -> bool:
        return (len(self.ref_requests) >= self.reference_size
                or len(self.ref_lists) >= self.reference_size)

    def maybe_check(self) -> DriftRun | None:
        if self.since_check < self.check_every or not self.ready():
            return None
        return self.check()

    def check(self) -> DriftRun:
        with self._lock:
            self.since_check = 0
            ref_req, cur_req = list(self.ref_requests), list(self.cur_requests)
            ref_lists, cur_lists = list(self.ref_lists), list(self.cur_lists)
        budget = self.p_val / len(DETECTORS)
        results: dict[str, DetectorResult] = {}
        results["online_requests"] = compare_tables(
            "online_requests", pd.DataFrame(ref_req, columns=["age", "gender", "occupation",
                                                                "known_user"]),
            pd.DataFrame(cur_req, columns=["age", "gender", "occupation", "known_user"]),
            budget, self.correction, self.min_samples, seed=self.seed)
        half = len(ref_lists) // 2
        counts = Counter(m for ids in ref_lists[:half] for m in set(ids))
        ranked = [m for m, _ in counts.most_common()]
        popularity = {m: i / len(ranked) for i, m in enumerate(ranked)}

        def frame(lists: list[list[str]]) -> pd.DataFrame:
            return pd.DataFrame({"score": [list_score(ids, popularity) for ids in lists],
                                 "list_length": [float(len(ids)) for ids in lists]})

        results["online_responses"] = compare_tables(
            "online_responses", frame(ref_lists[half:]), frame(cur_lists), budget,
            self.correction, self.min_samples, seed=self.seed)
        run = DriftRun(results, self.p_val, self.correction)
        metrics.record_run(run, None)
        self.last_run = run
        return run

    def status(self) -> dict[str, Any]:
        run = self.last_run
        return {
            "reference": {"requests": len(self.ref_requests), "responses": len(self.ref_lists)},
            "current": {"requests": len(self.cur_requests), "responses": len(self.cur_lists)},
            "drift": None if run is None else run.is_drift,
            "detectors": {} if run is None else {k: v.to_dict() for k, v in
                                                 run.detectors.items()},
        }


def create_app(monitor: OnlineDriftMonitor):
    """The FastAPI app: ``POST /`` (CloudEvents), ``GET /metrics``, ``/healthz``, ``/status``."""
    app = FastAPI(title="movierec online drift")

    def _kind(ce_type: str) -> str:
        return {REQUEST_TYPE: "request", RESPONSE_TYPE: "response"}.get(ce_type, "other")

    @app.post("/")
    @app.post("/events")
    async def receive(request: Request) -> Response:
        raw = await request.body()
        content_type = request.headers.get("content-type", "")
        try:
            body = json.loads(raw) if raw else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            metrics.ONLINE_PAYLOADS.labels(type="other", outcome="rejected").inc()
            return Response("body is not JSON\n", status_code=400, media_type="text/plain")
        ce_type = request.headers.get("ce-type", "")
        if content_type.startswith("application/cloudevents+json") and isinstance(body, dict):
            ce_type, body = body.get("type", ""), body.get("data")
            if isinstance(body, str):
                try:
                    body = json.loads(body)
                except json.JSONDecodeError:
                    body = None
        if not ce_type:
            metrics.ONLINE_PAYLOADS.labels(type="other", outcome="rejected").inc()
            return Response("missing ce-type\n", status_code=400, media_type="text/plain")
        monitor.observe(ce_type, body)
        metrics.ONLINE_PAYLOADS.labels(type=_kind(ce_type), outcome="accepted").inc()
        await run_in_threadpool(monitor.maybe_check)
        return Response(status_code=202)

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
        return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/status")
    def status() -> dict[str, Any]:
        return monitor.status()

    return app


def serve(cfg) -> None:
    """Run the online drift service (``python -m drift online``)."""
    import uvicorn

    users = None
    if cfg.drift.online.load_users:
        from drift.window import load_catalog

        users = load_catalog(cfg.data.lake_root).users
    on = cfg.drift.online
    monitor = OnlineDriftMonitor(
        users, on.reference_size, on.window_size, on.check_every, cfg.drift.p_val,
        cfg.drift.correction, cfg.drift.min_samples, cfg.drift.seed)
    uvicorn.run(create_app(monitor), host=on.host, port=on.port, log_level="warning")
