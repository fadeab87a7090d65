"""``make images``: every image the chart references, built here without a registry.

1. A Debian base (``localhost/movierec/debian-python:bookworm``) from the machine's own apt
   sources with mmdebstrap, committed by buildah: the registry-free stand-in for the public
   ``python:3.11-slim-bookworm`` the Dockerfiles default to (users with Docker keep that).
2. Each ``docker/<component>.Dockerfile`` built by ``buildah bud --layers`` with the base passed
   as ``PYTHON_IMAGE``, tagged ``localhost/movierec-<component>:<chart appVersion>``.
3. Each image checked from inside itself (every module of its package imports, its entry point
   answers ``--help``), exported as a docker archive, imported into the node's containerd, and
   the archive deleted (disk is the scarce resource here).

Incremental: an image is rebuilt only when a file its Dockerfile copies changed (a digest of the
build inputs is stamped in .cache/images), and imported only when containerd lacks that build.
Buildah's storage lives under .cache/buildah, not in /var/lib/containers.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

from cluster.layout import CACHE, PATHS, ROOT

DOCKER = ROOT / "docker"
ARCHIVES = CACHE / "images"
BUILDAH_ROOT = CACHE / "buildah" / "storage"
BUILDAH_RUNROOT = Path("/run/movierec-buildah")
BASE_IMAGES = {
    # build-arg name -> (image name, Debian packages); a Dockerfile gets the ones it declares
    "PYTHON_IMAGE": ("localhost/movierec/debian-python:bookworm",
                     ("python3", "python3-venv", "ca-certificates", "tzdata")),
    "DEBIAN_IMAGE": ("localhost/movierec/debian:bookworm", ("ca-certificates",)),
    "JAVA_IMAGE": ("localhost/movierec/debian-java:bookworm",
                   ("openjdk-17-jre-headless", "ca-certificates")),
}
def _prometheus() -> None:
    from cluster import addons, gobuild

    gobuild.build(addons.prometheus_build())


# Go binaries a Dockerfile copies from .cache/bin, built (and stamped) first
PREBUILT = {"prometheus": _prometheus}
BUILD_ARG = re.compile(r"^ARG\s+([A-Z_]+)=", re.M)
SUITE = "bookworm"


def chart_version() -> str:
    chart = yaml.safe_load((ROOT / "charts" / "movierec" / "Chart.yaml").read_text())
    return str(chart["appVersion"])


@dataclass(frozen=True)
class Image:
    component: str

    @property
    def dockerfile(self) -> Path:
        return DOCKER / f"{self.component}.Dockerfile"

    @property
    def name(self) -> str:
        return f"localhost/movierec-{self.component}:{chart_version()}"

    @property
    def archive(self) -> Path:
        return ARCHIVES / f"movierec-{self.component}.docker.tar"


def components() -> list[str]:
    return sorted(p.name.removesuffix(".Dockerfile") for p in DOCKER.glob("*.Dockerfile"))


def buildah(*args: str, capture: bool = True) -> subprocess.CompletedProcess:
    cmd = ["buildah", "--root", str(BUILDAH_ROOT), "--runroot", str(BUILDAH_RUNROOT),
           "--storage-driver", "overlay", *args]
    res = subprocess.run(cmd, capture_output=capture, text=True)
    if res.returncode != 0:
        detail = (res.stderr or "")[-4000:] if capture else ""
        raise SystemExit(f"images: buildah {' '.join(args[:3])} failed: {detail}")
    return res


def apt_sources() -> list[Path]:
    """The machine's own apt sources (never a hard-coded mirror), for mmdebstrap."""
    found = [p for p in [Path("/etc/apt/sources.list"),
                         *sorted(Path("/etc/apt/sources.list.d").glob("*.list")),
                         *sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))]
             if p.is_file() and p.read_text().strip()]
    if not found:
        raise SystemExit("images: no apt sources on this machine to build the base image from")
    return found


def image_id(name: str) -> str:
    res = subprocess.run(["buildah", "--root", str(BUILDAH_ROOT), "--runroot", str(BUILDAH_RUNROOT),
                          "--storage-driver", "overlay", "inspect", "--type", "image",
                          "--format", "{{.FromImageID}}", name], capture_output=True, text=True)
    return res.stdout.strip() if res.returncode == 0 else ""


def image_exists(name: str) -> bool:
    res = subprocess.run(["buildah", "--root", str(BUILDAH_ROOT), "--runroot", str(BUILDAH_RUNROOT),
                          "--storage-driver", "overlay", "inspect", "--type", "image", name],
                         capture_output=True, text=True)
    return res.returncode == 0


