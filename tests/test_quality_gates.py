"""Quality gates: bad prices stop everything; a rejected model never touches the champion; rollback."""

import json

import pandas as pd
import pytest
from dagster import AssetKey

from stockml_assets.partitions import FEATURE_LOOKBACK_DAYS
from stockml_core.storage.registry import ModelRegistry
from stockml_core.storage.warehouse import Warehouse
from tests.conftest import (
    LENIENT_GATE,
    SLICE_START,
    TRAINING_AND_GATE,
    definitions,
    job_assets,
    materialized_keys,
    materialized_partitions,
    run_daily_job,
    run_history_job,
    run_job,
    slice_config,
    write_slice_folder,
)


def _registry(home) -> ModelRegistry:
    return ModelRegistry(Warehouse(home / "warehouse.duckdb"), home / "models")


def _step_failure(result, step: str):
    """The failed step's data: the error and the dagster.Failure raised by the asset (description, metadata)."""
    failures = [e.event_specific_data for e in result.all_events if e.is_step_failure and e.step_key == step]
    assert len(failures) == 1, [e.step_key for e in result.all_events if e.is_step_failure]
    return failures[0]


def _stored_prices(home) -> pd.DataFrame:
    return Warehouse(home / "warehouse.duckdb").read('select * from "assets"."raw_prices" order by ticker, date')


def test_a_broken_feed_day_fails_the_step_with_rows_named_and_changes_nothing(materialized, home_copy, fresh_instance, tmp_path):
    folder = tmp_path / "bad_data"
    prices = write_slice_folder(folder)
    prices = prices.reset_index(drop=True)
    day = "2010-03-01"  # three of the six tickers broken on one day: a broken feed, not a few bad prints
    i = prices.index[(prices.ticker == "XOM") & (prices.date == day)][0]
    j = prices.index[(prices.ticker == "KO") & (prices.date == day)][0]
    prices.loc[i, "high"] = prices.loc[i, "low"] * 0.9  # high < low
    prices.loc[j, "close"] = -1.0  # a negative close
    dup = prices[(prices.ticker == "IBM") & (prices.date == day)]
    pd.concat([prices, dup]).to_csv(folder / "prices.csv", index=False)
    before = _stored_prices(home_copy)

    result = run_history_job(fresh_instance, SLICE_START, materialized.last_day, **slice_config(home_copy, data_dir=folder))

    assert not result.success
    failure = _step_failure(result, "raw_prices")
    assert failure.user_failure_data is not None  # raised by the asset's screening (stockml_core.market.quality)
    text = failure.user_failure_data.description
    assert "feed looks broken" in text and "1.0% of the day's tickers" in text and "Nothing was stored" in text
    assert "2010-03-01 (3 of 6 tickers)" in text
    listed = failure.user_failure_data.metadata["quarantine_would_be"].value
    for row in ["XOM", "KO", "IBM", day, "high_below_low", "non_positive_price", "duplicate"]:
        assert row in listed, row
    assert materialized_keys(result) == {"market_universe"}  # only the upstream universe; nothing from raw_prices on
    # Every stored partition is as it was (not one row added, removed or changed) and the champion stays.
    pd.testing.assert_frame_equal(_stored_prices(home_copy), before)
    assert _registry(home_copy).champion().version == "v0001"


def test_a_few_bad_prints_are_quarantined_and_the_run_goes_on(materialized, home_copy, fresh_instance, tmp_path):
    folder = tmp_path / "few_bad"
    prices = write_slice_folder(folder).reset_index(drop=True)
    i = prices.index[(prices.ticker == "XOM") & (prices.date == "2010-03-01")][0]
    j = prices.index[(prices.ticker == "KO") & (prices.date == "2011-05-02")][0]
    prices.loc[i, "high"] = prices.loc[i, "low"] * 0.9
    prices.loc[j, "close"] = -1.0
    prices.to_csv(folder / "prices.csv", index=False)

    # Only the days from mid-2009 are ingested again (both bad prints fall in them); the stored days before stay.
    result = run_history_job(fresh_instance, "2009-06-01", materialized.last_day, train=False, **slice_config(home_copy, data_dir=folder))

    assert result.success
    q = Warehouse(home_copy / "warehouse.duckdb").read("select ticker, date, rule from quarantined_prices order by ticker")
    assert {(t, f"{d:%Y-%m-%d}", r) for t, d, r in q.itertuples(index=False)} == {
        ("KO", "2011-05-02", "non_positive_price"),
        ("KO", "2011-05-02", "open_close_outside_range"),
        ("XOM", "2010-03-01", "high_below_low"),
    }  # a negative close is also below the low: both rules are named
    stored = _stored_prices(home_copy)
    assert len(stored) == len(prices) - 2
    features = Warehouse(home_copy / "warehouse.duckdb").read(
        'select date, ret_1 from "assets"."feature_matrix" where ticker = ? and date >= ? order by date limit 2', ["XOM", "2010-03-01"]
    )
    assert f"{features.date.iloc[0]:%Y-%m-%d}" == "2010-03-02" and features.ret_1.isna().iloc[0]  # the hole is not bridged
    assert _registry(home_copy).champion().version == "v0001"


