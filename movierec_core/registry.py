"""The model registry: immutable versions + movable aliases (``champion``, ``challenger``).

File layout (default backend, under ``data.registry_root``)::

    <root>/<model_name>/versions/<version>/      a bundle (see movierec_core.models.bundle),
                                                 never modified after registration;
                                                 manifest.json has "version" set
    <root>/<model_name>/versions/<version>/registry.json   {"version", "registered_at", "source"}
    <root>/<model_name>/aliases/<alias>.json     {"alias", "version", "updated_at",
                                                  "history": [previous versions, newest first]}
    <root>/<model_name>/.staging/                bundles being copied in (ignored by readers)

Versions are ``v0001``, ``v0002``, ... allocated by an atomic directory rename (two trainers
registering at once get different numbers). Alias files are replaced atomically with
``os.replace`` so a reader (the model server polling ``champion``) sees the old or the new
version, never a torn file. A KServe ``storageUri`` can point straight at a version directory.

``Registry`` is the interface; ``FileRegistry`` the file backend. An object-store backend
implements the same methods (``resolve`` would then download to a local cache).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from movierec_core.models.bundle import MANIFEST, read_manifest, write_hashes, write_manifest

CHAMPION = "champion"
CHALLENGER = "challenger"
_VERSION = re.compile(r"^v(\d+)$")
_ALIAS = re.compile(r"^[a-z][a-z0-9_-]*$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class RegistryError(Exception):
    """A registry operation that cannot be done (unknown version/alias, bad bundle)."""


@dataclass(frozen=True)
class VersionInfo:
    model_name: str
    version: str
    path: Path
    manifest: dict[str, Any]
    aliases: tuple[str, ...]

    @property
    def snapshot_id(self) -> str:
        """The lake snapshot the version was trained on ("" when unknown)."""
        return str((self.manifest.get("snapshot") or {}).get("id") or "")

    def summary(self) -> dict[str, Any]:
        m = self.manifest
        return {"version": self.version, "aliases": list(self.aliases),
                "model_type": m.get("model_type"), "created_at": m.get("created_at"),
                "snapshot": (m.get("snapshot") or {}).get("id"),
                "metrics": {k: v for k, v in (m.get("metrics") or {}).items()
                            if not isinstance(v, dict)},
                "path": str(self.path)}


class Registry(Protocol):
    def register(self, model_name: str, bundle_dir: Path | str,
                 aliases: tuple[str, ...] = ()) -> str: ...
    def versions(self, model_name: str) -> list[VersionInfo]: ...
    def show(self, model_name: str, ref: str) -> VersionInfo: ...
    def set_alias(self, model_name: str, alias: str, version: str) -> None: ...
    def get_alias(self, model_name: str, alias: str) -> str | None: ...
    def promote(self, model_name: str, version: str | None = None) -> str: ...
    def rollback(self, model_name: str, alias: str = CHAMPION) -> str: ...
    def resolve(self, model_name: str, ref: str) -> Path: ...


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


class FileRegistry:
    """The registry on a (shared) file system."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    # --- paths ---------------------------------------------------------------------------
    def model_dir(self, model_name: str) -> Path:
        if not _NAME.match(model_name):
            raise RegistryError(f"bad model name {model_name!r}")
        return self.root / model_name

    def version_dir(self, model_name: str, version: str) -> Path:
        return self.model_dir(model_name) / "versions" / version

    def alias_file(self, model_name: str, alias: str) -> Path:
        if not _ALIAS.match(alias):
            raise RegistryError(f"bad alias {alias!r}")
        return self.model_dir(model_name) / "aliases" / f"{alias}.json"

    # --- writes --------------------------------------------------------------------------
    def register(self, model_name: str, bundle_dir: Path | str,
                 aliases: tuple[str, ...] = ()) -> str:
        """Copy a bundle in as a new immutable version; optionally point aliases at it."""
        src = Path(bundle_dir)
        if not (src / MANIFEST).is_file():
            raise RegistryError(f"not a bundle (no {MANIFEST}): {src}")
        mdir = self.model_dir(model_name)
        (mdir / "versions").mkdir(parents=True, exist_ok=True)
        staging = mdir / ".staging" / uuid.uuid4().hex
        # bundles are immutable once written, so hard links are a safe, instant "copy"
        shutil.copytree(src, staging, copy_function=_link_or_copy)
        try:
            while True:
                number = max([self._number(v) for v in self._version_names(model_name)] + [0]) + 1
                version = f"v{number:04d}"
                manifest = read_manifest(staging)
                manifest["version"] = version
                manifest["model_name"] = model_name
                write_manifest(staging, manifest)
                write_hashes(staging)
                _write_json_atomic(staging / "registry.json", {
                    "version": version, "registered_at": _now(), "source": str(src)})
                try:
                    os.rename(staging, self.version_dir(model_name, version))
                    break
                except OSError:  # another writer took this number: take the next one
                    continue
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        for alias in aliases:
            self.set_alias(model_name, alias, version)
        return version

    def set_alias(self, model_name: str, alias: str, version: str) -> None:
        """Point ``alias`` at ``version`` (atomic file replace), remembering the previous one."""
        if not self.version_dir(model_name, version).is_dir():
            raise RegistryError(f"{model_name}: no version {version!r}")
        path = self.alias_file(model_name, alias)
        old = self._read_alias(model_name, alias)
        history = list(old.get("history", [])) if old else []
        if old and old.get("version") and old["version"] != version:
            history.insert(0, old["version"])
        _write_json_atomic(path, {"alias": alias, "version": version, "updated_at": _now(),
                                  "history": history[:50]})

    def promote(self, model_name: str, version: str | None = None) -> str:
        """Make ``version`` (default: the current challenger) the champion."""
        target = version or self.get_alias(model_name, CHALLENGER)
        if not target:
            raise RegistryError(f"{model_name}: nothing to promote (no challenger)")
        target = self._resolve_version(model_name, target)
        self.set_alias(model_name, CHAMPION, target)
        return target

    def rollback(self, model_name: str, alias: str = CHAMPION) -> str:
        """Point ``alias`` back at the version it pointed at before."""
        cur = self._read_alias(model_name, alias)
        if not cur or not cur.get("history"):
            raise RegistryError(f"{model_name}: {alias} has no previous version to roll back to")
        previous, rest = cur["history"][0], cur["history"][1:]
        if not self.version_dir(model_name, previous).is_dir():
            raise RegistryError(f"{model_name}: previous version {previous} no longer exists")
        _write_json_atomic(self.alias_file(model_name, alias), {
            "alias": alias, "version": previous, "updated_at": _now(), "history": rest,
            "rolled_back_from": cur["version"]})
        return previous

    # --- reads ---------------------------------------------------------------------------
    def get_alias(self, model_name: str, alias: str) -> str | None:
        data = self._read_alias(model_name, alias)
        return data.get("version") if data else None

    def alias_history(self, model_name: str, alias: str) -> list[str]:
        """The versions ``alias`` pointed at before, latest first (what ``rollback`` uses)."""
        data = self._read_alias(model_name, alias)
        return list(data.get("history", [])) if data else []

    def aliases(self, model_name: str) -> dict[str, str]:
        adir = self.model_dir(model_name) / "aliases"
        out = {}
        for f in sorted(adir.glob("*.json")) if adir.is_dir() else []:
            v = self.get_alias(model_name, f.stem)
            if v:
                out[f.stem] = v
        return out

    def versions(self, model_name: str) -> list[VersionInfo]:
        aliases = self.aliases(model_name)
        out = []
        for v in sorted(self._version_names(model_name), key=self._number):
            path = self.version_dir(model_name, v)
            out.append(VersionInfo(model_name, v, path, read_manifest(path),
                                   tuple(a for a, av in sorted(aliases.items()) if av == v)))
        return out

    def show(self, model_name: str, ref: str) -> VersionInfo:
        version = self._resolve_version(model_name, ref)
        path = self.version_dir(model_name, version)
        aliases = self.aliases(model_name)
        return VersionInfo(model_name, version, path, read_manifest(path),
                           tuple(a for a, av in sorted(aliases.items()) if av == version))

    def resolve(self, model_name: str, ref: str) -> Path:
        """Bundle directory of an alias (``champion``) or a version (``v0003``)."""
        return self.version_dir(model_name, self._resolve_version(model_name, ref))

    def model_names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "versions").is_dir())

    # --- helpers -------------------------------------------------------------------------
    def _resolve_version(self, model_name: str, ref: str) -> str:
        if _VERSION.match(ref):
            if not self.version_dir(model_name, ref).is_dir():
                raise RegistryError(f"{model_name}: no version {ref!r}")
            return ref
        version = self.get_alias(model_name, ref)
        if version is None:
            raise RegistryError(f"{model_name}: no alias or version {ref!r}")
        return version

    def _read_alias(self, model_name: str, alias: str) -> dict[str, Any] | None:
        path = self.alias_file(model_name, alias)
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return None

    def _version_names(self, model_name: str) -> list[str]:
        vdir = self.model_dir(model_name) / "versions"
        return [p.name for p in vdir.iterdir() if _VERSION.match(p.name)] if vdir.is_dir() else []

    @staticmethod
    def _number(version: str) -> int:
        m = _VERSION.match(version)
        return int(m.group(1)) if m else -1


def open_registry(uri: str | Path) -> FileRegistry:
    """A registry from a path or ``file://`` URI; object stores are a future backend."""
    s = str(uri)
    if s.startswith("file://"):
        s = s[len("file://"):]
    elif "://" in s:
        raise RegistryError(f"registry backend not implemented for {s!r} (files only for now)")
    return FileRegistry(s)