def build_base(arg: str, log=print) -> str:
    name, packages = BASE_IMAGES[arg]
    stamp = ARCHIVES / f"{arg}.stamp"
    recipe = f"{SUITE} {' '.join(packages)}"
    if image_exists(name) and stamp.is_file() and stamp.read_text().strip() == recipe:
        return name
    ARCHIVES.mkdir(parents=True, exist_ok=True)
    rootfs = ARCHIVES / f"{arg}.rootfs.tar"
    t0 = time.monotonic()
    cmd = ["mmdebstrap", "--quiet", "--variant=apt", "--include=" + ",".join(packages),
           # no docs, man pages or apt lists in the image (what the slim images drop too)
           "--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/doc/*",
           "--dpkgopt=path-include=/usr/share/doc/*/copyright",
           # Java's postinst links its man page with update-alternatives into man1 (as slim
           # images do, keep the directory while its contents are excluded)
           "--setup-hook=mkdir -p \"$1\"/usr/share/man/man1",
           "--customize-hook=rm -rf \"$1\"/var/lib/apt/lists/* \"$1\"/var/cache/apt/*",
           SUITE, str(rootfs), *map(str, apt_sources())]
    subprocess.run(cmd, check=True)
    ctr = buildah("from", "scratch").stdout.strip()
    try:
        buildah("add", ctr, str(rootfs), "/")
        buildah("config", "--env", "LANG=C.UTF-8", "--cmd", "/bin/bash",
                "--label", f"org.opencontainers.image.description=Debian {SUITE}: "
                           + " ".join(packages), ctr)
        buildah("commit", "--rm", ctr, name)
    except SystemExit:
        buildah("rm", ctr)
        raise
    rootfs.unlink()
    stamp.write_text(recipe + "\n")
    log(f"images: base {name} built in {time.monotonic() - t0:.0f} s")
    return name


COPY_SRC = re.compile(r"^COPY\s+(?!--from)(.+?)\s+\S+\s*$", re.M)


def build_inputs(dockerfile: Path) -> list[Path]:
    """The files a Dockerfile's COPY lines take from the context (the repo root)."""
    text = dockerfile.read_text()
    paths: list[Path] = [dockerfile]
    for match in COPY_SRC.finditer(text):
        for src in match.group(1).split():
            if src.startswith("--"):
                continue
            p = ROOT / src
            paths += sorted(f for f in p.rglob("*") if f.is_file() and "__pycache__" not in f.parts) \
                if p.is_dir() else [p]
    return paths


