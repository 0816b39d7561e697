"""The warehouse IO manager: tables written by an earlier version with other columns are replaced; trading-day
partitions are written and replaced one day at a time."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest
from dagster import asset, materialize

from stockml_assets.partitions import PARTITION_EXPR, SINGLE_RUN, TRADING_DAYS, day_keys, range_tags, run_days
from stockml_assets.resources import WAREHOUSE_SCHEMA, WarehouseIOManager


@asset(io_manager_key="io")
def upgraded() -> pd.DataFrame:
    return pd.DataFrame({"ticker": ["A", "B"], "feature_1": [1.0, 2.0], "feature_2": [3.0, 4.0]})


@asset(io_manager_key="io")
def empty_upgraded() -> pd.DataFrame:
    return pd.DataFrame({"ticker": pd.Series(dtype=str), "feature_1": pd.Series(dtype=float)})


def test_a_table_with_other_columns_is_replaced_not_appended_to(tmp_path) -> None:
    db = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(db)) as con:  # what an earlier version stored: fewer columns, old rows
        con.execute(f"create schema {WAREHOUSE_SCHEMA}")
        for table in ("upgraded", "empty_upgraded"):
            con.execute(f"create table {WAREHOUSE_SCHEMA}.{table} (ticker varchar, old_column double)")
            con.execute(f"insert into {WAREHOUSE_SCHEMA}.{table} values ('Z', 9.0)")
    io = WarehouseIOManager(database=str(db), schema=WAREHOUSE_SCHEMA)
    assert materialize([upgraded, empty_upgraded], resources={"io": io}).success
    with duckdb.connect(str(db)) as con:
        stored = con.execute(f"select * from {WAREHOUSE_SCHEMA}.upgraded order by ticker").df()
        empty = con.execute(f"select * from {WAREHOUSE_SCHEMA}.empty_upgraded").df()
    pd.testing.assert_frame_equal(stored, upgraded())
    assert list(empty.columns) == ["ticker", "feature_1"] and empty.empty
    # Same columns again: the rows are replaced as before (no duplicates, table kept).
    assert materialize([upgraded], resources={"io": io}).success
    with duckdb.connect(str(db)) as con:
        assert con.execute(f"select count(*) from {WAREHOUSE_SCHEMA}.upgraded").fetchall()[0][0] == 2


@asset(io_manager_key="io", partitions_def=TRADING_DAYS, backfill_policy=SINGLE_RUN, metadata=PARTITION_EXPR)
def daily_rows(context) -> pd.DataFrame:
    first, last = run_days(context)
    days = pd.to_datetime(day_keys(first, last))
    version = float(context.run.tags.get("version", "1"))
    return pd.DataFrame({"date": np.repeat(days, 2), "ticker": ["A", "B"] * len(days), "value": version})


def test_partitions_are_created_then_replaced_day_by_day(tmp_path) -> None:
    db = tmp_path / "warehouse.duckdb"
    io = WarehouseIOManager(database=str(db), schema=WAREHOUSE_SCHEMA)
    # A range run creates the table; the materialization of each day carries no per-partition column dump.
    first = materialize([daily_rows], resources={"io": io}, tags=range_tags("2017-11-06", "2017-11-10"))
    assert first.success
    events = first.get_asset_materialization_events()
    assert sorted(e.partition for e in events) == day_keys("2017-11-06", "2017-11-10")
    assert all("dataframe_columns" not in e.materialization.metadata for e in events)
    # One day again, with other values: that day's rows are replaced, every other day is kept.
    assert materialize([daily_rows], resources={"io": io}, partition_key="2017-11-08", tags={"version": "2"}).success
    with duckdb.connect(str(db)) as con:
        stored = con.execute(f"select * from {WAREHOUSE_SCHEMA}.daily_rows order by date, ticker").df()
    assert len(stored) == 10 and not stored.duplicated(["date", "ticker"]).any()
    by_day = stored.groupby(stored.date.dt.strftime("%Y-%m-%d")).value.max().to_dict()
    assert by_day == {"2017-11-06": 1.0, "2017-11-07": 1.0, "2017-11-08": 2.0, "2017-11-09": 1.0, "2017-11-10": 1.0}


def test_a_held_warehouse_serves_this_process_and_locks_out_others_until_released(tmp_path) -> None:
    """Warehouse.held (used by stockml replay): connections inside attach to the open database; another
    process cannot open the file meanwhile, and can as soon as the block ends."""
    import subprocess
    import sys

    from stockml_core.storage.warehouse import Warehouse

    wh = Warehouse(tmp_path / "w.duckdb", lock_timeout_s=0)
    probe = [sys.executable, "-c", "import duckdb, sys; duckdb.connect(sys.argv[1]).close()", str(wh.path)]
    with wh.held():
        with wh.connect() as con:
            con.execute("create table t as select 1 as x")
        assert wh.read("select x from t").x.tolist() == [1]
        assert subprocess.run(probe, capture_output=True).returncode != 0
    assert subprocess.run(probe, capture_output=True).returncode == 0


def test_a_partitioned_table_from_an_earlier_version_gains_the_new_column_and_keeps_its_days(tmp_path) -> None:
    db = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(db)) as con:  # an earlier version's days, without the column "value"
        con.execute(f"create schema {WAREHOUSE_SCHEMA}")
        con.execute(f"create table {WAREHOUSE_SCHEMA}.daily_rows (date timestamp, ticker varchar)")
        con.execute(f"insert into {WAREHOUSE_SCHEMA}.daily_rows values ('2017-11-01', 'A'), ('2017-11-01', 'B')")
    io = WarehouseIOManager(database=str(db), schema=WAREHOUSE_SCHEMA)
    assert materialize([daily_rows], resources={"io": io}, tags=range_tags("2017-11-09", "2017-11-10")).success
    with duckdb.connect(str(db)) as con:
        stored = con.execute(f"select * from {WAREHOUSE_SCHEMA}.daily_rows order by date, ticker").df()
    assert list(stored.columns) == ["date", "ticker", "value"]
    assert len(stored) == 6 and stored.value.isna().sum() == 2  # the old days kept, NULL in the new column
    assert (stored.value.dropna() == 1.0).all()


class _Boom:
    """A pickle that runs code when unpickled (what an attacker would plant)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_outputs_are_unpickled_only_when_their_bytes_match_the_recorded_hash(tmp_path) -> None:
    import pickle

    from stockml_core.storage.pickles import PickleIntegrityError, PickleStore
    from stockml_core.storage.warehouse import Warehouse

    store = PickleStore(tmp_path / "dagster_storage", Warehouse(tmp_path / "warehouse.duckdb"))
    digest = store.save("meta_learner", {"version": "v0001", "rows": [1, 2, 3]}, "run-1")
    assert store.load("meta_learner") == {"version": "v0001", "rows": [1, 2, 3]} and store.recorded("meta_learner") == digest
    assert not list((tmp_path / "dagster_storage").glob(".tmp-*"))  # written to a temporary file, then renamed
    marker = tmp_path / "pwned"
    (tmp_path / "dagster_storage" / "meta_learner").write_bytes(pickle.dumps(_Boom(str(marker))))  # replaced
    with pytest.raises(PickleIntegrityError, match="failed its integrity check .*expected sha256"):
        store.load("meta_learner")
    (tmp_path / "dagster_storage" / "rf_model").write_bytes(pickle.dumps(_Boom(str(marker))))  # planted, never recorded
    with pytest.raises(PickleIntegrityError, match="no hash was recorded"):
        store.load("rf_model")
    with pytest.raises(PickleIntegrityError, match="materialize xgb_model first"):
        store.load("xgb_model")
    assert not marker.exists()  # nothing was unpickled
    for bad in ("../outside", "a/../../b", ""):
        with pytest.raises(ValueError, match="not a stored output"):
            store.path(bad)


