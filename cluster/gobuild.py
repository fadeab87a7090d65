"""Build Go commands at an exact published version through a throwaway wrapper module.

``go install pkg@version`` refuses modules whose go.mod has ``replace`` directives (k8s.io/kubernetes
points its staging modules at ./staging/..., KServe and Argo pin forks). A wrapper module in
``.cache/gobuild/<name>`` requires the exact version, carries the replace lines the build needs, and
``go build`` writes the binaries to ``.cache/bin``. A stamp next to them records the recipe, so a
second run with the same recipe does nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cluster.layout import BIN, CACHE, KUBERNETES_VERSION

GO = shutil.which("go") or "/usr/local/go/bin/go"


@dataclass(frozen=True)
class GoBuild:
    """One wrapper module: ``module@version``, the main packages to build, how to rewrite replaces."""

    name: str
    module: str
    version: str
    packages: Sequence[str]
    # Turns the required module's go.mod text into the wrapper's replace lines.
    replaces: Callable[[str], list[str]] = field(default=lambda gomod: copied_replaces(gomod))
    ldflags: Sequence[str] = ()
    cgo: bool = False
    # prepended to each binary's name in .cache/bin (KServe's cmd/manager -> kserve-manager)
    prefix: str = ""

    @property
    def binaries(self) -> list[str]:
        return [self.prefix + p.rstrip("/").rsplit("/", 1)[-1] for p in self.packages]


_REPLACE_LINE = re.compile(r"^\s*(?:replace\s+)?(\S+)(\s+v\S+)?\s+=>\s+(\S+)(\s+v\S+)?\s*$")


def _replace_block(gomod: str) -> list[tuple[str, str | None, str, str | None]]:
    """The (old, old_version, new, new_version) entries of every replace directive in a go.mod."""
    entries = []
    in_block = False
    for raw in gomod.splitlines():
        line = raw.split("//", 1)[0].rstrip()
        stripped = line.strip()
        if in_block:
            if stripped == ")":
                in_block = False
                continue
        elif stripped.startswith("replace ("):
            in_block = True
            continue
        elif not stripped.startswith("replace "):
            continue
        m = _REPLACE_LINE.match(stripped)
        if m:
            old, old_v, new, new_v = m.groups()
            entries.append((old, old_v and old_v.strip(), new, new_v and new_v.strip()))
    return entries


def copied_replaces(gomod: str) -> list[str]:
    """The module's own replace lines, minus those that point at local paths (not downloadable)."""
    lines = []
    for old, old_v, new, new_v in _replace_block(gomod):
        if new.startswith(("./", "../", "/")):
            continue
        lhs = f"{old} {old_v}" if old_v else old
        rhs = f"{new} {new_v}" if new_v else new
        lines.append(f"replace {lhs} => {rhs}")
    return lines


def staging_replaces(gomod: str, kubernetes_version: str = KUBERNETES_VERSION) -> list[str]:
    """k8s.io/kubernetes: each ./staging/src/k8s.io/X module -> its published v0.<minor>.<patch> twin."""
    staging = "v0." + kubernetes_version.removeprefix("v1.")
    return [f"replace {old} => {old} {staging}" for old, _, new, _ in _replace_block(gomod)
            if new.startswith("./staging/")]


def kubernetes_ldflags(version: str = KUBERNETES_VERSION) -> list[str]:
    minor = version.split(".")[1]
    return [f"-X k8s.io/component-base/version.gitVersion={version}",
            "-X k8s.io/component-base/version.gitMajor=1",
            f"-X k8s.io/component-base/version.gitMinor={minor}",
            "-X k8s.io/component-base/version.gitTreeState=clean"]


KUBERNETES = GoBuild(
    name="kubernetes", module="k8s.io/kubernetes", version=KUBERNETES_VERSION,
    packages=[f"k8s.io/kubernetes/cmd/{c}" for c in (
        "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy",
        "kubectl")],
    replaces=staging_replaces, ldflags=kubernetes_ldflags())


