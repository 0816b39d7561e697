"""The feature_matrix asset computes only its run's trading days, from the stored upstream partitions,
and the stored matrix always equals a full recompute: after a daily run, after a range run."""

import numpy as np
import pandas as pd
import pytest

from stockml_core.features import FEATURE_NAMES, MIN_BLOCK_DAYS, compute_features
from stockml_core.market.data import align_market_to_prices, load_market, load_prices
from stockml_core.storage.warehouse import Warehouse
from tests.conftest import make_instance, materialized_partitions, run_daily_job, run_history_job, write_slice_folder

TICKERS = ["XOM", "KO", "JPM"]
START = "2012-01-01"


def _stored(home) -> pd.DataFrame:
    df = Warehouse(home / "warehouse.duckdb").read('select * from "assets"."feature_matrix" order by ticker, date')
    return df.assign(date=df["date"].astype("datetime64[ns]"))


def _full(folder, end: str) -> pd.DataFrame:
    """compute_features over the whole history up to ``end``: what the stored matrix must equal."""
    prices, _ = load_prices(folder, tickers=tuple(TICKERS), start=START, end=end)
    market, _ = load_market(folder, start=START, end=end)
    market, _ = align_market_to_prices(market, prices)
    sectors = pd.read_csv(folder / "sectors.csv")
    return compute_features(prices, market, sectors).sort_values(["ticker", "date"]).reset_index(drop=True)


def _assert_equal_to_full(home, folder, end: str) -> None:
    stored, full = _stored(home), _full(folder, end)
    pd.testing.assert_frame_equal(stored[["ticker", "date"]], full[["ticker", "date"]])
    for name in FEATURE_NAMES:
        np.testing.assert_allclose(stored[name].to_numpy(np.float64), full[name].to_numpy(np.float64), rtol=1e-6, atol=1e-6, err_msg=name)


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """Ingestion and features (no training) for 2012-01-03..2017-06-30 in one run."""
    root = tmp_path_factory.mktemp("features")
    folder = root / "data"
    write_slice_folder(folder, tickers=TICKERS, start=START)
    instance = make_instance(root / "dagster")
    # Blocks of MIN_BLOCK_DAYS days (the floor at a 1-row budget), each ticker on its own: the 1,380-day
    # history is computed and stored in nine.
    config = {"home": root / "home", "data_dir": folder, "tickers": TICKERS, "start": START, "fast": True, "feature_block_rows": 1}
    result = run_history_job(instance, START, "2017-06-30", train=False, **config)
    assert result.success
    yield root, folder, instance, config, result
    instance.dispose()


def _copy(history, tmp_path):
    """A private copy of the history run's warehouse (each test adds its own days)."""
    import shutil

    _, folder, _, config, _ = history
    home = tmp_path / "home"
    shutil.copytree(config["home"], home)
    return folder, {**config, "home": home}


def test_history_run_is_one_run_over_every_day_and_equals_a_full_recompute(history):
    _, folder, _, config, result = history
    days = materialized_partitions(result, "feature_matrix")
    assert days[0] == "2012-01-03" and days[-1] == "2017-06-30" and len(days) > 1000
    _assert_equal_to_full(config["home"], folder, "2017-06-30")


def test_history_features_are_stored_in_blocks_in_one_transaction(history, tmp_path):
    _, _, _, config, result = history
    meta = next(e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == "feature_matrix").materialization.metadata
    days = materialized_partitions(result, "feature_matrix")
    assert meta["blocks"].value == int(np.ceil(len(days) / MIN_BLOCK_DAYS)) == 9 and meta["dagster/row_count"].value == len(_stored(config["home"]))
    # A block that fails while the iterator makes it (a check raising) rolls the whole write back.
    from stockml_assets.resources import StockMLResource, replace_partition_rows

    _, copied = _copy(history, tmp_path)
    res = StockMLResource(data_dir=str(copied["data_dir"]), home=str(copied["home"]))
    before = _stored(copied["home"])
    first, last = pd.Timestamp("2014-01-02"), pd.Timestamp("2017-06-30")

    def failing():
        yield before[before.date.between(first, pd.Timestamp("2014-12-31"))].assign(ret_1=0.0)
        raise RuntimeError("block 2 failed its checks")

    with pytest.raises(RuntimeError, match="block 2"):
        replace_partition_rows(res, "feature_matrix", first, last, failing())
    pd.testing.assert_frame_equal(_stored(copied["home"]), before)
    # The same write completed replaces exactly [first, last].
    kept = before[before.date < first]
    assert replace_partition_rows(res, "feature_matrix", first, last, iter([before[before.date >= first].assign(ret_1=0.5)])) == int(
        (before.date >= first).sum()
    )
    after = _stored(copied["home"])
    pd.testing.assert_frame_equal(after[after.date < first], kept)
    assert (after.ret_1[after.date >= first] == 0.5).all()


