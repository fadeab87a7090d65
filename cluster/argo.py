"""``make argo-up``: Argo Workflows v3.7.18 on the local cluster, built from its source.

* ``cmd/workflow-controller`` and ``cmd/argoexec`` from ``github.com/argoproj/argo-workflows/v3``
  at v3.7.18 through the Go module proxy (cluster.gobuild), packed as from-scratch images.
* ``cmd/argo`` (the CLI, which runs ``argo server``) embeds the web UI (``ui/dist/app``), which
  the module does not ship: the UI's JavaScript is built with webpack from the npm registry's
  packages (``ui/package.json``), and the CLI is built against a copy of the module's source with
  that build added (a ``replace`` to the copy in the wrapper module).
* The CRDs, the controller and the server are installed from the module's own manifests with
  the least RBAC they need (cluster/manifests/argo.yaml).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from cluster import addons, gobuild
from cluster.layout import BIN, CACHE, NET
from cluster.lifecycle import Timer, kubectl

VERSION = "v3.7.18"
MODULE = "github.com/argoproj/argo-workflows/v3"
NAMESPACE = "argo"



# the UI's test and lint tooling: not needed to build the bundle (and the slowest to install)
UI_DEV_ONLY = ("@ianvs/prettier-plugin-sort-imports", "@testing-library/dom",
               "@testing-library/jest-dom", "@testing-library/react", "@types/jest",
               "@typescript-eslint/eslint-plugin", "@typescript-eslint/parser", "babel-jest",
               "eslint", "eslint-config-prettier", "eslint-plugin-prettier", "eslint-plugin-react",
               "jest", "prettier", "ts-jest", "ts-node", "webpack-dev-server", "yarn-deduplicate")
# ui/package.json takes argo-ui from a GitHub commit (unreachable here); the npm registry has
# argo-ui 1.0.0, an older snapshot of that library, which deep-imports uuid/v1 (uuid 3's API)
# without declaring it
ARGO_UI_NPM = "1.0.0"
ARGO_UI_OVERRIDES = {"argo-ui": {"uuid": "^3.4.0"}}
UI_ROOT = CACHE / "argo-ui"  # ui/ and api/ side by side: webpack copies ../api/* into the app
UI_DIR = UI_ROOT / "ui"
SOURCE_DIR = CACHE / "argo-src"


def ui_package_json(original: dict) -> dict:
    """ui/package.json for a build from the npm registry alone (see the constants above)."""
    pkg = json.loads(json.dumps(original))
    pkg["dependencies"]["argo-ui"] = ARGO_UI_NPM
    pkg["dependencies"]["uuid"] = "^3.4.0"  # for argo-ui's deep import (nested by the override)
    for name in UI_DEV_ONLY:
        pkg["devDependencies"].pop(name, None)
    # yarn's "resolutions" are npm's "overrides"
    pkg["overrides"] = {**pkg.pop("resolutions", {}), **ARGO_UI_OVERRIDES}
    return pkg


def build_ui(log: Callable[[str], None] = print) -> Path:
    """ui/dist/app of the module, built with npm + webpack; cached by a stamp."""
    src = gobuild.module_dir(MODULE, VERSION) / "ui"
    app = UI_DIR / "dist" / "app"
    stamp = UI_DIR / ".stamp"
    recipe = f"{MODULE}@{VERSION} argo-ui@{ARGO_UI_NPM} {hashlib.sha256(repr(UI_DEV_ONLY).encode()).hexdigest()[:12]}"
    if app.is_dir() and (app / "index.html").is_file() and stamp.is_file() \
            and stamp.read_text().strip() == recipe:
        return app
    t0 = time.monotonic()
    shutil.rmtree(UI_DIR / "src", ignore_errors=True)
    shutil.rmtree(UI_DIR / "dist", ignore_errors=True)
    shutil.rmtree(UI_ROOT / "api", ignore_errors=True)
    UI_DIR.mkdir(parents=True, exist_ok=True)
    shutil.copytree(src.parent / "api", UI_ROOT / "api")
    for entry in src.iterdir():
        if entry.name in ("yarn.lock", "node_modules"):
            continue
        dest = UI_DIR / entry.name
        if entry.is_dir():
            shutil.copytree(entry, dest, dirs_exist_ok=True)
        else:
            shutil.copy2(entry, dest)
    for path in UI_ROOT.rglob("*"):  # the module cache is read-only; the copy must not be
        path.chmod(path.stat().st_mode | 0o200)
    (UI_DIR / "package.json").write_text(
        json.dumps(ui_package_json(json.loads((src / "package.json").read_text())), indent=2))
    log("argo-ui: npm install (the npm registry's packages)")
    subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--legacy-peer-deps",
                    "--loglevel=error"], cwd=UI_DIR, check=True)
    log("argo-ui: webpack --mode production")
    subprocess.run(["npx", "webpack", "--mode", "production"], cwd=UI_DIR, check=True,
                   env={**os.environ, "NODE_ENV": "production",
                        "NODE_OPTIONS": "--max-old-space-size=4096"})
    if not (app / "index.html").is_file():
        raise SystemExit(f"argo-ui: webpack wrote no {app / 'index.html'}")
    stamp.write_text(recipe + "\n")
    log(f"argo-ui: built in {time.monotonic() - t0:.0f} s")
    return app


# Files the repository holds as symlinks: Go module zips leave symlinks out, so the published
# module cannot build argoexec on Linux ("undefined: Setpgid") until they are put back.
RESTORED_SYMLINKS = {"workflow/executor/osspecific/signal_linux.go": "signal_darwin.go"}


def source(log: Callable[[str], None] = print) -> Path:
    """A writable copy of the module's source with its symlinks restored and, once built, the
    web UI in ui/dist/app (the CLI's go:embed needs it)."""
    marker = SOURCE_DIR / ".copied"
    if not marker.is_file() or marker.read_text() != VERSION:
        shutil.rmtree(SOURCE_DIR, ignore_errors=True)
        shutil.copytree(gobuild.module_dir(MODULE, VERSION), SOURCE_DIR)
        for path in [SOURCE_DIR, *SOURCE_DIR.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)
        for link, target in RESTORED_SYMLINKS.items():
            (SOURCE_DIR / link).symlink_to(target)
        marker.write_text(VERSION)
        log(f"argo: source of {MODULE}@{VERSION} copied, {len(RESTORED_SYMLINKS)} symlink(s) restored")
    return SOURCE_DIR


def add_ui(log: Callable[[str], None] = print) -> str:
    """Build the UI and put it into the source copy; the UI build's stamp."""
    app = build_ui(log)
    ui_stamp = (UI_DIR / ".stamp").read_text()
    marker = source(log) / ".ui-stamp"
    if not marker.is_file() or marker.read_text() != ui_stamp:
        shutil.rmtree(SOURCE_DIR / "ui" / "dist", ignore_errors=True)
        shutil.copytree(app, SOURCE_DIR / "ui" / "dist" / "app")
        marker.write_text(ui_stamp)
    return ui_stamp


def _replace_with_source(gomod: str) -> list[str]:
    return [*gobuild.copied_replaces(gomod), f"replace {MODULE} => {SOURCE_DIR}"]


_LDFLAGS = [f"-X {MODULE}.version={VERSION}", f"-X {MODULE}.gitTag={VERSION}",
            f"-X {MODULE}.gitTreeState=clean"]
CONTROLLER = gobuild.GoBuild(
    name="argo", module=MODULE, version=VERSION,
    packages=[f"{MODULE}/cmd/workflow-controller", f"{MODULE}/cmd/argoexec"],
    replaces=_replace_with_source, ldflags=_LDFLAGS)
CLI = gobuild.GoBuild(
    name="argo-cli", module=MODULE, version=VERSION, packages=[f"{MODULE}/cmd/argo"],
    replaces=_replace_with_source, ldflags=_LDFLAGS)


def build(log: Callable[[str], None] = print) -> None:
    source(log)
    gobuild.build(CONTROLLER, log)
    ui_stamp = add_ui(log)
    # the CLI embeds the UI: a new UI build means a new CLI build
    ui_mark = BIN / ".argo-cli.ui"
    if not ui_mark.is_file() or ui_mark.read_text() != ui_stamp:
        gobuild.stamp_path(CLI).unlink(missing_ok=True)
    if gobuild.build(CLI, log) or not ui_mark.is_file():
        ui_mark.write_text(ui_stamp)


MANAGED_NAMESPACE = "movierec"  # the one namespace the controller and the server act in
SERVER_NODEPORT = 32746
CONTROLLER_IMAGE = f"localhost/movierec/argo-workflow-controller:{VERSION}"
EXECUTOR_IMAGE = f"localhost/movierec/argoexec:{VERSION}"
CLI_IMAGE = f"localhost/movierec/argocli:{VERSION}"
NONROOT = {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
           "seccompProfile": {"type": "RuntimeDefault"}}
# what each needs in its own namespace (argo): the controller its config and leader lease, the
# server the controller's config (what the UI shows of it)
OWN_NAMESPACE_RULES = {
    "argo": [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
              "verbs": ["create", "get", "update"]},
             {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "watch", "list"]},
             {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]}],
    "argo-server": [{"apiGroups": [""], "resources": ["configmaps"],
                     "verbs": ["get", "watch", "list"]}],
}
EXECUTOR_CONFIG = {
    "executor": {"imagePullPolicy": "Never",
                 "resources": {"requests": {"cpu": "10m", "memory": "32Mi"},
                               "limits": {"cpu": "500m", "memory": "256Mi"}},
                 "securityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False,
                                     "readOnlyRootFilesystem": True,
                                     "capabilities": {"drop": ["ALL"]},
                                     "seccompProfile": {"type": "RuntimeDefault"}}},
}