def _env(build: GoBuild) -> dict[str, str]:
    env = dict(os.environ)
    env.update(GOFLAGS="-mod=mod -buildvcs=false", CGO_ENABLED="1" if build.cgo else "0",
               GOTOOLCHAIN=env.get("GOTOOLCHAIN", "auto"))
    return env


def module_dir(module: str, version: str) -> Path:
    """Download ``module@version`` into the module cache (the proxy serves exact versions)."""
    out = subprocess.run([GO, "mod", "download", "-json", f"{module}@{version}"],
                         capture_output=True, text=True)
    info = json.loads(out.stdout or "{}")
    if out.returncode != 0 or "Dir" not in info:
        raise SystemExit(f"gobuild: cannot download {module}@{version}: "
                         f"{info.get('Error') or out.stderr.strip()}")
    return Path(info["Dir"])


def stamp_path(build: GoBuild) -> Path:
    return BIN / f".{build.name}.stamp"


def stamp(build: GoBuild) -> str:
    """The recipe: module@version plus a hash of packages, flags and the replace rule."""
    recipe = {"packages": list(build.packages), "ldflags": list(build.ldflags), "cgo": build.cgo,
              "replaces": getattr(build.replaces, "__name__", "?")}
    if build.prefix:
        recipe["prefix"] = build.prefix
    body = json.dumps(recipe, sort_keys=True)
    return f"{build.module}@{build.version} {hashlib.sha256(body.encode()).hexdigest()[:16]}"


def is_current(build: GoBuild) -> bool:
    """True when every binary exists and was built by this exact recipe (no network needed)."""
    path = stamp_path(build)
    return (path.is_file() and path.read_text().strip() == stamp(build)
            and all((BIN / b).is_file() for b in build.binaries))


def build(b: GoBuild, log: Callable[[str], None] = print) -> bool:
    """Build ``b`` unless its stamp says the binaries are current. Returns True when it built."""
    if is_current(b):
        return False
    t0 = time.monotonic()
    src = module_dir(b.module, b.version)
    gomod = (src / "go.mod").read_text()
    go_directive = re.search(r"^go (\S+)", gomod, re.M)
    wrapper = CACHE / "gobuild" / b.name
    shutil.rmtree(wrapper, ignore_errors=True)
    wrapper.mkdir(parents=True)
    lines = [f"module movierec.local/gobuild/{b.name}", ""]
    if go_directive:
        lines += [f"go {go_directive.group(1)}", ""]
    lines += [f"require {b.module} {b.version}", ""] + b.replaces(gomod)
    (wrapper / "go.mod").write_text("\n".join(lines) + "\n")
    imports = "\n".join(f'\t_ "{p}"' for p in b.packages)
    (wrapper / "tools.go").write_text(f"//go:build tools\n\npackage tools\n\nimport (\n{imports}\n)\n")
    env = _env(b)
    log(f"gobuild: {b.name}: {b.module}@{b.version}: resolving dependencies")
    tidy = subprocess.run([GO, "mod", "tidy"], cwd=wrapper, env=env, capture_output=True, text=True)
    if tidy.returncode != 0:
        raise SystemExit(f"gobuild: {b.name}: go mod tidy failed:\n{tidy.stderr[-4000:]}")
    BIN.mkdir(parents=True, exist_ok=True)
    outdir = wrapper / "out"
    outdir.mkdir()
    log(f"gobuild: {b.name}: go build {' '.join(b.binaries)} (minutes on 2 cores)")
    cmd = [GO, "build", "-trimpath", "-ldflags", " ".join(["-s", "-w", *b.ldflags]),
           "-o", str(outdir) + "/", *b.packages]
    res = subprocess.run(cmd, cwd=wrapper, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"gobuild: {b.name}: go build failed:\n{res.stderr[-6000:]}")
    for pkg, name in zip(b.packages, b.binaries, strict=True):
        os.replace(outdir / pkg.rstrip("/").rsplit("/", 1)[-1], BIN / name)
    stamp_path(b).write_text(stamp(b) + "\n")
    log(f"gobuild: {b.name}: built in {time.monotonic() - t0:.0f} s")
    return True