def test_a_whole_table_rewrite_is_staged_then_swapped_and_a_failure_leaves_it_as_it_was(history, tmp_path):
    """A history run that replaces every stored day writes its blocks to a staging table, a committed
    transaction each (one transaction would keep every appended block in memory until it commits), then
    swaps the tables in one transaction. A block failing on the way leaves the table and no staging behind."""
    from stockml_assets.resources import StockMLResource, replace_partition_rows

    _, copied = _copy(history, tmp_path)
    res = StockMLResource(data_dir=str(copied["data_dir"]), home=str(copied["home"]))
    before = _stored(copied["home"])
    first, last = before.date.min(), before.date.max()
    halves = [before[before.date < pd.Timestamp("2015-01-01")], before[before.date >= pd.Timestamp("2015-01-01")]]

    def tables() -> set[str]:
        return set(
            Warehouse(copied["home"] / "warehouse.duckdb")
            .read("select table_name from information_schema.tables where table_schema = 'assets'")
            .table_name
        )

    def failing():
        yield halves[0].assign(ret_1=1.0)
        raise RuntimeError("block 2 failed its checks")

    with pytest.raises(RuntimeError, match="block 2"):
        replace_partition_rows(res, "feature_matrix", first, last, failing())
    pd.testing.assert_frame_equal(_stored(copied["home"]), before)
    assert "feature_matrix__staging" not in tables()
    assert replace_partition_rows(res, "feature_matrix", first, last, iter([h.assign(ret_1=2.0) for h in halves])) == len(before)
    after = _stored(copied["home"])
    assert len(after) == len(before) and (after.ret_1 == 2.0).all() and "feature_matrix__staging" not in tables()
    pd.testing.assert_frame_equal(after.drop(columns="ret_1"), before.drop(columns="ret_1"))
    # No rows for a range that holds every stored day: the table stays, without them.
    assert replace_partition_rows(res, "feature_matrix", first, last, iter([])) == 0
    assert _stored(copied["home"]).empty and "feature_matrix" in tables()


def test_a_range_run_plans_each_check_once_and_completes_it(history):
    """The instance's event log stores one planned row per check of a range run (not one per trading day,
    stuck as planned), and the check's evaluation completes it."""
    from dagster import AssetCheckKey, AssetKey

    _, _, instance, _, result = history
    for asset in ("market_regimes", "labels"):
        records = instance.event_log_storage.get_asset_check_execution_history(AssetCheckKey(AssetKey(asset), f"{asset}_schema"), limit=10_000)
        ours = [r for r in records if r.run_id == result.run_id]
        assert [r.status.value for r in ours] == ["SUCCEEDED"], (asset, len(ours))


def test_daily_run_after_history_equals_a_full_recompute(history, tmp_path):
    folder, config = _copy(history, tmp_path)
    instance = make_instance(tmp_path / "dagster")
    for day in ["2017-07-03", "2017-07-05", "2017-07-06", "2017-07-07"]:  # July 4th is an NYSE holiday
        result = run_daily_job(instance, day, **config)
        assert result.success
        assert materialized_partitions(result, "feature_matrix") == [day]
        meta = next(e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == "feature_matrix").materialization.metadata
        assert meta["dagster/row_count"].value == len(TICKERS)  # one new day: one row per ticker
    _assert_equal_to_full(config["home"], folder, "2017-07-07")
    # Running a day again replaces its partition: no duplicate rows, still equal to a full recompute.
    assert run_daily_job(instance, "2017-07-07", **config).success
    _assert_equal_to_full(config["home"], folder, "2017-07-07")
    instance.dispose()


def test_range_run_after_history_equals_a_full_recompute(history, tmp_path):
    folder, config = _copy(history, tmp_path)
    instance = make_instance(tmp_path / "dagster")
    result = run_daily_job(instance, "2017-07-03", last="2017-07-14", **config)
    assert result.success
    assert materialized_partitions(result, "feature_matrix") == [
        "2017-07-03",
        "2017-07-05",
        "2017-07-06",
        "2017-07-07",
        "2017-07-10",
        "2017-07-11",
        "2017-07-12",
        "2017-07-13",
        "2017-07-14",
    ]
    _assert_equal_to_full(config["home"], folder, "2017-07-14")
    # Drift and the rare-event watch have one block of rows per day of the range.
    drift = Warehouse(config["home"] / "warehouse.duckdb").read('select * from "assets"."drift_report"')
    assert drift.groupby("date").size().tolist() == [4] * 9
    instance.dispose()