def kustomize(path: Path) -> list[dict[str, Any]]:
    res = kubectl("kustomize", str(path))
    return [o for o in yaml.safe_load_all(res.stdout) if o]


def adjust(objects: list[dict[str, Any]], managed: str = MANAGED_NAMESPACE) -> list[dict[str, Any]]:
    """Argo's namespace-install for a controller and server in ``argo`` acting in ``managed``:
    images built here, non-root, the executor image and policy, the server on a NodePort
    without TLS or login (a local cluster), each Role in the namespace it is needed in."""
    out: list[dict[str, Any]] = []
    for obj in objects:
        kind, name = obj["kind"], obj["metadata"]["name"]
        if kind == "CustomResourceDefinition":
            continue
        if kind not in ("PriorityClass",):
            obj["metadata"]["namespace"] = NAMESPACE
        if kind == "Deployment":
            pod = obj["spec"]["template"]["spec"]
            pod["securityContext"] = {**pod.get("securityContext", {}), **NONROOT}
            c = pod["containers"][0]
            c["imagePullPolicy"] = "Never"
            if name == "workflow-controller":
                c["image"] = CONTROLLER_IMAGE
                c["args"] = [a for a in c.get("args", []) if a != "--namespaced"] + [
                    "--namespaced", "--managed-namespace", managed,
                    "--executor-image", EXECUTOR_IMAGE, "--executor-image-pull-policy", "Never"]
                c["resources"] = {"requests": {"cpu": "50m", "memory": "96Mi"},
                                  "limits": {"cpu": "1", "memory": "512Mi"}}
            elif name == "argo-server":
                c["image"] = CLI_IMAGE
                c["args"] = ["server", "--namespaced", "--managed-namespace", managed,
                             "--auth-mode", "server", "--secure=false"]
                c["readinessProbe"]["httpGet"]["scheme"] = "HTTP"
                c["resources"] = {"requests": {"cpu": "50m", "memory": "64Mi"},
                                  "limits": {"cpu": "500m", "memory": "256Mi"}}
        if kind == "Service" and name == "argo-server":
            obj["spec"]["type"] = "NodePort"
            obj["spec"]["ports"][0]["nodePort"] = SERVER_NODEPORT
        if kind == "ConfigMap" and name == "workflow-controller-configmap":
            obj["data"] = {k: yaml.safe_dump(v) for k, v in EXECUTOR_CONFIG.items()}
        if kind == "Role":
            # the upstream Role is what they need in the workflows' namespace ...
            obj["metadata"]["namespace"] = managed
            out.append(obj)
            account = "argo" if name == "argo-role" else "argo-server"
            # ... and in their own namespace only their config (and the controller's lease)
            own = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                   "metadata": {"name": name, "namespace": NAMESPACE},
                   "rules": OWN_NAMESPACE_RULES[account]}
            out.append(own)
            continue
        if kind == "RoleBinding":
            for ns in (managed, NAMESPACE):
                binding = json.loads(json.dumps(obj))
                binding["metadata"]["namespace"] = ns
                for subject in binding["subjects"]:
                    subject["namespace"] = NAMESPACE
                out.append(binding)
            continue
        out.append(obj)
    return out


