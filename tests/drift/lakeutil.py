"""Write synthetic windows into a lake laid out as the ingestor writes it (tests only)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from drift.window import Catalog, Window
from movierec_core import lake


def _write(root: Path, table: str, frame: pd.DataFrame, name: str) -> None:
    schema = lake.SCHEMAS[table]
    frame = frame.copy()
    n = len(frame)
    for col in schema.names:
        if col not in frame:
            frame[col] = [None] * n if col not in ("event_id",) else range(n)
    if "time" in frame and n:
        for day, part in frame.groupby(frame["time"].dt.date):
            out = lake.partition_dir(root, table, day)
            out.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.Table.from_pandas(part[schema.names], schema=schema,
                                                preserve_index=False), out / f"{name}.parquet")
    elif n:
        out = lake.table_dir(root, table)
        out.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pandas(frame[schema.names], schema=schema,
                                            preserve_index=False), out / f"{name}.parquet")


def write_window(root: Path, window: Window, name: str) -> None:
    _write(root, lake.WATCH_MINUTES, window.watch_minutes, name)
    _write(root, lake.RATINGS, window.ratings, name)
    _write(root, lake.ACCOUNT_CREATIONS, window.account_creations, name)
    _write(root, lake.RECOMMENDATION_REQUESTS, window.recommendation_requests, name)


def write_catalog(root: Path, catalog: Catalog, name: str = "catalog") -> None:
    _write(root, lake.USERS, catalog.users, name)
    _write(root, lake.MOVIES, catalog.movies, name)
