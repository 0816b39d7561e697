"""The warehouse IO manager: tables written by an earlier version with other columns are replaced."""

from __future__ import annotations

import duckdb
import pandas as pd
from dagster import asset, materialize

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
