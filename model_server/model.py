"""The KServe model: ``load()`` does the I/O, V1/V2 ``predict`` ranks via the shared service.

V1 ``POST /v1/models/<name>:predict``::

    {"instances": [{"user_id": 1, "k": 20}, {"user_id": 2}]}
    → {"predictions": [{"user_id": 1, "items": ["m1", ...]}, ...], "model_version": "..."}

V2 ``POST /v2/models/<name>/infer``: input ``user_id`` (integer datatype, shape [N]), optional
input ``k`` (integer, shape [1] for all users or [N]); output ``items`` (BYTES, shape [N]), each
element the user's movie ids joined by ``,`` best first, as ``/recommend`` answers.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from kserve import InferOutput, InferRequest, InferResponse, Model
from kserve.errors import InvalidInput, ModelNotReady

from model_server.engine import Answer, Engine
from model_server.metrics import REQUEST_DURATION, REQUESTS
from model_server.provenance import ProvenanceLog
from model_server.service import Recommendations
from model_server.swap import ModelHolder

MAX_INSTANCES = 1000
_INT_TYPES = {"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}
MAX_USER_ID = 2**63 - 1


@dataclass(frozen=True)
class Query:
    """A decoded V1/V2 request: user ids and list sizes, in order."""

    protocol: str  # v1 | v2
    user_ids: list[int]
    ks: list[int]
    request_id: str
    started: float


def parse_user_id(value: Any) -> int:
    """A non-negative 64-bit user id from an int or a string of ASCII digits; ValueError
    otherwise (:class:`OverflowError` for digits beyond 64 bits)."""
    if isinstance(value, bool):
        raise ValueError("user id must be an integer, not a boolean")
    if isinstance(value, (int, np.integer)):
        user_id = int(value)
    elif isinstance(value, str) and value.isascii() and value.isdigit():
        if len(value) > 30:
            raise OverflowError("user id beyond 64 bits")
        user_id = int(value)
    else:
        raise ValueError(f"user id must be a non-negative integer, got {value!r}"[:200])
    if user_id < 0:
        raise ValueError(f"user id must be a non-negative integer, got {user_id}")
    if user_id > MAX_USER_ID:
        raise OverflowError(f"user id beyond 64 bits: {user_id}")
    return user_id


class MovierecModel(Model):
    """``kserve.Model`` over a :class:`ModelHolder` of :class:`Engine` versions."""

    def __init__(self, name: str, holder: ModelHolder[Engine], service: Recommendations,
                 provenance: ProvenanceLog | None, *, default_k: int = 20,
                 max_k: int = 100) -> None:
        super().__init__(name, return_response_headers=True)
        self.holder = holder
        self.service = service
        self.provenance = provenance
        self.default_k = default_k
        self.max_k = max_k
        self._request_children: dict[tuple[str, str, str], Any] = {}
        self._duration_children: dict[str, Any] = {}

    def load(self, wait: bool = False) -> bool:
        """Load the configured version; with ``wait`` an absent alias leaves the model without
        a version (registered with KServe, but :meth:`healthy` is False until one loads)."""
        self.holder.load_initial(wait=wait)
        self.ready = True  # KServe registers only ready models; healthy() says whether it serves
        return self.ready

    async def healthy(self) -> bool:
        """``/v2/models/<name>/ready``: a version is loaded (the readiness probe uses it)."""
        return self.holder.current is not None

    # --- V1 / V2 -------------------------------------------------------------------------
    async def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> Query:
        started = time.perf_counter()
        request_id = _request_id(headers)
        protocol = "v2" if isinstance(payload, InferRequest) else "v1"
        try:
            if isinstance(payload, InferRequest):
                users, ks = self._decode_v2(payload)
            else:
                users, ks = self._decode_v1(payload)
        except InvalidInput:
            self._count(protocol, "400")
            raise
        return Query(protocol, users, ks, request_id, started)

    async def predict(self, query: Query, headers: dict[str, str] | None = None,
                      response_headers: dict[str, str] | None = None) -> dict | InferResponse:
        engine = self.holder.current
        if engine is None:
            self._count(query.protocol, "503", "")
            raise ModelNotReady(self.name, "no model version is loaded yet")
        if len(query.user_ids) == 1:  # the common case: no task per instance
            answers = [await self.service.recommend(query.user_ids[0], query.ks[0], engine)]
        else:
            answers = await asyncio.gather(
                *(self.service.recommend(u, k, engine) for u, k in zip(query.user_ids, query.ks,
                                                                        strict=True)))
        version = engine.version if engine is not None else ""
        if response_headers is not None:
            response_headers["x-request-id"] = query.request_id
            response_headers["x-model-version"] = version
        for user_id, answer in zip(query.user_ids, answers, strict=True):
            self.log(query.request_id, user_id, answer, query.protocol)
        self._count(query.protocol, "200", version)
        self._duration(query.protocol).observe(time.perf_counter() - query.started)
        if query.protocol == "v1":
            return {"predictions": [{"user_id": u, "items": a.items}
                                    for u, a in zip(query.user_ids, answers, strict=True)],
                    "model_version": version}
        output = InferOutput(name="items", shape=[len(answers)], datatype="BYTES",
                             data=[",".join(a.items) for a in answers])
        return InferResponse(response_id=query.request_id, model_name=self.name,
                             model_version=version, infer_outputs=[output])

    def validate(self, payload: Any) -> Any:
        return payload  # preprocess already validated; KServe's check expects dicts

    def get_input_types(self) -> list[dict]:
        return [{"name": "user_id", "datatype": "INT64", "shape": [-1]},
                {"name": "k", "datatype": "INT64", "shape": [-1]}]

    def get_output_types(self) -> list[dict]:
        return [{"name": "items", "datatype": "BYTES", "shape": [-1]}]

    # --- shared with /recommend ----------------------------------------------------------
    def log(self, request_id: str, user_id: int, answer: Answer, endpoint: str) -> None:
        if self.provenance is not None and answer.engine is not None:
            self.provenance.log(request_id, user_id, answer.items, answer.engine.provenance,
                                endpoint, answer.source)

    def _count(self, endpoint: str, status: str, version: str | None = None) -> None:
        if version is None:
            current = self.holder.current
            version = current.version if current is not None else ""
        key = (endpoint, status, version)
        child = self._request_children.get(key)
        if child is None:  # labels() takes a lock and builds a key: once per combination
            child = self._request_children[key] = REQUESTS.labels(
                endpoint=endpoint, status=status, model_version=version)
        child.inc()

    def _duration(self, endpoint: str):
        child = self._duration_children.get(endpoint)
        if child is None:
            child = self._duration_children[endpoint] = REQUEST_DURATION.labels(endpoint=endpoint)
        return child

    # --- decoding ------------------------------------------------------------------------
    def _decode_v1(self, payload: Any) -> tuple[list[int], list[int]]:
        if isinstance(payload, (bytes, bytearray, str)):
            try:
                payload = orjson.loads(payload)
            except orjson.JSONDecodeError as exc:
                raise InvalidInput(f"request body is not JSON: {exc}") from None
        if not isinstance(payload, dict) or "instances" not in payload:
            raise InvalidInput('expected a JSON object {"instances": [{"user_id": <int>, '
                               '"k": <int, optional>}, ...]}')
        instances = payload["instances"]
        if not isinstance(instances, list) or not instances:
            raise InvalidInput('"instances" must be a non-empty list')
        if len(instances) > MAX_INSTANCES:
            raise InvalidInput(f'at most {MAX_INSTANCES} instances per request')
        users, ks = [], []
        for n, instance in enumerate(instances):
            if isinstance(instance, dict):
                if "user_id" not in instance:
                    raise InvalidInput(f'instance {n}: missing "user_id"')
                user, k = instance["user_id"], instance.get("k", self.default_k)
            else:
                user, k = instance, self.default_k
            try:
                users.append(parse_user_id(user))
            except (ValueError, OverflowError) as exc:
                raise InvalidInput(f"instance {n}: {exc}") from None
            ks.append(self._k(k, f"instance {n}"))
        return users, ks

    def _decode_v2(self, request: InferRequest) -> tuple[list[int], list[int]]:
        by_name = {i.name: i for i in request.inputs}
        unknown = sorted(set(by_name) - {"user_id", "k"})
        if "user_id" not in by_name:
            raise InvalidInput('missing input "user_id" (integer datatype, shape [N])')
        if unknown:
            raise InvalidInput(f"unknown inputs {unknown}; expected user_id and optional k")
        users = self._int_tensor(by_name["user_id"])
        if users.size == 0:
            raise InvalidInput('input "user_id" is empty')
        if users.size > MAX_INSTANCES:
            raise InvalidInput(f"at most {MAX_INSTANCES} user ids per request")
        if np.any(users < 0):  # (values beyond int64 already failed in as_numpy)
            raise InvalidInput('input "user_id": user ids must be non-negative integers')
        if "k" in by_name:
            ks = self._int_tensor(by_name["k"])
            if ks.size == 1:
                ks = np.repeat(ks, users.size)
            elif ks.size != users.size:
                raise InvalidInput(f'input "k" has {ks.size} values for {users.size} users '
                                   "(expected 1 or one per user)")
        else:
            ks = np.full(users.size, self.default_k)
        return [int(u) for u in users], [self._k(int(k), 'input "k"') for k in ks]

    @staticmethod
    def _int_tensor(tensor: Any) -> np.ndarray:
        if tensor.datatype not in _INT_TYPES:
            raise InvalidInput(f'input "{tensor.name}": datatype must be an integer type '
                               f"(INT64), got {tensor.datatype}")
        try:
            values = tensor.as_numpy()
        except Exception as exc:  # wrong shape, non-integers, overflow ...
            raise InvalidInput(f'input "{tensor.name}": {exc}') from None
        if values.ndim != 1:
            raise InvalidInput(f'input "{tensor.name}": shape must be [N], got {list(values.shape)}')
        return values.astype(np.int64)

    def _k(self, k: Any, where: str) -> int:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= self.max_k:
            raise InvalidInput(f"{where}: k must be an integer in 1..{self.max_k}, got {k!r}"[:200])
        return int(k)


_ID_PREFIX = uuid.uuid4().hex[:12]  # per process: ids stay unique across replicas
_ID_COUNTER = itertools.count(1)


def _request_id(headers: dict[str, str] | None) -> str:
    """The caller's ``X-Request-Id`` (up to 128 chars), else ``<process prefix>-<counter>``
    (uuid4 per request reads the OS entropy pool: a syscall on the hot path)."""
    if headers:
        given = headers.get("x-request-id")
        if given and len(given) <= 128:
            return given
    return f"{_ID_PREFIX}-{next(_ID_COUNTER):x}"