def test_rejected_candidate_never_touches_the_champion(materialized, home_copy, fresh_instance):
    # The published predictions (the last day's) have no known 5-day outcome yet, so the candidate-vs-production
    # criterion has no common days and says so.
    strict = {**LENIENT_GATE, "min_sector_accuracy": 0.99}
    result = run_job("retraining_job", fresh_instance, **slice_config(home_copy, gate=strict))

    assert result.success
    wh = Warehouse(home_copy / "warehouse.duckdb")
    decision = wh.read('select * from "assets"."promotion_decision"')
    assert not decision.promoted.any()
    criteria = decision.set_index("name")
    assert list(criteria.index[~criteria.passed]) == ["worst_sector_accuracy"]
    assert criteria.outcome["worst_sector_accuracy"] == "fail"
    recent = criteria.loc["recent_days_vs_production"]
    assert recent.outcome == "not applicable" and recent.detail.startswith("0 recent days")
    assert decision.loc[~decision.passed, "name"].tolist() == ["worst_sector_accuracy"]
    assert decision.candidate_version.iloc[0] == "v0002"
    assert _registry(home_copy).champion().version == "v0001"
    assert "predictions" not in materialized_keys(result)  # a retrain never publishes; the daily run does
    preds = Warehouse(home_copy / "warehouse.duckdb").read('select * from "assets"."predictions"')
    assert len(preds) and (preds.model_version == "v0001").all()
    meta = result.asset_materializations_for_node("promotion_decision")[0].metadata
    assert meta["verdict"].value == "REJECT" and "worst_sector_accuracy" in meta["reason"].value
    # The rejected candidate's cycle is logged with its trigger, rows, metrics and verdict.
    runs = Warehouse(home_copy / "warehouse.duckdb").read('select * from "assets"."training_runs"')
    last = runs.iloc[-1]
    assert (last.candidate_version, bool(last.promoted), last.trigger) == ("v0002", False, "manual")
    assert last.samples > 0 and json.loads(last.metrics)["accuracy"] == pytest.approx(last.accuracy)

    # A person can still make it champion: the override job needs a reason and records it.
    from dagster import DagsterInvalidConfigError

    from stockml_assets.definitions import build_definitions

    job = build_definitions(**slice_config(home_copy)).resolve_job_def("override_job")
    with pytest.raises(DagsterInvalidConfigError, match="reason"):
        job.execute_in_process(instance=fresh_instance, run_config={"ops": {"override_champion": {"config": {"version": "v0002"}}}})
    assert _registry(home_copy).champion().version == "v0001"
    result = job.execute_in_process(
        instance=fresh_instance,
        run_config={"ops": {"override_champion": {"config": {"version": "v0002", "reason": "desk wants the sector fix live", "actor": "carol"}}}},
    )
    assert result.success and _registry(home_copy).champion().version == "v0002"
    last = _registry(home_copy).history().iloc[-1]
    assert (last.action, last.actor, last.reason, last.trigger, bool(last.promoted)) == (
        "override",
        "carol",
        "desk wants the sector fix live",
        "manual",
        True,
    )
    assert last.samples > 0 and "accuracy" in json.loads(last.metrics) and last.error is None


