"""The feature_matrix asset extends the stored matrix day by day, and recomputes when history changes."""

import numpy as np
import pandas as pd
from dagster import AssetKey, DagsterInstance

from stockml_core.data import load_market, load_prices
from stockml_core.features import FEATURE_NAMES, compute_features
from stockml_core.warehouse import Warehouse
from tests.conftest import write_slice_folder

UPSTREAM = ["market_universe", "raw_prices", "market_context", "feature_matrix"]
TICKERS = ["XOM", "KO", "JPM"]


def _materialize(instance, home, data_dir, end):
    from stockml_assets.definitions import build_definitions

    defs = build_definitions(home=home, data_dir=data_dir, tickers=TICKERS, start="2012-01-01", end=end, fast=True)
    job = defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(instance=instance, asset_selection=[AssetKey(k) for k in UPSTREAM])
    assert result.success
    event = instance.get_latest_materialization_event(AssetKey("feature_matrix"))
    return event.asset_materialization.metadata


def _stored(home) -> pd.DataFrame:
    df = Warehouse(home / "warehouse.duckdb").read('select * from "assets"."feature_matrix" order by ticker, date')
    return df.assign(date=df["date"].astype("datetime64[ns]"))


def test_daily_feature_matrix_is_incremental_and_equals_full(tmp_path):
    folder = tmp_path / "data"
    write_slice_folder(folder, tickers=TICKERS, start="2012-01-01")
    home = tmp_path / "home"
    (tmp_path / "dagster").mkdir()
    instance = DagsterInstance.local_temp(str(tmp_path / "dagster"), overrides={"telemetry": {"enabled": False}})

    first = _materialize(instance, home, folder, end="2017-06-30")
    assert first["computation"].value.startswith("full")
    second = _materialize(instance, home, folder, end="2017-07-07")  # 4 more trading days (July 4th is a holiday)
    assert second["computation"].value.startswith("incremental: 12 new rows"), second["computation"].value
    third = _materialize(instance, home, folder, end="2017-07-07")  # nothing new
    assert third["computation"].value.startswith("incremental: 0 new rows")

    # The stored matrix equals a full recompute on the same data.
    prices, _ = load_prices(folder, tickers=tuple(TICKERS), start="2012-01-01", end="2017-07-07")
    market, _ = load_market(folder, start="2012-01-01", end="2017-07-07")
    sectors = pd.read_csv(folder / "sectors.csv")
    from stockml_core.data import align_market_to_prices

    market, _ = align_market_to_prices(market, prices)
    full = compute_features(prices, market, sectors)
    stored = _stored(home)
    pd.testing.assert_frame_equal(stored[["ticker", "date"]], full[["ticker", "date"]])
    for name in FEATURE_NAMES:
        np.testing.assert_allclose(stored[name].to_numpy(np.float64), full[name].to_numpy(np.float64),
                                   rtol=1e-6, atol=1e-6, err_msg=name)

    # A revised past price invalidates the stored matrix: the next run recomputes everything.
    revised = pd.read_csv(folder / "prices.csv")
    revised.loc[(revised.ticker == "KO") & (revised.date == "2015-03-02"), ["open", "high", "low", "close"]] *= 1.01
    revised.to_csv(folder / "prices.csv", index=False)
    fourth = _materialize(instance, home, folder, end="2017-07-14")
    assert fourth["computation"].value.startswith("full: price/market history"), fourth["computation"].value