def test_a_meta_learner_output_stored_as_a_dict_loads_as_a_typed_candidate(tmp_path) -> None:
    """``meta_learner`` hands on a ``training.Candidate``; one stored before that (a dict) still loads, typed."""
    import pandas as pd
    from dagster import AssetKey, build_input_context, build_output_context

    from stockml_assets.resources import VerifiedPickleIOManager
    from stockml_core.modeling.training import Candidate

    io = VerifiedPickleIOManager(base_dir=str(tmp_path / "storage"), database=str(tmp_path / "warehouse.duckdb"))
    fields = {
        "version": "v0007",
        "model": None,
        "evaluation": pd.DataFrame({"ticker": ["A"], "candidate__p_up": [0.5]}),
        "replay": {"replay_n": 3.0},
        "books": {},
        "book_table": pd.DataFrame(),
        "stack_note": "note",
        "decay": pd.DataFrame(),
    }
    for stored in (fields, Candidate(**fields)):
        io.handle_output(build_output_context(asset_key=AssetKey("meta_learner"), run_id="r1"), stored)
        loaded = io.load_input(build_input_context(upstream_output=build_output_context(asset_key=AssetKey("meta_learner"))))
        assert isinstance(loaded, Candidate) and loaded.version == "v0007" and loaded.replay == {"replay_n": 3.0}
    io.handle_output(build_output_context(asset_key=AssetKey("rf_model"), run_id="r1"), {"kind": "rf"})
    assert io.load_input(build_input_context(upstream_output=build_output_context(asset_key=AssetKey("rf_model")))) == {"kind": "rf"}
    with pytest.raises(TypeError):
        Candidate.stored({"version": "v0008"})  # a dict that is not a candidate is refused, not half-built