def test_rollback_job_restores_a_named_version_and_records_who_and_why(home_copy, fresh_instance):
    # A second champion, v0002 (the registry directly: this tests the rollback job, not training).
    reg = _registry(home_copy)
    first = reg.get("v0001")
    v2 = reg.register(reg.load("v0001"), first.metrics, first.lineage, first.composition)
    reg.promote(v2.version, reason="passed every promotion criterion", actor="promotion_gate")
    assert reg.champion().version == "v0002"

    from stockml_assets.definitions import build_definitions

    job = build_definitions(**slice_config(home_copy)).resolve_job_def("rollback_job")
    result = job.execute_in_process(
        instance=fresh_instance,
        run_config={"ops": {"rollback_champion": {"config": {"version": "v0001", "reason": "v0002 misbehaves live", "actor": "alice"}}}},
    )

    assert result.success and reg.champion().version == "v0001"
    last = reg.history().iloc[-1]
    assert (last.action, last.actor, last.reason) == ("rollback", "alice", "v0002 misbehaves live")
    assert len(reg.history()) == 3  # append-only: promote v0001, promote v0002, rollback v0001


def test_runs_are_recorded_in_the_dagster_instance(materialized):
    runs = {r.run_id: r for r in materialized.instance.get_runs()}
    assert {materialized.result.run_id, materialized.daily.run_id} <= set(runs)
    assert runs[materialized.result.run_id].job_name == "stockml_full_job"
    assert runs[materialized.daily.run_id].job_name == "daily_job"
    assert runs[materialized.daily.run_id].tags["dagster/partition"] == materialized.last_day
    assert runs[materialized.result.run_id].tags["dagster/asset_partition_range_start"] == "2003-01-02"
    assert materialized.instance.get_latest_materialization_event(AssetKey("production_model")) is not None
    # The instance knows which trading days each partitioned asset holds.
    from stockml_assets.partitions import day_keys

    stored = materialized.instance.get_materialized_partitions(AssetKey("raw_prices"))
    assert stored == set(day_keys(SLICE_START, materialized.last_day))


def test_without_a_passing_model_nothing_is_published(tmp_path, fresh_instance):
    impossible = {**LENIENT_GATE, "rank_ic_margin": 1.0}
    config = slice_config(tmp_path / "home", tickers=["XOM", "KO", "JPM"], start="2012-01-01", gate=impossible)
    history = run_history_job(fresh_instance, **config)
    assert history.success  # a rejection is a decision, not a failure
    assert not Warehouse(tmp_path / "home" / "warehouse.duckdb").read('select * from "assets"."promotion_decision"').promoted.any()
    result = run_daily_job(fresh_instance, "2017-11-10", **config)
    assert result.success
    wh = Warehouse(tmp_path / "home" / "warehouse.duckdb")
    assert wh.read('select * from "assets"."production_model"').empty
    assert wh.read('select * from "assets"."predictions"').empty
    drift = wh.read('select * from "assets"."drift_report"').set_index("component")
    assert drift.loc["predictions", "weight"] == 0.0 and 0.0 <= drift.loc["overall", "value"] <= 1.0
    meta = result.asset_materializations_for_node("predictions")[0].metadata
    assert meta["published"].value is False and "no champion" in meta["reason"].value
    assert _registry(tmp_path / "home").champion() is None
    # `stockml status --json` then says so: champion null, the last decision with its failed criteria.
    from stockml_assets.cli import collect_status

    status = collect_status(definitions(**config).resources["stockml"].settings())
    assert status["champion"] is None and status["last_decision"]["promoted"] is False
    assert "rank_ic_vs_best_baseline" in status["last_decision"]["failed"]
    failed = [c for c in status["last_decision"]["criteria"] if c["name"] in status["last_decision"]["failed"]]
    assert all(c["outcome"] == "fail" and not c["passed"] for c in failed)


def test_daily_job_refreshes_data_predictions_and_drift_without_training(materialized, home_copy, fresh_instance):
    day = materialized.last_day
    before = _stored_prices(home_copy)
    result = run_daily_job(fresh_instance, day, **slice_config(home_copy))
    assert result.success
    assert materialized_keys(result) == job_assets("daily_job")
    assert {"raw_prices", "feature_matrix", "predictions", "drift_report", "rare_event_watch"} <= materialized_keys(result)
    assert not materialized_keys(result) & TRAINING_AND_GATE
    assert _registry(home_copy).champion().version == "v0001"
    # Only the day's partition is written; every other stored day is untouched.
    for name in ("raw_prices", "feature_matrix", "predictions", "drift_report"):
        assert materialized_partitions(result, name) == [day], name
    pd.testing.assert_frame_equal(_stored_prices(home_copy), before)
    features = next(e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == "feature_matrix")
    meta = features.materialization.metadata
    assert meta["dagster/row_count"].value == 6 and (meta["first_date"].value, meta["last_date"].value) == (day, day)
    # The day plus each ticker's lookback window of stored partitions, not the whole history.
    assert meta["history_rows_read"].value <= 6 * (FEATURE_LOOKBACK_DAYS + 1) < len(before) / 4
    preds = Warehouse(home_copy / "warehouse.duckdb").read('select * from "assets"."predictions"')
    assert {f"{d:%Y-%m-%d}" for d in preds.date} == {day} and (preds.model_version == "v0001").all()


