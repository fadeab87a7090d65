"""tools/openapi2jsonschema.py on tiny known inputs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import yaml

from tests.k8s.conftest import REPO_ROOT

_spec = importlib.util.spec_from_file_location("o2j", REPO_ROOT / "tools" / "openapi2jsonschema.py")
o2j = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(o2j)


def test_kind_suffix_matches_kubeconform() -> None:
    assert o2j.kind_suffix("", "v1") == "-v1"
    assert o2j.kind_suffix("apps", "v1") == "-apps-v1"
    assert o2j.kind_suffix("networking.k8s.io", "v1") == "-networking-v1"
    assert o2j.kind_suffix("rbac.authorization.k8s.io", "v1") == "-rbac-v1"


def test_swagger_definitions_become_strict_standalone_schemas(tmp_path: Path) -> None:
    swagger = {"definitions": {
        "io.k8s.api.demo.v1.Thing": {
            "type": "object",
            "properties": {"spec": {"$ref": "#/definitions/io.k8s.api.demo.v1.Spec"},
                           "apiVersion": {"type": "string"}, "kind": {"type": "string"}},
            "x-kubernetes-group-version-kind": [{"group": "demo.k8s.io", "version": "v1", "kind": "Thing"}]},
        "io.k8s.api.demo.v1.Spec": {
            "type": "object",
            "properties": {"port": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.util.intstr.IntOrString"},
                           "labels": {"type": "object", "additionalProperties": {"type": "string"}}}},
        "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {"type": "string", "format": "int-or-string"},
        "io.k8s.api.demo.v1.Unused": {"type": "object", "properties": {"x": {"type": "string"}}},
    }}
    (tmp_path / "swagger.json").write_text(json.dumps(swagger))
    assert o2j.convert_swagger(tmp_path / "swagger.json", tmp_path / "out") == 1
    schema = json.loads((tmp_path / "out" / "thing-demo-v1.json").read_text())
    assert schema["additionalProperties"] is False
    assert schema["properties"]["kind"] == {"type": "string", "enum": ["Thing"]}
    assert schema["properties"]["apiVersion"]["enum"] == ["demo.k8s.io/v1"]
    assert sorted(schema["definitions"]) == ["io.k8s.api.demo.v1.Spec",
                                             "io.k8s.apimachinery.pkg.util.intstr.IntOrString"]
    assert schema["definitions"]["io.k8s.api.demo.v1.Spec"]["additionalProperties"] is False
    assert "oneOf" in schema["definitions"]["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]


def test_crd_versions_become_group_kind_version_files(tmp_path: Path) -> None:
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "spec": {"group": "demo.io", "names": {"kind": "Widget"}, "versions": [
               {"name": "v1", "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                   "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
                   "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                              "properties": {"a": {"type": "string"}}}}}}}]}}
    (tmp_path / "crd.yaml").write_text(yaml.safe_dump(crd))
    assert o2j.convert_crds(tmp_path / "out", [tmp_path / "crd.yaml"]) == 1
    schema = json.loads((tmp_path / "out" / "demo.io" / "widget_v1.json").read_text())
    assert schema["properties"]["spec"]["additionalProperties"] is False
    assert "additionalProperties" not in schema["properties"]["status"]
    assert schema["properties"]["kind"]["enum"] == ["Widget"]
