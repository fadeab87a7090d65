"""Convert Kubernetes API descriptions into the strict JSON schemas kubeconform reads offline.

Two sources, two sub-commands:

``swagger SWAGGER_JSON OUT_DIR``
    The OpenAPI v2 document of a kube-apiserver (``/openapi/v2``; the same document ships as
    ``api/openapi-spec/swagger.json`` in the ``k8s.io/kubernetes`` module). Every definition
    carrying ``x-kubernetes-group-version-kind`` becomes ``<kind>-<group>-<version>.json``
    (``<kind>-<version>.json`` for the core group), the file naming of kubeconform's
    ``{{.ResourceKind}}{{.KindSuffix}}`` template. References stay local: each file carries
    the ``definitions`` it needs, so recursive types (``JSONSchemaProps``) stay finite.

``crd OUT_DIR CRD_YAML...``
    CustomResourceDefinition manifests. Every served version's ``openAPIV3Schema`` becomes
    ``<group>/<kind>_<version>.json``: the ``{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}``
    layout of the shared CRD catalogue.

Both outputs are *strict*: objects that list ``properties`` and say nothing of
``additionalProperties`` get ``additionalProperties: false`` (unless the API server would keep
unknown fields, ``x-kubernetes-preserve-unknown-fields``), which is what ``kubeconform -strict``
relies on to reject misspelt fields.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

REF_PREFIX = "#/definitions/"

# Types the API server accepts in more than one JSON shape although swagger names only one.
_LENIENT_DEFINITIONS: dict[str, dict[str, Any]] = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {
        "oneOf": [{"type": "string"}, {"type": "integer"}]
    },
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {
        "oneOf": [{"type": "string"}, {"type": "number"}]
    },
}


def _strictify(node: Any) -> Any:
    """Return a copy of a schema tree with additionalProperties: false on closed objects."""
    if isinstance(node, list):
        return [_strictify(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _strictify(value) for key, value in node.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    if out.get("nullable") is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def _refs(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(REF_PREFIX):
            found.add(ref[len(REF_PREFIX):])
        for value in node.values():
            found |= _refs(value)
    elif isinstance(node, list):
        for item in node:
            found |= _refs(item)
    return found


def _closure(name: str, definitions: dict[str, Any]) -> list[str]:
    seen: set[str] = set()
    todo = [name]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        todo.extend(_refs(definitions[current]) - seen)
    return sorted(seen)


def kind_suffix(group: str, version: str) -> str:
    """kubeconform's ``{{.KindSuffix}}``: ``-<first label of group>-<version>`` or ``-<version>``."""
    if not group:
        return f"-{version}".lower()
    return f"-{group.split('.')[0]}-{version}".lower()


def convert_swagger(swagger_path: Path, out_dir: Path) -> int:
    """Write one standalone strict schema per top-level kind; return how many were written."""
    swagger = json.loads(swagger_path.read_text())
    definitions = {
        name: _LENIENT_DEFINITIONS.get(name, _strictify(schema))
        for name, schema in swagger["definitions"].items()
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    written = 0
    for name, schema in sorted(swagger["definitions"].items()):
        gvks = schema.get("x-kubernetes-group-version-kind") or []
        for gvk in gvks:
            group, version, kind = gvk.get("group", ""), gvk["version"], gvk["kind"]
            api_version = f"{group}/{version}" if group else version
            root = json.loads(json.dumps(definitions[name]))
            props = root.setdefault("properties", {})
            props["apiVersion"] = {"type": "string", "enum": [api_version]}
            props["kind"] = {"type": "string", "enum": [kind]}
            deps = [dep for dep in _closure(name, definitions) if dep != name]
            document = {"$schema": "http://json-schema.org/draft-07/schema#", **root}
            if deps:
                document["definitions"] = {dep: definitions[dep] for dep in deps}
            target = out_dir / f"{kind.lower()}{kind_suffix(group, version)}.json"
            target.write_text(json.dumps(document, indent=1, sort_keys=True))
            written += 1
    return written


def convert_crds(out_dir: Path, crd_files: list[Path]) -> int:
    """Write ``<group>/<kind>_<version>.json`` for every version of every CRD; return the count."""
    written = 0
    for crd_file in crd_files:
        for doc in yaml.safe_load_all(crd_file.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            group, kind = spec["group"], spec["names"]["kind"]
            for version in spec["versions"]:
                schema = (version.get("schema") or {}).get("openAPIV3Schema")
                if schema is None:
                    continue
                strict = _strictify(schema)
                props = strict.setdefault("properties", {})
                props["apiVersion"] = {"type": "string", "enum": [f"{group}/{version['name']}"]}
                props["kind"] = {"type": "string", "enum": [kind]}
                target = out_dir / group / f"{kind.lower()}_{version['name']}.json"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(json.dumps(strict, indent=1, sort_keys=True))
                written += 1
    return written


def alias_schema(source: Path, target: Path, kind: str) -> int:
    """Copy a CRD schema for another kind sharing its spec (Argo's Workflow and WorkflowTemplate)."""
    schema = json.loads(source.read_text())
    props = schema.setdefault("properties", {})
    props["kind"] = {"type": "string", "enum": [kind]}
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(schema, indent=1, sort_keys=True))
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sw = sub.add_parser("swagger", help="OpenAPI v2 document -> core kind schemas")
    sw.add_argument("swagger", type=Path)
    sw.add_argument("out_dir", type=Path)
    crd = sub.add_parser("crd", help="CRD YAML files -> <group>/<kind>_<version>.json")
    crd.add_argument("out_dir", type=Path)
    crd.add_argument("crd_files", type=Path, nargs="+")
    alias = sub.add_parser("alias", help="copy a schema for a kind with the same spec")
    alias.add_argument("source", type=Path)
    alias.add_argument("target", type=Path)
    alias.add_argument("kind")
    args = parser.parse_args(argv)
    if args.command == "swagger":
        count = convert_swagger(args.swagger, args.out_dir)
    elif args.command == "alias":
        count = alias_schema(args.source, args.target, args.kind)
        args.out_dir = args.target
    else:
        count = convert_crds(args.out_dir, args.crd_files)
    if count == 0:
        print("openapi2jsonschema: no schema written", file=sys.stderr)
        return 1
    print(f"openapi2jsonschema: {count} schemas -> {args.out_dir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
