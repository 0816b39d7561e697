"""The local Dagster instance's event log: SQLite without an fsync per event.

Dagster's SQLite event log opens, commits and closes a connection for every event; with SQLite's
default ``synchronous=FULL`` each of those waits for the disk (about 20 ms a commit on our VMs).
A single-run backfill of the sample's 7,000 trading days writes tens of thousands of events
(materialization planned and materialized, per partition), which made ``stockml run`` take tens
of minutes. ``synchronous=OFF`` leaves durability to the OS: an application crash cannot corrupt
the log (WAL mode), a power loss can lose its last events. That is the right trade for a local,
single-user instance; a shared deployment uses Postgres storage (DESIGN.md's scale-out path).
"""

import os
from collections import OrderedDict
from contextlib import contextmanager

from dagster._core.events import ASSET_EVENTS
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable, SqlEventLogStorageTable
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._serdes import serialize_value
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy import event
from sqlalchemy.pool import SingletonThreadPool


def _pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=OFF")
    cursor.close()


class LocalEventLogStorage(SqliteEventLogStorage):
    """Dagster's per-run-sharded SQLite event log, with ``PRAGMA synchronous=OFF`` on every connection
    and the engines of the few most recently used shards kept (Dagster builds and disposes one per
    event, which costs more than the insert)."""

    MAX_OPEN_SHARDS = 4

    @property
    def supports_partition_subset_in_asset_materialization_planned_events(self) -> bool:
        # One "planned" event per asset for a single-run backfill instead of one per partition (what
        # DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS does): a 7,000-day history run spent two
        # minutes writing them. The cost: a failed range run does not mark its partitions failed
        # (they stay "missing"), and the run itself shows the failure.
        return True

    def _store_asset_check_evaluation_planned(self, event, event_id) -> None:
        """One "planned" row per check and run, not one per partition of a range run.

        A partition-range run of a job without the training assets plans every asset check with the
        run's whole partition range, although our checks are all on unpartitioned tables. Dagster then
        writes one row per trading day, each with its own serialized copy of the event (about 35 KB: the
        calendar with its holidays), and the evaluation, which carries no partition, completes none of
        them, so the UI shows them planned forever: 4 checks x 1,660 days took most of a 2011 replay's
        history run. One row with no partition is what the evaluation then completes.
        """
        planned = event.dagster_event.event_specific_data
        subset = planned.partitions_subset
        if subset is None or len(subset) <= 1:
            return super()._store_asset_check_evaluation_planned(event, event_id)
        with self.index_connection() as conn:
            conn.execute(
                AssetCheckExecutionsTable.insert().values(
                    asset_key=planned.asset_key.to_string(),
                    check_name=planned.check_name,
                    partition=None,
                    run_id=event.run_id,
                    execution_status=AssetCheckExecutionRecordStatus.PLANNED.value,
                    evaluation_event=serialize_value(event),
                    evaluation_event_timestamp=self._event_insert_timestamp(event),
                    evaluation_event_storage_id=event_id,
                )
            )

    def store_event_batch(self, events) -> None:
        """The per-day materializations of a range run in one transaction per shard, not three each.

        A history run over 3,750 trading days emits 11,000 materializations (one per asset and day) that
        Dagster hands over as one batch per asset when ``DAGSTER_EVENT_BATCH_SIZE`` is set (``BATCH_SIZE``
        below: ``enable_event_batches``); stored one by one they took 60% of a 6-ticker history run. The
        rows are those ``store_event`` writes: every event in the run shard and mirrored in the index
        shard with its tags; the asset's summary row (its latest materialization) is written once per
        asset and event type, with the batch's last event, which is what writing each in turn leaves.
        Anything but asset events of one run goes through ``store_event`` one by one."""
        if (
            not events
            or len({e.run_id for e in events}) != 1
            or any(not e.is_dagster_event or e.dagster_event_type not in ASSET_EVENTS or not e.dagster_event.asset_key for e in events)
        ):
            return super().store_event_batch(events)
        rows = [self._event_to_row(e) for e in events]
        with self.run_connection(events[0].run_id) as conn:
            conn.execute(SqlEventLogStorageTable.insert(), rows)
        with self.index_transaction() as conn:
            ids = [conn.execute(SqlEventLogStorageTable.insert().values(**row)).inserted_primary_key[0] for row in rows]
            self._store_asset_event_tags(conn, events, ids)
            latest = {}
            for event, event_id in zip(events, ids, strict=True):
                key = (event.dagster_event.asset_key, event.dagster_event_type)
                latest.pop(key, None)  # re-inserted: the summary rows are applied in the order of their last event
                latest[key] = (event, event_id)
            for event, event_id in latest.values():
                self._store_asset_event(conn, event, event_id)

    def has_table(self, table_name: str) -> bool:
        """Whether the index shard has a table, remembered once true (Dagster asks on every event,
        through a new engine each time: a fifth of a history run's event writing). Tables are only
        ever added, by migrations."""
        if table_name in self._tables_present:
            return True
        present = super().has_table(table_name)
        if present:
            self._tables_present.add(table_name)
        return present

    def __init__(self, base_dir: str, inst_data=None):
        self._engines: OrderedDict = OrderedDict()
        self._tables_present: set[str] = set()
        super().__init__(base_dir, inst_data=inst_data)

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> "LocalEventLogStorage":
        return cls(inst_data=inst_data, **config_value)

    def _engine(self, shard: str):
        engine = self._engines.pop(shard, None)
        if engine is None:
            engine = sa_create_engine(
                self.conn_string_for_shard(shard),
                poolclass=SingletonThreadPool,
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
            )
            event.listen(engine, "connect", _pragmas)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
        self._engines[shard] = engine
        while len(self._engines) > self.MAX_OPEN_SHARDS:
            _, old = self._engines.popitem(last=False)
            old.dispose()
        return engine

    @contextmanager
    def _connect(self, shard: str):
        with self._db_lock:
            with self._engine(shard).connect() as conn, conn.begin():
                yield conn

    def dispose(self) -> None:
        with self._db_lock:
            for engine in self._engines.values():
                engine.dispose()
            self._engines.clear()
        super().dispose()


BATCH_SIZE = 10_000  # events of one batch stored at once (Dagster reads DAGSTER_EVENT_BATCH_SIZE on every event)


def enable_event_batches() -> None:
    """Have Dagster hand a range run's per-partition materializations to ``store_event_batch`` together
    (unless the environment already chose a batch size). Called when the project's definitions load, so
    every process that executes its runs (the CLI, ``dagster dev``'s run workers, the daemon) batches."""
    os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", str(BATCH_SIZE))


def event_log_config(base_dir: str) -> dict:
    """The ``event_log_storage`` block of a dagster.yaml (or instance overrides) using this storage."""
    return {"module": __name__, "class": "LocalEventLogStorage", "config": {"base_dir": base_dir}}
