"""The warehouse's side tables, each with one owner: its DDL, migration, writes and reads in one class.

The IO manager owns the asset tables (schema ``ASSET_SCHEMA``); the registry owns ``model_versions``
and ``model_promotion_history``; ``stockml_core.market.quality.QuarantineStore`` owns ``quarantined_prices``.
The tables here live in ``main`` beside them:

* ``captured_events``: rare events captured while the platform runs (``CapturedEventStore``).
* ``shap_analysis``: every explained version's SHAP importance (``ShapAnalysisStore``).
* ``training_runs_log``: one row per training cycle, failed ones included (``TrainingRunsLog``).

``AssetTables`` is the read model ``stockml status`` and the summary use: the few questions they ask
of the asset tables, each a parameterised query, none of which creates anything.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd

from stockml_core.market.events import overlapping
from stockml_core.schemas import TrainingRunsSchema, columns
from stockml_core.storage.warehouse import ASSET_SCHEMA, Warehouse

__all__ = ["AssetTables", "CapturedEventStore", "ShapAnalysisStore", "TrainingRunsLog"]


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class CapturedEventStore:
    """Rare events captured dynamically (name, start, end, description), never twice, never overlapping."""

    TABLE = "captured_events"
    COLUMNS = ["name", "start", "end", "description"]
    DDL = 'create table if not exists captured_events (name varchar primary key, start date, "end" date, description varchar, captured_at timestamp)'

    def __init__(self, warehouse: Warehouse) -> None:
        self.warehouse = warehouse

    def read(self) -> pd.DataFrame:
        """The captured events in order of their start (empty, with the columns' types, before the first)."""
        if not self.warehouse.has_table(self.TABLE):
            return pd.DataFrame({c: pd.Series(dtype="datetime64[ns]" if c in ("start", "end") else object) for c in self.COLUMNS})
        df = self.warehouse.read('select name, start, "end", description from captured_events order by start')
        return df.assign(start=pd.to_datetime(df.start), end=pd.to_datetime(df.end))[self.COLUMNS]

    def record(self, event: dict, historical: pd.DataFrame) -> tuple[bool, str]:
        """Add ``event`` unless it is already known (here or in ``historical``) or overlaps a known event.

        The check and the insert are one transaction, so two capture runs can never both add it.
        Returns (added, why).
        """
        start, end = pd.Timestamp(event["start"]), pd.Timestamp(event["end"])
        with self.warehouse.connect() as con:
            con.execute(self.DDL)
            con.execute("begin transaction")
            try:
                stored = con.execute('select name, start, "end" from captured_events').df()
                known = pd.concat([historical[["name", "start", "end"]], stored], ignore_index=True)
                if event["name"] in set(known.name):
                    con.execute("rollback")
                    return False, f"{event['name']} is already in the catalog; nothing added"
                clash = overlapping(known, start, end)
                if clash:
                    con.execute("rollback")
                    return False, f"{event['name']} overlaps {', '.join(clash)}; nothing added"
                con.execute(
                    'insert into captured_events (name, start, "end", description, captured_at) values (?, ?, ?, ?, ?)',
                    [event["name"], start.date(), end.date(), event.get("description", ""), _now()],
                )
                con.execute("commit")
            except Exception:
                con.execute("rollback")
                raise
        return True, f"captured {event['name']} ({start:%Y-%m-%d}..{end:%Y-%m-%d}) into the catalog"


class ShapAnalysisStore:
    """Every explained model version's SHAP importance (global and per regime), one set of rows per version."""

    TABLE = "shap_analysis"
    DDL = (
        "create table if not exists shap_analysis (model_version varchar, regime varchar, "
        "feature_name varchar, importance_score double, rank integer, computed_at timestamp)"
    )

    def __init__(self, warehouse: Warehouse) -> None:
        self.warehouse = warehouse

    def replace(self, version: str, importance: pd.DataFrame) -> None:
        """Store ``importance`` (model_version, regime, feature_name, importance_score, rank) as ``version``'s
        rows, replacing what an earlier explanation of the same version stored, in one transaction."""
        stored = importance.assign(model_version=version, computed_at=_now())[  # noqa: F841 (read by DuckDB)
            ["model_version", "regime", "feature_name", "importance_score", "rank", "computed_at"]
        ]
        with self.warehouse.connect() as con:
            con.execute(self.DDL)
            con.execute("begin")
            try:
                con.execute("delete from shap_analysis where model_version = ?", [version])
                con.execute("insert into shap_analysis select * from stored")
                con.execute("commit")
            except Exception:
                con.execute("rollback")
                raise

    def read(self) -> pd.DataFrame:
        if not self.warehouse.has_table(self.TABLE):
            return pd.DataFrame(columns=["model_version", "regime", "feature_name", "importance_score", "rank", "computed_at"])
        return self.warehouse.read("select * from shap_analysis order by model_version, regime, rank")

    def top(self, n: int = 10) -> pd.DataFrame:
        """The newest explained version's ``n`` most important features over all regimes (feature_name, importance_score)."""
        if not self.warehouse.has_table(self.TABLE):
            return pd.DataFrame(columns=["feature_name", "importance_score"])
        return self.warehouse.read(
            "select feature_name, importance_score from shap_analysis where model_version = "
            "(select max(model_version) from shap_analysis) and regime = 'all' order by rank limit ?",
            [n],
        )


class TrainingRunsLog:
    """One row per training cycle (``TrainingRunsSchema``'s columns): trigger, samples, metrics, promoted, error.

    Appended by the ``training_runs`` asset for a finished cycle and by the run-failure sensor for a
    failed one; the asset's table is this log as it stands after the append.
    """

    TABLE = "training_runs_log"
    COLUMNS = columns(TrainingRunsSchema)
    DDL = (
        "create table if not exists training_runs_log (run_id varchar, recorded_at timestamp, "
        "trigger varchar, samples bigint, candidate_version varchar, accuracy double, "
        "balanced_accuracy double, promoted boolean, error varchar)"
    )
    MIGRATIONS = ("alter table training_runs_log add column if not exists metrics varchar",)  # warehouses from before the metrics column

    def __init__(self, warehouse: Warehouse) -> None:
        self.warehouse = warehouse

    def append(self, row: dict) -> pd.DataFrame:
        """Append one cycle (missing columns stored as NULL; ``recorded_at`` defaults to now) and return the whole log."""
        row = {"recorded_at": _now(), **row}
        cols = ", ".join(self.COLUMNS)  # identifiers are ours; every value is a parameter
        with self.warehouse.connect() as con:
            con.execute(self.DDL)
            for migration in self.MIGRATIONS:
                con.execute(migration)
            con.execute(f"insert into training_runs_log ({cols}) values ({', '.join('?' * len(self.COLUMNS))})", [row.get(c) for c in self.COLUMNS])
            return con.execute(f"select {cols} from training_runs_log order by recorded_at").df()

    def read(self) -> pd.DataFrame:
        if not self.warehouse.has_table(self.TABLE):
            return pd.DataFrame(columns=self.COLUMNS)
        return self.warehouse.read(f"select {', '.join(self.COLUMNS)} from training_runs_log order by recorded_at")


class AssetTables:
    """Read-only questions ``stockml status`` and the run summary ask of the IO manager's tables.

    Every method answers ``None`` (or an empty frame) when the table has not been materialized yet.
    """

    def __init__(self, warehouse: Warehouse, schema: str = ASSET_SCHEMA) -> None:
        self.warehouse = warehouse
        self.schema = schema

    def has(self, table: str) -> bool:
        return self.warehouse.has_table(table, self.schema)

    def _name(self, table: str) -> str:
        return f'"{self.schema}"."{table}"'  # identifiers are ours, never data

    def table(self, table: str, order_by: str | None = None) -> pd.DataFrame | None:
        """A whole asset table (``None`` before its first materialization)."""
        if not self.has(table):
            return None
        return self.warehouse.read(f"select * from {self._name(table)}" + (f" order by {order_by}" if order_by else ""))

    def price_rows(self) -> int:
        if not self.has("raw_prices"):
            return 0
        return int(self.warehouse.read(f"select count(*) as n from {self._name('raw_prices')}").n.iloc[0])

    def price_summary(self) -> pd.Series | None:
        """Rows, tickers, first and last date of ``raw_prices`` (n, t, a, b)."""
        if not self.has("raw_prices"):
            return None
        return self.warehouse.read(
            f"select count(*) as n, count(distinct ticker) as t, min(date) as a, max(date) as b from {self._name('raw_prices')}"
        ).iloc[0]

    def feature_count(self) -> int | None:
        """Features per (ticker, date): the feature matrix's columns less its two keys."""
        if not self.has("feature_matrix"):
            return None
        return self.warehouse.read(f"select * from {self._name('feature_matrix')} limit 0").shape[1] - 2

    def latest_drift(self, component: str = "overall") -> tuple[pd.Timestamp, float] | None:
        """The newest stored drift score of ``component``: (date, value)."""
        if not self.has("drift_report"):
            return None
        dr = self.warehouse.read(f"select date, value from {self._name('drift_report')} where component = ? order by date desc limit 1", [component])
        return (pd.Timestamp(dr.date.iloc[0]), float(dr.value.iloc[0])) if len(dr) else None

    def drift_before(self, day, component: str = "overall", limit: int = 250) -> pd.DataFrame:
        """The ``limit`` stored scores of ``component`` before ``day`` (all days if ``None``), newest first (date, value)."""
        if not self.has("drift_report"):
            return pd.DataFrame({"date": pd.Series(dtype="datetime64[ns]"), "value": pd.Series(dtype=float)})
        before, params = ("", [component, limit]) if day is None else (" and date < ?", [component, pd.Timestamp(day).to_pydatetime(), limit])
        return self.warehouse.read(
            f"select date, value from {self._name('drift_report')} where component = ?{before} order by date desc limit ?",
            params,
        )