def test_a_universe_that_drops_a_priced_ticker_is_refused_before_it_is_stored(materialized, home_copy, fresh_instance, tmp_path):
    """Issue 15 (3): with KO's row gone from sectors.csv the run failed, but only after the 5-row universe had
    replaced the good 6-row one. The universe is checked against the stored one before it is stored."""
    folder = tmp_path / "orphan"
    write_slice_folder(folder)
    sectors = pd.read_csv(folder / "sectors.csv")
    sectors[sectors.ticker != "KO"].to_csv(folder / "sectors.csv", index=False)
    wh = Warehouse(home_copy / "warehouse.duckdb")
    universe, prices = wh.read('select * from "assets"."market_universe" order by ticker'), _stored_prices(home_copy)

    result = run_daily_job(fresh_instance, materialized.last_day, **slice_config(home_copy, data_dir=folder, tickers=None))

    assert not result.success
    failure = _step_failure(result, "market_universe").user_failure_data
    assert "market_universe_keeps_priced_tickers" in failure.description
    assert "KO Consumer Staples (it still has prices: restore its row in sectors.csv" in failure.description
    assert materialized_keys(result) == set()
    pd.testing.assert_frame_equal(wh.read('select * from "assets"."market_universe" order by ticker'), universe)
    pd.testing.assert_frame_equal(_stored_prices(home_copy), prices)
    assert _registry(home_copy).champion().version == "v0001"


def test_a_priced_ticker_without_a_sector_on_a_first_run_stops_it(fresh_instance, tmp_path):
    """No stored universe to compare with: the ticker's rows are unknown-ticker rows, far above the limit."""
    folder = tmp_path / "orphan"
    write_slice_folder(folder, start="2017-06-01")
    sectors = pd.read_csv(folder / "sectors.csv")
    sectors[sectors.ticker != "KO"].to_csv(folder / "sectors.csv", index=False)

    result = run_history_job(
        fresh_instance, "2017-06-01", "2017-11-10", train=False, **slice_config(tmp_path / "home", data_dir=folder, tickers=None, start="2017-06-01")
    )

    assert not result.success
    failure = _step_failure(result, "raw_prices").user_failure_data
    # A sixth of the rows belong to an unknown ticker: far above the run's limit, so the run is refused.
    assert "unknown_ticker" in failure.description and "0.10% of a run's rows" in failure.description
    listed = failure.metadata["bad rows by rule and ticker"].value
    tickers = {line.split("|")[2].strip() for line in listed.splitlines()[2:]}
    assert tickers == {"KO"}  # only KO's rows are named
    assert "add the ticker to sectors.csv" in failure.metadata["quarantine_would_be"].value
    assert materialized_keys(result) == {"market_universe"}


class _Planted:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):  # runs code when unpickled
        return (open, (self.marker, "w"))


def test_a_planted_pickle_in_dagster_storage_is_refused_not_unpickled(materialized, home_copy, fresh_instance, tmp_path):
    """Issue 15: a crafted pickle in $STOCKML_HOME/dagster_storage ran code on the next materialization that read it."""
    import pickle

    from dagster import AssetKey

    marker = tmp_path / "pwned"
    (home_copy / "dagster_storage" / "meta_learner").write_bytes(pickle.dumps(_Planted(str(marker))))
    job = definitions(**slice_config(home_copy)).resolve_job_def("retraining_job")
    before = _registry(home_copy).champion().version
    result = job.execute_in_process(instance=fresh_instance, raise_on_error=False, asset_selection=[AssetKey("validation_report")])
    assert not result.success and not marker.exists()
    errors = " ".join(str(ev.event_specific_data.error.cause or ev.event_specific_data.error) for ev in result.all_events if ev.is_step_failure)
    assert "meta_learner" in errors and "failed its integrity check" in errors and "not unpickled" in errors
    assert _registry(home_copy).champion().version == before


