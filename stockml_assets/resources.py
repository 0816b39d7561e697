"""Resources: where the data and the runtime state live, configurable through the environment."""

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from dagster import ConfigurableIOManager, ConfigurableResource, InputContext, OutputContext
from dagster._core.storage.db_io_manager import DbIOManager
from dagster_duckdb.io_manager import DuckDbClient
from dagster_duckdb_pandas import DuckDBPandasIOManager, DuckDBPandasTypeHandler

from stockml_core.settings import (
    FAST_TRAINING,
    OVERRIDES_FROM_ENV,
    Settings,
    check_load_time_drift,
    data_dir_from_env,
    fast_from_env,
    home_from_env,
    overridden,
    overrides_from_env,
)
from stockml_core.storage.matrix_store import TrainingMatrixStore
from stockml_core.storage.registry import ModelRegistry
from stockml_core.storage.side_tables import AssetTables, CapturedEventStore, ShapAnalysisStore, TrainingRunsLog
from stockml_core.storage.warehouse import ASSET_SCHEMA, BULK_WRITE_MEMORY_LIMIT, CONNECTION_CONFIG, Warehouse

WAREHOUSE_SCHEMA = ASSET_SCHEMA  # the IO manager's tables; registry and side tables live in "main"
WAREHOUSE_IO = "warehouse_io_manager"
TRAINING_SET_IO = "training_set_io_manager"
DUCKDB_POOL = "duckdb_writer"  # every asset that writes the warehouse shares this pool


class _EmptyAwareTypeHandler(DuckDBPandasTypeHandler):
    """Stores an empty DataFrame as an empty table (the stock handler skips it, leaving no table).

    "No predictions published" must read back as an empty table, not as a missing one; the IO
    manager has already deleted the previous rows, so nothing stale survives either way. A table
    whose stored columns differ from the asset's (written by an earlier version) is recreated.
    """

    def handle_output(self, context, table_slice, obj: pd.DataFrame, connection):
        # A table written by an earlier version with other columns (a new feature, a new field) is
        # replaced whole: the asset rewrites every row anyway, and an insert would not fit.
        connection.execute(f'create schema if not exists "{table_slice.schema}"')
        stored = [
            r[0]
            for r in connection.execute(
                "select column_name from information_schema.columns where table_schema = ? and table_name = ? order by ordinal_position",
                [table_slice.schema, table_slice.table],
            ).fetchall()
        ]
        if stored and stored != [str(c) for c in obj.columns] and not table_slice.partition_dimensions:
            connection.execute(f'drop table "{table_slice.schema}"."{table_slice.table}"')
            context.log.info(f"{table_slice.table}: stored columns differ from the asset's; table recreated")
        if obj.empty:  # identifiers come from the asset key, never from data
            # An empty object column would become DuckDB's NULL type, which no later string fits.
            typed = obj.astype({c: "string" for c in obj.columns if obj[c].dtype == object})  # noqa: F841 (read by DuckDB)
            connection.execute(f'create table if not exists "{table_slice.schema}"."{table_slice.table}" as select * from typed')
            context.add_output_metadata({"row_count": 0})
            return
        if table_slice.partition_dimensions:
            # A partitioned asset's columns are on its definition (dagster/column_schema). The stock
            # handler would add them as a "dataframe_columns" table schema to every partition's
            # materialization event: for the 223-feature matrix, 44 KB of nested objects serialized
            # per trading day, most of a history backfill's time.
            table = f'"{table_slice.schema}"."{table_slice.table}"'
            if stored and stored != [str(c) for c in obj.columns]:
                # An earlier version's table keeps its partitions: a new column is added (NULL in the old
                # rows), and rows go in by column name. Names and types are the asset's, never data.
                types = dict(connection.execute("select column_name, column_type from (describe select * from obj)").fetchall())
                for col in [c for c in obj.columns if str(c) not in stored]:
                    connection.execute(f'alter table {table} add column "{col}" {types[str(col)]}')
                    context.log.info(f"{table_slice.table}: column {col} added (NULL in the rows stored before)")
                connection.execute(f"insert into {table} by name select * from obj")
            else:
                connection.execute(f"insert into {table} select * from obj" if stored else f"create table {table} as select * from obj")
            context.add_output_metadata({"dagster/storage_kind": "duckdb"})
            return
        super().handle_output(context, table_slice, obj, connection)


