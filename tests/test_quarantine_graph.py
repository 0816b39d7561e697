"""A real us-broad slice with its real bad rows through the whole graph: quarantined, never modelled."""

import shutil

import numpy as np
import pandas as pd
import pytest
from dagster import AssetKey

from stockml_core.market.regimes import REGIMES
from stockml_core.settings import BROAD_DATA_DIR
from stockml_core.storage.registry import ModelRegistry
from stockml_core.storage.warehouse import Warehouse
from tests.conftest import LENIENT_GATE, make_instance, materialized_keys, run_history_job

TICKERS = ["ARE", "BEN", "XOM", "KO", "JPM"]
START, END = "2001-06-01", "2007-12-31"
REAL_BAD = {
    ("ARE", "2006-06-06", "high_below_low"),
    ("BEN", "2002-09-18", "open_close_outside_range"),
    ("BEN", "2002-09-19", "high_below_low"),
    ("BEN", "2003-02-14", "high_below_low"),
}


def _folder(dst, perturb: bool = False):
    dst.mkdir(parents=True)
    prices = pd.read_csv(BROAD_DATA_DIR / "prices.csv.gz", dtype={"ticker": str})
    prices = prices[prices.ticker.isin(TICKERS) & prices.date.between(START, END)]
    if perturb:  # other values in every quarantined row (still failing its rule): nothing downstream may move
        for t, d, _ in REAL_BAD:
            i = prices.index[(prices.ticker == t) & (prices.date == d)]
            prices.loc[i, ["open", "close", "volume"]] = prices.loc[i, ["open", "close", "volume"]].to_numpy() * [3.0, 0.2, 9.0]
            prices.loc[i, "high"] = prices.loc[i, "low"].to_numpy() * 0.5
    prices.to_csv(dst / "prices.csv", index=False)
    sectors = pd.read_csv(BROAD_DATA_DIR / "sectors.csv")
    sectors[sectors.ticker.isin(TICKERS)].to_csv(dst / "sectors.csv", index=False)
    shutil.copy(BROAD_DATA_DIR / "market.csv.gz", dst / "market.csv.gz")
    return dst


def _config(home, data_dir):
    return {"home": home, "data_dir": data_dir, "tickers": TICKERS, "fast": True, "gate": LENIENT_GATE}


@pytest.fixture(scope="module")
def broad(tmp_path_factory):
    root = tmp_path_factory.mktemp("broad")
    instance = make_instance(root / "dagster_home")
    result = run_history_job(instance, START, END, **_config(root / "home", _folder(root / "data")))
    return root, instance, result


def _table(home, name: str, schema: str = "assets") -> pd.DataFrame:
    return Warehouse(home / "warehouse.duckdb").read(f'select * from "{schema}"."{name}" order by all')


def test_real_bad_rows_are_quarantined_and_the_rest_trains(broad):
    root, _, result = broad
    assert result.success
    assert {"quarantined_prices", "raw_prices", "rf_model", "promotion_decision"} <= materialized_keys(result)
    q = _table(root / "home", "quarantined_prices", "main")
    assert {(r.ticker, f"{r.date:%Y-%m-%d}", r.rule) for r in q.itertuples()} == REAL_BAD
    assert q.fix.str.len().gt(0).all() and q.detail.str.contains("high").all()
    stored = _table(root / "home", "raw_prices").set_index(["ticker", "date"]).index
    assert not stored.isin(pd.MultiIndex.from_arrays([q.ticker, q.date])).any()
    assert ModelRegistry(Warehouse(root / "home" / "warehouse.duckdb"), root / "home" / "models").champion() is not None


def test_the_quarantine_is_a_warn_check_with_counts_per_rule_and_ticker(broad):
    _, instance, result = broad
    checks = [
        e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION" and e.event_specific_data.asset_check_key.name == "no_quarantined_prices"
    ]
    assert len(checks) == 1
    check = checks[0]
    assert not check.passed and check.severity.value == "WARN"
    table = check.metadata["by rule and ticker"].value
    assert "high_below_low" in table and "BEN" in table and "ARE" in table
    assert "4 price rows quarantined" in check.metadata["summary"].value
    assert instance.get_latest_materialization_event(AssetKey("quarantined_prices")) is not None


def test_status_reports_data_quality(broad):
    from stockml_assets.cli import collect_status
    from stockml_core.settings import Settings

    root, _, _ = broad
    dq = collect_status(Settings(home=root / "home"))["data_quality"]
    assert dq["rows_quarantined"] == 4 and dq["by_rule"] == {"high_below_low": 3, "open_close_outside_range": 1}
    assert dq["tickers_affected"] == ["ARE", "BEN"] and dq["rows_ingested"] > 5 * 1400
    assert dq["suspected_corporate_actions"] == []


def test_perturbing_the_quarantined_rows_changes_no_feature_label_or_prediction(broad, tmp_path):
    root, _, _ = broad
    instance = make_instance(tmp_path / "dagster_home")
    moved = run_history_job(instance, START, END, train=False, **_config(tmp_path / "home", _folder(tmp_path / "data", perturb=True)))
    assert moved.success
    for table in ("raw_prices", "feature_matrix", "labels"):
        pd.testing.assert_frame_equal(_table(tmp_path / "home", table), _table(root / "home", table), check_exact=True)
    # The champion's predictions are a function of the (identical) feature rows: bit-for-bit the same.
    champion = ModelRegistry(Warehouse(root / "home" / "warehouse.duckdb"), root / "home" / "models")
    model = champion.load(champion.champion().version)
    model.rf.set_params(n_jobs=1)  # threads add the trees' votes in any order: last-bit noise unrelated to the data
    a, b = (_table(h, "feature_matrix").assign(regime=REGIMES[0]) for h in (root / "home", tmp_path / "home"))
    a, b = a[a.date >= "2006-05-01"], b[b.date >= "2006-05-01"]  # the window around ARE's quarantined day
    np.testing.assert_array_equal(model.predict_proba(a), model.predict_proba(b))