def test_a_malformed_price_file_fails_at_once_without_retries(tmp_path, fresh_instance):
    """A header-only prices file is no late feed: raw_prices fails on its first attempt with the file's own message."""
    import time

    folder = tmp_path / "data"
    write_slice_folder(folder, tickers=["XOM", "KO"], start="2017-01-01")
    header = (folder / "prices.csv").read_text().splitlines()[0]
    (folder / "prices.csv").write_text(header + "\n")
    t0 = time.perf_counter()
    result = run_history_job(
        fresh_instance,
        "2017-11-06",
        "2017-11-10",
        train=False,
        **slice_config(tmp_path / "home", data_dir=folder, tickers=["XOM", "KO"], start="2017-01-01"),
    )
    assert not result.success and time.perf_counter() - t0 < 60
    assert not [ev for ev in result.all_events if ev.event_type_value == "STEP_UP_FOR_RETRY"]
    failure = next(ev for ev in result.all_events if ev.is_step_failure)
    assert failure.step_key == "raw_prices" and "a header and no rows" in failure.event_specific_data.error.message


def test_a_bad_universe_is_refused_before_it_is_stored_and_a_fixed_one_is_picked_up_daily(materialized, home_copy, fresh_instance, tmp_path):
    """Issue 15 (3): a duplicated ticker in sectors.csv failed the blocking schema check *after* the 7-row table had
    replaced the good 6-row one, and the daily job never re-read sectors.csv."""
    folder = tmp_path / "data"
    write_slice_folder(folder)
    good = pd.read_csv(folder / "sectors.csv")
    before = Warehouse(home_copy / "warehouse.duckdb").read('select * from "assets"."market_universe" order by ticker')
    config = slice_config(home_copy, data_dir=folder, tickers=None)
    for broken, check in [
        (pd.concat([good, good[good.ticker == "KO"]]), "market_universe_unique_tickers"),
        (good.assign(gics_sector=good.gics_sector.replace("Energy", "Energie")), "market_universe_gics_sectors"),
    ]:
        broken.to_csv(folder / "sectors.csv", index=False)
        result = run_daily_job(fresh_instance, materialized.last_day, **config)
        assert not result.success
        failure = _step_failure(result, "market_universe").user_failure_data
        assert check in failure.description and ("KO" in failure.description or "XOM" in failure.description)
        stored = Warehouse(home_copy / "warehouse.duckdb").read('select * from "assets"."market_universe" order by ticker')
        pd.testing.assert_frame_equal(stored, before)  # nothing stored
    # The fixed file, with one more company's name changed, is read by the next daily run.
    good.assign(name=good.name.where(good.ticker != "KO", "The Coca-Cola Company")).to_csv(folder / "sectors.csv", index=False)
    assert run_daily_job(fresh_instance, materialized.last_day, **config).success
    stored = Warehouse(home_copy / "warehouse.duckdb").read('select * from "assets"."market_universe"').set_index("ticker")
    assert stored.name["KO"] == "The Coca-Cola Company" and len(stored) == len(before)


def test_an_unpartitioned_table_that_fails_its_schema_keeps_the_last_good_one(materialized, home_copy, fresh_instance, monkeypatch):
    """Issue 15 (3) / 16: the blocking schema check of an unpartitioned table ran after Dagster's IO manager had
    deleted the stored table and inserted the new one. Now the IO manager validates first: a labels table with an
    impossible class fails `labels` itself, with the rows named, and the stored labels stay byte for byte."""
    import stockml_assets.assets.data as data_assets
    from stockml_assets.execution import execute

    real = data_assets.compute_labels

    def planted(*args, **kwargs):  # a bug that writes a class outside {0, 1, 2} into two rows
        df = real(*args, **kwargs)
        df.loc[df.index[:2], "label"] = 7.0
        return df

    monkeypatch.setattr(data_assets, "compute_labels", planted)
    wh = Warehouse(home_copy / "warehouse.duckdb")
    before = wh.read('select * from "assets"."labels" order by ticker, date')
    job = definitions(**slice_config(home_copy)).resolve_job_def("stockml_full_job")
    result = execute(
        job,
        fresh_instance,
        asset_selection=[AssetKey("labels")],
        tags={"dagster/asset_partition_range_start": materialized.last_day, "dagster/asset_partition_range_end": materialized.last_day},
    )
    assert not result.success
    failure = _step_failure(result, "labels")
    failure = failure.user_failure_data
    assert "labels_schema failed" in failure.description and "nothing was stored" in failure.description
    assert "label" in failure.metadata["labels_schema failure_cases"].value
    pd.testing.assert_frame_equal(wh.read('select * from "assets"."labels" order by ticker, date'), before)
    assert _registry(home_copy).champion().version == "v0001"