class _CheckedDbIOManager(DbIOManager):
    """Dagster's DB IO manager, checking an unpartitioned table against its Pandera model before it touches the
    stored one: the stock manager deletes the table and then inserts, and the blocking schema check ran after,
    so a failing table had already replaced the last good one. (Partitioned assets check their partitions
    inside the asset, before anything is written.)"""

    def handle_output(self, context: OutputContext, obj) -> None:
        if isinstance(obj, pd.DataFrame) and context.has_asset_key and not context.has_asset_partitions:
            from stockml_assets.checks import check_before_storing

            check_before_storing(context.asset_key.to_user_string(), context.run_id, obj)
        super().handle_output(context, obj)


class WarehouseIOManager(DuckDBPandasIOManager):
    """DuckDB tables for every DataFrame asset, empty ones included, each checked before it is stored."""

    @staticmethod
    def type_handlers():
        return [_EmptyAwareTypeHandler()]

    def create_io_manager(self, context) -> DbIOManager:
        return _CheckedDbIOManager(
            db_client=DuckDbClient(),
            database=self.database,
            schema=self.schema_,
            type_handlers=self.type_handlers(),
            default_load_type=self.default_load_type(),
            io_manager_name="DuckDBIOManager",
        )


class StockMLResource(ConfigurableResource):
    """The deployment: data folder, runtime home, optional universe/history restriction."""

    data_dir: str
    home: str
    tickers: list[str] | None = None
    start: str | None = None
    end: str | None = None
    fast: bool = False  # smaller models, for tests and quick looks; never the default
    gate: dict[str, float] = {}  # overrides of GateSettings fields, e.g. {"min_sector_accuracy": 0.32}
    training: dict[str, Any] = {}  # overrides of TrainingSettings fields, e.g. {"n_folds": 3, "rf_trees": 100}
    quality: dict[str, Any] = {}  # overrides of QualitySettings fields, e.g. {"max_bad_share_day": 0.02}
    labels: dict[str, Any] = {}  # overrides of LabelSettings fields, e.g. {"target": "market_neutral"}
    drift: dict[str, Any] = {}  # overrides of DriftSettings fields, e.g. {"score_threshold": 0.5} (windows: STOCKML_DRIFT only, checked)
    feature_block_rows: int | None = None  # rows per block of a history run's features (Settings.feature_block_rows)

    def settings(self) -> Settings:
        s = Settings(
            data_dir=Path(self.data_dir), home=Path(self.home), tickers=tuple(self.tickers) if self.tickers else None, start=self.start, end=self.end
        )
        if self.feature_block_rows:
            s = s.with_(feature_block_rows=int(self.feature_block_rows))
        if self.fast:
            s = s.with_(training=FAST_TRAINING)
        s = s.with_(**{key: overridden(getattr(s, key), getattr(self, key), env) for key, env in OVERRIDES_FROM_ENV.items()})
        check_load_time_drift(s.drift)  # the windows the partitions were built with
        return s

    def warehouse(self) -> Warehouse:
        return Warehouse(self.settings().warehouse_path)

    def registry(self) -> ModelRegistry:
        s = self.settings()
        return ModelRegistry(Warehouse(s.warehouse_path), s.artefact_dir)

    def captured_events(self) -> CapturedEventStore:
        return CapturedEventStore(self.warehouse())

    def shap_analysis(self) -> ShapAnalysisStore:
        return ShapAnalysisStore(self.warehouse())

    def training_runs_log(self) -> TrainingRunsLog:
        return TrainingRunsLog(self.warehouse())

    def asset_tables(self) -> AssetTables:
        return AssetTables(self.warehouse())


def previous_table(stockml: StockMLResource, table: str) -> pd.DataFrame | None:
    """The last stored version of an asset table (state carried from the previous cycle)."""
    wh = stockml.warehouse()
    if not wh.has_table(table, WAREHOUSE_SCHEMA):
        return None
    return wh.read(f'select * from "{WAREHOUSE_SCHEMA}"."{table}"')  # names are ours, never data


