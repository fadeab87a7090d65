"""Istio and KServe renderings validated against the pinned CRD schemas in ../shared."""

from __future__ import annotations

import copy

import jsonschema
import pytest

from experiments import k8s
from experiments.config import register_configs
from movierec_core.config import compose

AB = ["experiments.name=ab-1", "experiments.variants=[{name:champion,weight:90,urls:[http://127.0.0.1:8090]},"
      "{name:challenger,weight:10,urls:[http://127.0.0.1:8091]}]"]


@pytest.fixture
def cfg():
    register_configs()
    return compose("experiments", AB).experiments


def test_istio_renders_and_validates(cfg):
    dr, vs = k8s.render_istio(cfg)
    k8s.validate_istio(dr)
    k8s.validate_istio(vs)
    host = "movierec-router.movierec.svc.cluster.local"
    assert dr["spec"] == {"host": host, "subsets": [
        {"name": "champion", "labels": {"movierec.io/variant": "champion"}},
        {"name": "challenger", "labels": {"movierec.io/variant": "challenger"}}]}
    http = vs["spec"]["http"]
    # header-match routes first (one per variant), then the weighted default route
    assert [r["name"] for r in http] == ["variant-champion", "variant-challenger", "default"]
    assert http[1]["match"] == [{"headers": {"x-movierec-variant": {"exact": "challenger"}}}]
    assert http[1]["route"] == [{"destination": {"host": host, "subset": "challenger",
                                                 "port": {"number": 8082}}}]
    assert [(r["destination"]["subset"], r["weight"]) for r in http[2]["route"]] == [
        ("champion", 90), ("challenger", 10)]
    assert "match" not in http[2]
    assert vs["metadata"]["annotations"] == {"movierec.io/experiment": "ab-1"}


def test_schema_rejects_a_broken_virtual_service(cfg):
    _, vs = k8s.render_istio(cfg)
    bad = copy.deepcopy(vs)
    bad["spec"]["http"][2]["route"][0]["weight"] = "ninety"
    with pytest.raises(jsonschema.ValidationError):
        k8s.validate_istio(bad)
    bad = copy.deepcopy(vs)
    bad["spec"]["http"][0]["match"][0]["headers"]["x-movierec-variant"] = {"exactly": "x"}
    with pytest.raises(jsonschema.ValidationError):
        k8s.validate_istio(bad)


@pytest.mark.parametrize(("weights", "expected"), [
    ([("a", 95), ("b", 5)], [("a", 95), ("b", 5)]),
    ([("a", 1), ("b", 1), ("c", 1)], [("a", 34), ("b", 33), ("c", 33)]),
    ([("a", 0.5), ("b", 0.5)], [("a", 50), ("b", 50)]),
    ([("a", 99.6), ("b", 0.4)], [("a", 100), ("b", 0)]),
])
def test_percent_weights_are_integers_summing_to_100(weights, expected):
    assert k8s.percent_weights(weights) == expected


ISVC = {
    "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
    "metadata": {"name": "movierec-model", "namespace": "movierec"},
    "spec": {"predictor": {"minReplicas": 1, "model": {
        "modelFormat": {"name": "movierec"},
        "storageUri": "pvc://movierec-data/registry/movierec/versions/v0001",
        "args": ["serving.alias=champion"]}}},
}
CANARY = {"name": "canary", "model": {"name": "kserve-container", "modelFormat": {"name": "movierec"},
                    "storageUri": "pvc://movierec-data/registry/movierec/versions/v0002",
                    "args": ["serving.alias=challenger"]}}


@pytest.mark.parametrize("pct", [5, 25, 50, 100])
def test_standard_mode_patch_sets_spec_canary_traffic_percent(pct):
    patch = k8s.kserve_canary_patch("standard", pct, CANARY)
    assert patch == {"spec": {"canary": [{"predictor": CANARY, "trafficPercent": pct}]}}
    merged = k8s.merge_patch(ISVC, patch)
    k8s.validate_isvc(merged)
    assert merged["spec"]["predictor"] == ISVC["spec"]["predictor"]


def test_standard_mode_rollback_removes_the_canary():
    merged = k8s.merge_patch(k8s.merge_patch(ISVC, k8s.kserve_canary_patch("standard", 25, CANARY)),
                             k8s.kserve_canary_patch("standard", 0))
    k8s.validate_isvc(merged)
    assert merged["spec"]["canary"] == []


def test_knative_mode_patch_sets_canary_traffic_percent_on_the_predictor():
    patch = k8s.kserve_canary_patch("knative", 25, CANARY)
    merged = k8s.merge_patch(ISVC, patch)
    k8s.validate_isvc(merged)
    assert merged["spec"]["predictor"]["canaryTrafficPercent"] == 25
    assert merged["spec"]["predictor"]["model"]["args"] == ["serving.alias=challenger"]


def test_crd_schema_rejects_out_of_range_and_incomplete_canaries():
    with pytest.raises(ValueError):
        k8s.kserve_canary_patch("standard", 101, CANARY)
    too_much = k8s.merge_patch(ISVC, {"spec": {"canary": [{"predictor": CANARY, "trafficPercent": 101}]}})
    with pytest.raises(jsonschema.ValidationError):
        k8s.validate_isvc(too_much)
    no_percent = k8s.merge_patch(ISVC, {"spec": {"canary": [{"predictor": CANARY}]}})
    with pytest.raises(jsonschema.ValidationError):
        k8s.validate_isvc(no_percent)


def test_the_packaged_crd_schemas_equal_the_pinned_shared_ones() -> None:
    """experiments/crds ships the schemas in the image (which has no ../shared): keep them equal."""
    from experiments import k8s
    from tests.conftest import SHARED_DIR

    shared = SHARED_DIR / "schemas"
    pairs = [(k8s.CRDS / "virtualservice_v1.json",
              shared / "crds" / "networking.istio.io" / "virtualservice_v1.json"),
             (k8s.CRDS / "destinationrule_v1.json",
              shared / "crds" / "networking.istio.io" / "destinationrule_v1.json"),
             (k8s.KSERVE_ISVC_CRD,
              shared / "crds-yaml" / "kserve-v0.20.0" / "serving.kserve.io_inferenceservices.yaml")]
    for packaged, pinned in pairs:
        assert packaged.read_bytes() == pinned.read_bytes(), packaged.name
