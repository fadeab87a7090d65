"""Retention: how long each kind of data is kept, enforced by the ingestor's maintenance loop
(every ``maintenance_interval_s``) and by ``python -m ingestor retention``.

* raw events (``ingestor.raw_retention_days``): lake partitions of the dated tables (events and
  watch sessions) whose event date is older are deleted whole, under the partition's lock;
* online store (``ingestor.online_store_retention_days``): interactions last touched before the
  cutoff are deleted (SQLite; the Redis backend sets the same TTL on its keys);
* snapshots (``ingestor.snapshots_keep``): the newest N are kept, plus every snapshot a kept
  model version was trained on;
* registry versions (``ingestor.registry_keep``): the newest N per model are kept, plus every
  version an alias points at and the champion's lineage (its alias history: what a rollback
  goes back to, ``ingestor.champion_lineage_keep`` entries);
* the dead-letter topic is created with ``retention.ms`` = ``kafka.dlq_retention_days``.

0 means "keep for ever" everywhere (the defaults; the chart sets production values). Event
dates are compared with the wall clock (UTC).
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ingestor.lake import partitions
from movierec_core.lake import partition_dir
from movierec_core.registry import CHAMPION, FileRegistry
from movierec_core.snapshot import DATED_TABLES, delete_snapshot, list_snapshots, partition_lock

log = logging.getLogger("ingestor.retention")


@dataclass(frozen=True)
class RetentionPolicy:
    raw_days: int = 0
    online_store_days: int = 0
    snapshots_keep: int = 0
    registry_keep: int = 0
    champion_lineage_keep: int = 3

    @classmethod
    def from_config(cls, icfg: Any) -> RetentionPolicy:
        return cls(int(icfg.raw_retention_days), int(icfg.online_store_retention_days),
                   int(icfg.snapshots_keep), int(icfg.registry_keep),
                   int(icfg.champion_lineage_keep))

    @property
    def active(self) -> bool:
        return bool(self.raw_days or self.online_store_days or self.snapshots_keep
                    or self.registry_keep)


@dataclass
class RetentionReport:
    partitions_deleted: list[str] = field(default_factory=list)
    online_store_interactions: int = 0
    versions_deleted: list[str] = field(default_factory=list)
    snapshots_deleted: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def apply_retention(policy: RetentionPolicy, lake_root: Path | str, store=None,
                    registry_root: Path | str | None = None,
                    now: datetime | None = None) -> RetentionReport:
    lake_root = Path(lake_root)
    now = now or datetime.now(UTC).replace(tzinfo=None)
    report = RetentionReport()
    if policy.raw_days:
        cutoff = (now - timedelta(days=policy.raw_days)).date()
        for table in DATED_TABLES:
            for day in partitions(lake_root, table):
                if day < cutoff:
                    _delete_partition(partition_dir(lake_root, table, day))
                    report.partitions_deleted.append(f"{table}/{day.isoformat()}")
    if policy.online_store_days and store is not None:
        report.online_store_interactions = store.expire(
            now - timedelta(days=policy.online_store_days))
    kept_snapshots: set[str] = set()
    registry = FileRegistry(registry_root) if registry_root else None
    if registry is not None:
        for model in registry.model_names():
            report.versions_deleted += _prune_versions(registry, model, policy, kept_snapshots)
    if policy.snapshots_keep:
        snapshots = list_snapshots(lake_root)
        kept_snapshots |= set(snapshots[-policy.snapshots_keep:])
        for snapshot_id in snapshots:
            if snapshot_id not in kept_snapshots:
                delete_snapshot(lake_root, snapshot_id)
                report.snapshots_deleted.append(snapshot_id)
    if any(asdict(report).values()):
        log.info("retention: %s", json.dumps(report.to_json()))
    return report


def _delete_partition(directory: Path) -> None:
    with partition_lock(directory):
        for path in directory.iterdir():
            if path.name != ".lock":
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()
    shutil.rmtree(directory, ignore_errors=True)


def _prune_versions(registry: FileRegistry, model: str, policy: RetentionPolicy,
                    kept_snapshots: set[str]) -> list[str]:
    versions = registry.versions(model)
    keep = {v.version for v in versions if v.aliases}
    keep |= set(registry.alias_history(model, CHAMPION)[:policy.champion_lineage_keep])
    if policy.registry_keep:
        keep |= {v.version for v in versions[-policy.registry_keep:]}
    else:
        keep |= {v.version for v in versions}
    deleted = []
    for v in versions:
        if v.version in keep:
            kept_snapshots.add(v.snapshot_id)
            continue
        shutil.rmtree(v.path)
        deleted.append(f"{model}/{v.version}")
    return deleted