def _feature_rows_where(after, windows, keys, latest) -> tuple[str, list]:
    clauses, params = [], []
    if after is not None:
        clauses.append("f.date > ?")
        params.append(pd.Timestamp(after).to_pydatetime())
    for a, b in [] if windows is None else windows[["start", "end"]].itertuples(index=False):
        clauses.append("f.date between ? and ?")  # the SQL is ours; every value is a parameter
        params += [pd.Timestamp(a).to_pydatetime(), pd.Timestamp(b).to_pydatetime()]
    if keys is not None:
        clauses.append("exists (select 1 from wanted_keys k where k.ticker = f.ticker and k.date = f.date)")
    if latest:
        clauses.append(f'f.date = (select max(date) from "{WAREHOUSE_SCHEMA}"."feature_matrix")')
    return " or ".join(clauses) or "false", params


def feature_window_where(windows: pd.DataFrame) -> tuple[str, list]:
    """The SQL condition (on the feature_matrix alias ``f``) and parameters selecting the rows dated inside
    any (start, end) of ``windows``."""
    return _feature_rows_where(None, windows, None, False)


def read_feature_rows(
    stockml: StockMLResource,
    *,
    after: pd.Timestamp | None = None,
    windows: pd.DataFrame | None = None,
    keys: pd.DataFrame | None = None,
    latest: bool = False,
    finite_only: list[str] | None = None,
) -> pd.DataFrame:
    """The stored feature_matrix rows a step needs, selected in DuckDB instead of loading the whole table.

    Rows dated after ``after``, or inside any (start, end) of ``windows``, or at a (ticker, date) of
    ``keys``, or (``latest``) on the last stored date; in (ticker, date) order. At 258 tickers x 23
    years the whole matrix is a gigabyte; a training set needs half of it, the latest SHAP rows 1/5,000.
    With ``finite_only`` (feature names), only the rows' keys and ``all_finite``: whether every one of those
    features is finite (past its warm-up), computed in DuckDB, so the features themselves never leave it.
    """
    where, params = _feature_rows_where(after, windows, keys, latest)
    if finite_only is not None:  # the names are the registry's, quoted; never data
        flag = " and ".join(f'coalesce(isfinite(f."{n}"), false)' for n in finite_only) or "true"
        select = f"f.ticker, f.date, ({flag}) as all_finite"
    else:
        select = "f.*"
    with stockml.warehouse().connect() as con:
        if keys is not None:
            con.register("wanted_keys", keys[["ticker", "date"]].assign(date=pd.to_datetime(keys["date"])))
        df = con.execute(f'select {select} from "{WAREHOUSE_SCHEMA}"."feature_matrix" f where {where} order by f.ticker, f.date', params).df()
    return df.assign(date=pd.to_datetime(df["date"]).astype("datetime64[ns]"))


class StreamedTrainingSet:
    """A training set as its keys (in memory) and its feature rows, read from the stored feature_matrix by one
    query in the keys' order and fetched in chunks when the IO manager writes the matrix: the features are
    never in memory all at once (measured at 375 names: 1.63 GiB peak for 766k rows, against 3.45 GiB and
    three times the time for one query per block of dates, which re-read the row groups each block overlaps)."""

    def __init__(self, stockml: StockMLResource, keys: pd.DataFrame, feature_names: list[str], chunk_vectors: int = 64) -> None:
        self.stockml, self.keys, self.feature_names, self.chunk_vectors = stockml, keys, list(feature_names), chunk_vectors

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def blocks(self):
        """Float32 ``(rows, features)`` arrays of 2,048 x ``chunk_vectors`` rows, in the keys' order. A key the
        matrix lacks yields no row: the store then refuses the set (fewer rows than keys), storing nothing."""
        cols = ", ".join(f'f."{n}"' for n in self.feature_names)  # the registry's names, quoted; never data
        wanted = self.keys[["ticker", "date"]].assign(ord=np.arange(len(self.keys)))  # noqa: F841 (read by DuckDB)
        with self.stockml.warehouse().connect() as con:
            cur = con.execute(
                f'select {cols} from "{WAREHOUSE_SCHEMA}"."feature_matrix" f join wanted w on f.ticker = w.ticker and f.date = w.date order by w.ord'
            )
            while True:
                chunk = cur.fetch_df_chunk(self.chunk_vectors)
                if chunk is None or not len(chunk):
                    return
                yield chunk[self.feature_names].to_numpy(dtype="float32")


