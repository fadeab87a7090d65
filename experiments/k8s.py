"""Kubernetes renderings of an experiment: the Istio VirtualService and DestinationRule (the
same shape as the Helm chart's ``templates/router/istio.yaml``), and the KServe
InferenceService patch the canary controller applies; plus validation against the pinned CRD
schemas, shipped in ``experiments/crds`` (copies of ``../shared/schemas``, kept equal by a test) so
the container image, which has no ``../shared``, validates too.

Semantics shared with the chart: one DestinationRule subset per variant selected by the pod
label ``movierec.io/variant``; one header-match route per variant (``x-movierec-variant:
<name>``, exact); a final default route splitting by the variants' integer percent weights.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

VARIANT_LABEL = "movierec.io/variant"
CRDS = Path(__file__).resolve().parent / "crds"
ISTIO_SCHEMAS = CRDS  # {virtualservice,destinationrule}_v1.json
KSERVE_ISVC_CRD = CRDS / "serving.kserve.io_inferenceservices.yaml"


def percent_weights(weights: Sequence[tuple[str, float]]) -> list[tuple[str, int]]:
    """Integer percents summing to 100 (Istio wants integers): largest remainder, ties by
    order. The router's bucket bounds round the same cumulative shares, so both agree within
    one percent per variant."""
    total = sum(w for _, w in weights)
    if total <= 0:
        raise ValueError("weights sum to zero")
    exact = [(name, w * 100 / total) for name, w in weights]
    floors = [(name, int(x)) for name, x in exact]
    missing = 100 - sum(f for _, f in floors)
    order = sorted(range(len(exact)), key=lambda i: (-(exact[i][1] - floors[i][1]), i))
    out = [list(f) for f in floors]
    for i in order[:missing]:
        out[i][1] += 1
    return [(name, pct) for name, pct in out]


def _host(istio: Any) -> str:
    return istio.host or f"{istio.name}.{istio.namespace}.svc.cluster.local"


def render_istio(cfg: Any) -> list[dict[str, Any]]:
    """[DestinationRule, VirtualService] for the ``experiments`` config node."""
    istio = cfg.istio
    host = _host(istio)
    weights = percent_weights([(str(v.name), float(v.weight)) for v in cfg.variants])
    labels = {"app.kubernetes.io/name": "movierec", "app.kubernetes.io/component": "router",
              "app.kubernetes.io/part-of": "movierec"}
    destination_rule = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": istio.name, "namespace": istio.namespace, "labels": labels},
        "spec": {
            "host": host,
            "subsets": [{"name": name, "labels": {VARIANT_LABEL: name}} for name, _ in weights],
        },
    }

    def destination(name: str) -> dict[str, Any]:
        return {"host": host, "subset": name, "port": {"number": int(istio.port)}}

    routes: list[dict[str, Any]] = [
        {
            "name": f"variant-{name}",
            "match": [{"headers": {istio.variant_header: {"exact": name}}}],
            "route": [{"destination": destination(name)}],
            "timeout": istio.timeout,
        }
        for name, _ in weights
    ]
    routes.append({
        "name": "default",
        "route": [{"destination": destination(name), "weight": pct} for name, pct in weights],
        "timeout": istio.timeout,
        "retries": {"attempts": int(istio.retry_attempts), "perTryTimeout": istio.per_try_timeout,
                    "retryOn": "connect-failure,refused-stream,unavailable,5xx"},
    })
    virtual_service = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": istio.name, "namespace": istio.namespace, "labels": labels,
                     "annotations": {"movierec.io/experiment": str(cfg.name)}},
        "spec": {"hosts": [host], "http": routes},
    }
    return [destination_rule, virtual_service]


def kserve_canary_patch(
    mode: str, traffic_percent: int, canary_predictor: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The merge patch that sets the canary's share of an InferenceService.

    * ``standard`` (v0.20 raw mode): ``spec.canary`` is a list of ``{predictor,
      trafficPercent}``; 0 removes the canary (rollback), 100 is full promotion (the caller
      then moves the primary to the challenger and clears ``spec.canary``).
    * ``knative``: ``spec.predictor.canaryTrafficPercent`` (Knative keeps the previous
      revision as the champion; ``canary_predictor`` is the new predictor spec).
    """
    pct = int(traffic_percent)
    if not 0 <= pct <= 100:
        raise ValueError(f"traffic percent {pct} outside [0, 100]")
    predictor = dict(canary_predictor or {})
    if mode == "standard":
        if pct == 0:
            return {"spec": {"canary": []}}
        return {"spec": {"canary": [{"predictor": predictor, "trafficPercent": pct}]}}
    if mode == "knative":
        return {"spec": {"predictor": {**predictor, "canaryTrafficPercent": pct}}}
    raise ValueError(f"unknown KServe mode {mode!r} (standard | knative)")


# One checked validator per schema: re-checking the 40k-line KServe schema on every call
# (what ``jsonschema.validate`` does) costs seconds.
def _validator(schema: dict[str, Any]) -> jsonschema.protocols.Validator:
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    cls.check_schema(schema)
    return cls(schema)


@cache
def _istio_validator(kind: str) -> jsonschema.protocols.Validator:
    return _validator(json.loads((ISTIO_SCHEMAS / f"{kind.lower()}_v1.json").read_text()))


@cache
def _isvc_validator() -> jsonschema.protocols.Validator:
    crd = yaml.load(KSERVE_ISVC_CRD.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1beta1")
    return _validator(version["schema"]["openAPIV3Schema"])


def validate_istio(obj: Mapping[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``obj`` fits the pinned Istio CRD schema."""
    _istio_validator(str(obj["kind"])).validate(dict(obj))


def validate_isvc(obj: Mapping[str, Any]) -> None:
    """Validate a whole InferenceService (or a patch merged into one) against the v0.20 CRD."""
    _isvc_validator().validate(dict(obj))


def merge_patch(target: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """RFC 7386 JSON merge patch (what ``kubectl patch --type merge`` applies)."""
    out = dict(target)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_patch(out[key], value)
        else:
            out[key] = value
    return out


def dump_yaml(objs: Sequence[Mapping[str, Any]]) -> str:
    return "---\n".join(yaml.safe_dump(dict(o), sort_keys=False) for o in objs)


def write_patch(directory: Path | str, name: str, patch: Mapping[str, Any]) -> Path:
    path = Path(directory) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(patch, indent=2, sort_keys=True) + "\n")
    return path