def inputs_digest(paths: Iterable[Path], extra: str) -> str:
    h = hashlib.sha256(extra.encode())
    for p in paths:
        h.update(str(p.relative_to(ROOT)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


# Run inside each image after it is built: every module of the package (and of movierec_core)
# imports, and the entry point answers --help. Lazy imports inside functions are not caught by
# importing modules; the cluster tests exercise those paths for real.
IMPORT_CHECK = """
import importlib, importlib.metadata, pkgutil, subprocess, sys
pkg, requirements = sys.argv[1], sys.argv[2:]
names = []
# every direct requirement's top-level modules: the project imports many of them lazily, inside
# functions, where importing the project's modules does not reach (e.g. implicit's OpenMP)
provides = {}
for module, dists in importlib.metadata.packages_distributions().items():
    for dist in dists:
        provides.setdefault(dist.lower().replace("_", "-"), set()).add(module)
for requirement in requirements:
    modules = sorted(m for m in provides.get(requirement, ()) if not m.startswith("_"))
    if not modules:
        sys.exit(f"requirement {requirement} is not installed in the image")
    for module in modules:
        importlib.import_module(module)
        names.append(module)
for top in (pkg, "movierec_core"):
    mod = importlib.import_module(top)
    names.append(top)
    for info in pkgutil.walk_packages(mod.__path__, top + "."):
        if info.name.rsplit(".", 1)[-1] == "__main__":
            continue
        importlib.import_module(info.name)
        names.append(info.name)
res = subprocess.run([sys.executable, "-m", pkg, "--help"], capture_output=True, text=True)
if res.returncode != 0:
    sys.exit(f"python -m {pkg} --help exited {res.returncode}: {res.stderr[-2000:]}")
print(f"{len(names)} modules import; python -m {pkg} --help ok")
"""


def package_of(component: str) -> str:
    return component.replace("-", "_")


# Images that do not run `python -m <package>`: what proves their entry point is complete.
INFRA_CHECKS = {
    "kafka": ["sh", "-c", "java -version 2>&1 | head -1 && ls /opt/kafka/libs/kafka_2.13-*.jar "
                          "&& java -cp '/opt/kafka/libs/*' kafka.tools.StorageTool --help >/dev/null "
                          "&& echo StorageTool ok"],
    "redis": ["redis-server", "--version"],
    "prometheus": ["sh", "-c", "prometheus --version 2>&1 | head -1"],
    "pushgateway": ["sh", "-c", "prometheus-pushgateway --version 2>&1 | head -1"],
}


EXTRA = re.compile(r"p\['optional-dependencies'\]\['([a-z-]+)'\]")


def direct_requirements(dockerfile: Path) -> list[str]:
    """Distribution names the Dockerfile installs: pyproject's core dependencies plus the
    extras its RUN line names."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in EXTRA.findall(dockerfile.read_text()):
        reqs += project["optional-dependencies"][extra]
    return sorted({re.split(r"[=<>!~\[ ]", r, maxsplit=1)[0].lower().replace("_", "-")
                   for r in reqs})


def check_inside(image: Image) -> str:
    """Run the image's check from inside it, as its own user: every module of its Python
    package imports and its entry point answers --help (or, for Kafka, Redis and Prometheus,
    the program runs)."""
    ctr = buildah("from", "--pull-never", image.name).stdout.strip()
    try:
        argv = INFRA_CHECKS.get(image.component) or \
            ["python", "-c", IMPORT_CHECK, package_of(image.component),
             *direct_requirements(image.dockerfile)]
        res = buildah("run", "--network", "none", ctr, "--", *argv)
        return " | ".join(res.stdout.strip().splitlines()[-3:])
    finally:
        buildah("rm", ctr)


def build_machine_volumes() -> list[str]:
    """``-v`` mounts that give RUN steps this machine's pip trust store, not baked into the image.

    Package registries are reached through a TLS proxy whose CA only this machine's bundle holds
    (``PIP_CERT`` / pip's ``global.cert``); a RUN step's pip needs it, the image must not keep it.
    """
    cert = os.environ.get("PIP_CERT") or subprocess.run(
        [sys.executable, "-m", "pip", "config", "get", "global.cert"],
        capture_output=True, text=True).stdout.strip()
    if not cert or not Path(cert).is_file():
        return []
    conf = ARCHIVES / "build-pip.conf"
    conf.write_text("[global]\ncert = /etc/ssl/certs/build-machine-ca.crt\n")
    return ["-v", f"{cert}:/etc/ssl/certs/build-machine-ca.crt:ro", "-v", f"{conf}:/etc/pip.conf:ro"]


def build_image(image: Image, log=print) -> bool:
    """Build one image unless its inputs are unchanged; True when it was (re)built."""
    if image.component in PREBUILT:
        PREBUILT[image.component]()  # binaries its Dockerfile copies from the context
    declared = BUILD_ARG.findall(image.dockerfile.read_text())
    bases = {arg: build_base(arg, log) for arg in declared if arg in BASE_IMAGES}
    digest = inputs_digest(build_inputs(image.dockerfile),
                           " ".join(f"{a}={n}:{BASE_IMAGES[a][1]}" for a, n in bases.items()))
    stamp = ARCHIVES / f"movierec-{image.component}.stamp"
    if image_exists(image.name) and stamp.is_file() and stamp.read_text().strip() == digest:
        return False
    t0 = time.monotonic()
    previous = image_id(image.name)
    args = ["bud", "--layers", "--pull-never", "--network", "host", "--quiet",
            "-f", str(image.dockerfile), "-t", image.name]
    for arg, name in bases.items():
        args += ["--build-arg", f"{arg}={name}"]
    args += build_machine_volumes()
    buildah(*args, str(ROOT))
    log(f"images: {image.name} built in {time.monotonic() - t0:.0f} s; "
        f"inside it: {check_inside(image)}")
    stamp.write_text(digest + "\n")
    # the build this one replaced is only disk now; the untagged intermediate images of
    # --layers are the cache the next build reuses (its pip install layer above all): kept
    if previous and previous != image_id(image.name):
        subprocess.run(["buildah", "--root", str(BUILDAH_ROOT), "--runroot", str(BUILDAH_RUNROOT),
                        "--storage-driver", "overlay", "rmi", previous], capture_output=True)
    return True


def import_into_cluster(image: Image, log=print) -> bool:
    """Import the archive into the node's containerd when it lacks this build."""
    from cluster import node

    if not node.ready_marker().is_file():
        raise SystemExit("images: the cluster is not up (`make cluster-up`); built images are in "
                         f"{ARCHIVES}")
    build_stamp = (ARCHIVES / f"movierec-{image.component}.stamp").read_text().strip()
    mark = PATHS.root / "imported" / f"movierec-{image.component}"
    if mark.is_file() and mark.read_text().strip() == build_stamp and node.image_present(image.name):
        return False
    t0 = time.monotonic()
    # an archive only for the import: kept, every image would be on the disk a third time
    image.archive.unlink(missing_ok=True)
    buildah("push", "--quiet", image.name, f"docker-archive:{image.archive}:{image.name}")
    try:
        node.import_archive(image.archive)
    finally:
        image.archive.unlink(missing_ok=True)
    mark.parent.mkdir(parents=True, exist_ok=True)
    mark.write_text(build_stamp + "\n")
    log(f"images: {image.name} imported into the node in {time.monotonic() - t0:.0f} s")
    return True


def build_all(only: list[str] | None = None, import_: bool = True, log=print) -> dict[str, float]:
    times: dict[str, float] = {}
    for component in only or components():
        image = Image(component)
        t0 = time.monotonic()
        built = build_image(image, log)
        imported = import_into_cluster(image, log) if import_ else False
        times[component] = round(time.monotonic() - t0, 1)
        if not built and not imported:
            log(f"images: {image.name} up to date")
    return times
