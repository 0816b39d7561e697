"""The embedded DuckDB warehouse: one file, short-lived connections, retried on a writer lock."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pandas as pd

# Every in-process connection to one DuckDB file must use the same configuration, or DuckDB refuses
# it; Dagster's DuckDB IO manager is configured with exactly this (see stockml_assets.resources).
# DuckDB's buffer pool may otherwise grow to 80% of the machine's memory and keeps what it wrote
# cached: a history run's feature writes (1.9M rows x 223 features at 375 names) held 1.2 GB per
# million rows until the transaction ended, and the process kept it. Capped, DuckDB spills to
# ``warehouse.duckdb.tmp`` instead (reading 1.9M feature rows back into pandas under the cap works).
CONNECTION_CONFIG = {"custom_user_agent": "stockml", "memory_limit": "1GB"}
# A long write of many blocks in one transaction (a history run's features) runs under a lower cap: at 375
# names x 20 years, storing the 1.89M feature rows in 250k-row blocks peaked at 4.16 GiB with 1 GB and at
# 3.45 GiB with 400 MB, in the same time (DuckDB writes the blocks' row groups to the file as they come).
BULK_WRITE_MEMORY_LIMIT = "400MB"
# The schema of the asset tables Dagster's IO manager writes; the registry and the side tables
# (stockml_core.storage.side_tables) live in "main".
ASSET_SCHEMA = "assets"


class Warehouse:
    """Opens short-lived connections to one DuckDB file.

    DuckDB allows one writing process at a time; a connection that meets another process's lock is
    retried for ``lock_timeout_s`` seconds before the error is raised.
    """

    def __init__(self, path: Path | str, lock_timeout_s: float = 60.0, read_only: bool = False) -> None:
        self.path = Path(path)
        self.lock_timeout_s = lock_timeout_s
        self.read_only = read_only  # every connection read-only: a reader (``stockml status``) can change nothing

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        read_only = read_only or self.read_only
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.lock_timeout_s
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=read_only, config=dict(CONNECTION_CONFIG))
                break
            except duckdb.IOException as exc:  # another process holds the write lock
                if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                    raise
                time.sleep(0.25)
        try:
            yield con
        finally:
            con.close()

    @contextmanager
    def held(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Keep the database open in this process for the block.

        DuckDB shares one open database between the connections of a process: while this one is
        open, every other connection to the file (Dagster's IO manager's, the registry's) attaches
        to it in well under a millisecond instead of opening the file again (about 20 ms each, some
        50 times a daily run). The price: the file stays locked for other processes for the whole
        block, so it is for in-process work on a warehouse nobody else writes (``stockml replay``).
        """
        with self.connect() as con:
            yield con

    def exists(self) -> bool:
        return self.path.exists()

    def has_table(self, table: str, schema: str = "main") -> bool:
        if not self.exists():
            return False
        with self.connect() as con:
            row = con.execute(
                "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
                [schema, table],
            ).fetchone()
        return bool(row and row[0])

    def read(self, query: str, params: list | None = None) -> pd.DataFrame:
        """Run a parameterised query and return its result as a DataFrame."""
        with self.connect() as con:
            return con.execute(query, params or []).df()