def managed_namespace_objects(managed: str = MANAGED_NAMESPACE) -> list[dict[str, Any]]:
    """The Roles and RoleBindings in the managed namespace (re-applied after it is recreated)."""
    src = gobuild.module_dir(MODULE, VERSION) / "manifests" / "namespace-install"
    return [o for o in adjust(kustomize(src), managed)
            if o["kind"] in ("Role", "RoleBinding") and o["metadata"]["namespace"] == managed]


def up() -> dict[str, float]:
    timer = Timer("argo-up")
    with timer.stage(f"build Argo Workflows {VERSION}: controller, argoexec, argo (CLI, server, UI)"):
        build()
        addons.binary_image(CONTROLLER_IMAGE, {"bin/workflow-controller": BIN / "workflow-controller"},
                            ["workflow-controller"])
        addons.binary_image(EXECUTOR_IMAGE, {"bin/argoexec": BIN / "argoexec"}, ["argoexec"])
        addons.binary_image(CLI_IMAGE, {"bin/argo": BIN / "argo"}, ["argo"])
    module = gobuild.module_dir(MODULE, VERSION) / "manifests"
    with timer.stage("CRDs (manifests/base/crds/full)"):
        kubectl("apply", "--server-side", "--force-conflicts", "-f", "-",
                input=yaml.safe_dump_all(kustomize(module / "base" / "crds" / "full")))
    with timer.stage(f"controller and server in {NAMESPACE}, acting in {MANAGED_NAMESPACE}"):
        for ns in (NAMESPACE, MANAGED_NAMESPACE):
            kubectl("create", "namespace", ns, check=False)
        kubectl("apply", "-f", "-",
                input=yaml.safe_dump_all(adjust(kustomize(module / "namespace-install"))))
        for deploy in ("workflow-controller", "argo-server"):
            kubectl("-n", NAMESPACE, "rollout", "status", f"deployment/{deploy}", "--timeout=300s")
    print(f"argo-up: Argo Workflows {VERSION} ready in {timer.total():.0f} s; UI "
          f"http://{NET.node_ip}:{SERVER_NODEPORT}")
    return timer.times


def main(argv: list[str] | None = None) -> int:
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["up"]:
        up()
        return 0
    if args[:1] == ["build"]:
        build()
        return 0
    print("usage: python -m cluster.argo up | build  (make argo-up)")
    return 0 if args[:1] in (["-h"], ["--help"]) else 2


if __name__ == "__main__":
    raise SystemExit(main())