def replace_partition_rows(stockml: StockMLResource, table: str, first: pd.Timestamp, last: pd.Timestamp, blocks: Iterable[pd.DataFrame]) -> int:
    """Replace a partitioned table's rows dated in [first, last] by ``blocks``, atomically.

    What the warehouse IO manager does for a partitioned asset's output (delete the run's days,
    insert its rows), for an asset that produces its rows block by block: each block is inserted as
    it comes (and can be freed), and nothing is visible until the last one is in. If a block fails
    (its checks raise while the iterator makes it) nothing changes: the stored partitions stay
    exactly as they were. Returns the rows written.

    DuckDB keeps what one transaction appends from pandas in memory until it commits (measured: +0.42
    GiB per 495,000-row block of 233 float32 features, 21.6 GiB for a 3,000-name history), so when the
    run replaces the whole table (its first write, or a range that holds every stored day) the blocks
    go to a staging table, one committed transaction each, and one last transaction drops the old table
    and renames the staging one (nothing is copied). A run that replaces part of a table (a day, a
    range inside the history) writes its blocks in one transaction, as before.
    """
    name = f'"{WAREHOUSE_SCHEMA}"."{table}"'  # identifiers are ours, never data
    staging_name = f"{table}__staging"
    staging = f'"{WAREHOUSE_SCHEMA}"."{staging_name}"'
    rows = 0
    with stockml.warehouse().connect() as con:

        def run(sql: str, params: list | None = None) -> list:  # DuckDB 2: every result is fetched before the next call
            return con.execute(sql, params or []).fetchall()

        run(f'create schema if not exists "{WAREHOUSE_SCHEMA}"')
        run(f"set memory_limit = '{BULK_WRITE_MEMORY_LIMIT}'")  # a constant of ours, never data
        try:
            exists = run("select count(*) from information_schema.tables where table_schema = ? and table_name = ?", [WAREHOUSE_SCHEMA, table])[0][0]
            end = (last + pd.Timedelta(days=1)).to_pydatetime()
            outside = run(f"select count(*) from {name} where date < ? or date >= ?", [first.to_pydatetime(), end])[0][0] if exists else 0
            if outside == 0:  # the whole table is replaced: stage, then swap
                run(f"drop table if exists {staging}")  # a run killed while staging left it
                made = swapping = False
                try:
                    for block in blocks:
                        con.register("block", block)
                        run(f"insert into {staging} select * from block" if made else f"create table {staging} as select * from block")
                        con.unregister("block")
                        made, rows = True, rows + len(block)
                    run("begin transaction")
                    swapping = True
                    if made:
                        if exists:
                            run(f"drop table {name}")
                        run(f'alter table {staging} rename to "{table}"')
                    elif exists:  # no rows for the range: the table stays, empty of it
                        run(f"delete from {name} where date >= ? and date < ?", [first.to_pydatetime(), end])
                    run("commit")
                except BaseException:
                    if swapping:
                        run("rollback")
                    run(f"drop table if exists {staging}")
                    raise
                return rows
            run("begin transaction")
            try:
                run(f"delete from {name} where date >= ? and date < ?", [first.to_pydatetime(), end])
                for block in blocks:
                    con.register("block", block)
                    run(f"insert into {name} select * from block")
                    con.unregister("block")
                    rows += len(block)
                run("commit")
            except BaseException:
                run("rollback")
                raise
        finally:  # the database may be shared by this process's other connections: their cap again
            run(f"set memory_limit = '{CONNECTION_CONFIG['memory_limit']}'")
    return rows


def deployment(data_dir: str | Path | None = None, home: str | Path | None = None, **kwargs) -> StockMLResource:
    """The deployment, read once: the arguments given, the environment for the rest (STOCKML_DATA_DIR,
    STOCKML_HOME, STOCKML_FAST and the JSON overrides, ``settings.OVERRIDES_FROM_ENV``). The definitions'
    resource and ``stockml status`` are this object; it creates nothing."""
    # Quick looks and end-to-end tests of the daemon: smaller models / other gate thresholds from the
    # environment (the daemon and the webserver build their definitions from it).
    if "fast" not in kwargs and fast_from_env():
        kwargs["fast"] = True
    for key in OVERRIDES_FROM_ENV:  # gate, training, quality, labels and drift overrides as JSON
        if key not in kwargs and (changes := overrides_from_env(key)):
            kwargs[key] = changes
    data_dir = Path(data_dir) if data_dir else data_dir_from_env()
    home = Path(home) if home else home_from_env()
    return StockMLResource(data_dir=str(data_dir), home=str(home), **kwargs)


def build_resources(data_dir: str | Path | None = None, home: str | Path | None = None, **kwargs) -> dict:
    """All resources for one deployment (``deployment``: defaults from the environment)."""
    stockml = deployment(data_dir, home, **kwargs)
    data_dir, home = Path(stockml.data_dir), Path(stockml.home)
    home.mkdir(parents=True, exist_ok=True)  # DuckDB creates the file, not its folder
    return {
        "stockml": stockml,
        WAREHOUSE_IO: WarehouseIOManager(database=str(home / "warehouse.duckdb"), schema=WAREHOUSE_SCHEMA, connection_config=CONNECTION_CONFIG),
        "io_manager": VerifiedPickleIOManager(base_dir=str(home / "dagster_storage"), database=str(home / "warehouse.duckdb")),
        TRAINING_SET_IO: TrainingSetIOManager(
            folder=str(Settings(data_dir=data_dir, home=home).training_set_dir), database=str(home / "warehouse.duckdb")
        ),
    }


class TrainingSetIOManager(ConfigurableIOManager):
    """The training set's IO manager: checked against its Pandera model, then its keys to the warehouse table and
    its features to one hash-recorded float32 matrix, loaded back memory-mapped (``stockml_core.storage.matrix_store``):
    the training steps share one mapped copy instead of each converting a gigabyte table into pandas."""

    folder: str
    database: str

    def _store(self, context) -> TrainingMatrixStore:
        return TrainingMatrixStore(Path(self.folder), Warehouse(Path(self.database)), name=context.asset_key.path[-1], schema=WAREHOUSE_SCHEMA)

    def handle_output(self, context: OutputContext, obj: pd.DataFrame) -> None:
        from stockml_assets.checks import check_before_storing
        from stockml_core.features import FEATURE_NAMES

        streamed = isinstance(obj, StreamedTrainingSet)  # keys in memory, features streamed from the warehouse
        check_before_storing(context.asset_key.to_user_string(), context.run_id, obj.keys if streamed else obj)
        store = self._store(context)
        rec = (
            store.save(obj.keys, FEATURE_NAMES, obj.blocks, context.run_id or "")
            if streamed
            else store.save_frame(obj, FEATURE_NAMES, context.run_id or "")
        )
        context.add_output_metadata({"matrix_sha256": rec["sha256"], "matrix_bytes": int(rec["bytes"]), "dagster/storage_kind": "duckdb + npy"})

    def load_input(self, context: InputContext) -> pd.DataFrame:
        return self._store(context.upstream_output).load()


class VerifiedPickleIOManager(ConfigurableIOManager):
    """The fitted models' IO manager: pickles whose hash is recorded in the warehouse and checked before every
    unpickling (``stockml_core.storage.pickles``), instead of Dagster's filesystem IO manager, which loads any file."""

    base_dir: str
    database: str

    def _store(self):
        from stockml_core.storage.pickles import PickleStore

        return PickleStore(Path(self.base_dir), Warehouse(Path(self.database)))

    @staticmethod
    def _name(context: OutputContext) -> str:
        if context.has_asset_key:
            return "/".join(context.asset_key.path)
        return f"ops/{context.step_key}/{context.name}"  # an op's output (the rollback and override jobs)

    def handle_output(self, context: OutputContext, obj) -> None:
        if obj is None and not context.has_asset_key:
            return  # an op that returns nothing: nothing to store
        digest = self._store().save(self._name(context), obj, context.run_id or "")
        context.add_output_metadata({"pickle_sha256": digest})

    def load_input(self, context: InputContext):
        obj = self._store().load(self._name(context.upstream_output))
        if context.upstream_output.has_asset_key and context.upstream_output.asset_key.path == ["meta_learner"]:
            from stockml_core.modeling.training import Candidate

            return Candidate.stored(obj)  # stored before the hand-off was typed: a dict
        return obj
