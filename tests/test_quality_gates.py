"""Quality gates: bad prices stop everything; a rejected model never touches the champion; rollback."""

import json

import pandas as pd
import pytest
from dagster import AssetKey

from stockml_core.registry import ModelRegistry
from stockml_core.warehouse import Warehouse
from tests.conftest import LENIENT_GATE, run_job, slice_config, write_slice_folder


def _registry(home) -> ModelRegistry:
    return ModelRegistry(Warehouse(home / "warehouse.duckdb"), home / "models")


def _check_result(result, name):
    return next(e.event_specific_data for e in result.all_events
                if e.event_type_value == "ASSET_CHECK_EVALUATION" and e.event_specific_data.asset_check_key.name == name)


def test_bad_prices_fail_the_check_with_rows_named_and_change_nothing(materialized, home_copy, tmp_path):
    folder = tmp_path / "bad_data"
    prices = write_slice_folder(folder)
    prices = prices.reset_index(drop=True)
    i = prices.index[(prices.ticker == "XOM") & (prices.date == "2010-03-01")][0]
    j = prices.index[(prices.ticker == "KO") & (prices.date == "2011-05-02")][0]
    prices.loc[i, "high"] = prices.loc[i, "low"] * 0.9  # high < low
    prices.loc[j, "close"] = -1.0  # a negative close
    dup = prices[(prices.ticker == "IBM") & (prices.date == "2012-07-02")]
    pd.concat([prices, dup]).to_csv(folder / "prices.csv", index=False)
    wh = Warehouse(home_copy / "warehouse.duckdb")
    before = wh.read('select count(*) as n from "assets"."raw_prices"').n.iloc[0]

    result = run_job("stockml_full_job", materialized.instance, **slice_config(home_copy, data_dir=folder))

    assert not result.success
    check = _check_result(result, "raw_prices_valid")
    listed = check.metadata["failure_cases"].value + check.metadata["summary"].value
    assert not check.passed
    for row in ["XOM", "2010-03-01", "KO", "2011-05-02", "IBM", "2012-07-02"]:
        assert row in listed
    materialized_now = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert materialized_now == {"market_universe"}  # only the upstream universe; nothing from raw_prices on
    assert wh.read('select count(*) as n from "assets"."raw_prices"').n.iloc[0] == before
    assert _registry(home_copy).champion().version == "v0001"


def test_rejected_candidate_never_touches_the_champion(materialized, home_copy):
    strict = {**LENIENT_GATE, "min_sector_accuracy": 0.99}
    result = run_job("retraining_job", materialized.instance, **slice_config(home_copy, gate=strict))

    assert result.success
    decision = Warehouse(home_copy / "warehouse.duckdb").read('select * from "assets"."promotion_decision"')
    assert not decision.promoted.any()
    assert decision.loc[~decision.passed, "name"].tolist() == ["worst_sector_accuracy"]
    assert decision.candidate_version.iloc[0] == "v0002"
    assert _registry(home_copy).champion().version == "v0001"
    preds = Warehouse(home_copy / "warehouse.duckdb").read('select * from "assets"."predictions"')
    assert (preds.model_version == "v0001").all()
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
        job.execute_in_process(instance=materialized.instance,
                               run_config={"ops": {"override_champion": {"config": {"version": "v0002"}}}})
    assert _registry(home_copy).champion().version == "v0001"
    result = job.execute_in_process(instance=materialized.instance, run_config={"ops": {"override_champion": {
        "config": {"version": "v0002", "reason": "desk wants the sector fix live", "actor": "carol"}}}})
    assert result.success and _registry(home_copy).champion().version == "v0002"
    last = _registry(home_copy).history().iloc[-1]
    assert (last.action, last.actor, last.reason, last.trigger, bool(last.promoted)) == (
        "override", "carol", "desk wants the sector fix live", "manual", True)
    assert last.samples > 0 and "accuracy" in json.loads(last.metrics) and last.error is None


def test_rollback_job_restores_a_named_version_and_records_who_and_why(materialized, home_copy):
    assert run_job("retraining_job", materialized.instance, **slice_config(home_copy)).success
    reg = _registry(home_copy)
    assert reg.champion().version == "v0002"

    from stockml_assets.definitions import build_definitions

    job = build_definitions(**slice_config(home_copy)).resolve_job_def("rollback_job")
    result = job.execute_in_process(instance=materialized.instance, run_config={"ops": {"rollback_champion": {
        "config": {"version": "v0001", "reason": "v0002 misbehaves live", "actor": "alice"}}}})

    assert result.success and reg.champion().version == "v0001"
    last = reg.history().iloc[-1]
    assert (last.action, last.actor, last.reason) == ("rollback", "alice", "v0002 misbehaves live")
    assert len(reg.history()) == 3  # append-only: promote v0001, promote v0002, rollback v0001


def test_runs_are_recorded_in_the_dagster_instance(materialized):
    runs = materialized.instance.get_runs()
    assert materialized.result.run_id in {r.run_id for r in runs}
    assert materialized.instance.get_latest_materialization_event(AssetKey("production_model")) is not None


def test_without_a_passing_model_nothing_is_published(tmp_path):
    from dagster import DagsterInstance

    impossible = {**LENIENT_GATE, "accuracy_margin": 0.5}
    with DagsterInstance.ephemeral() as instance:
        result = run_job("stockml_full_job", instance, **slice_config(
            tmp_path / "home", tickers=["XOM", "KO", "JPM"], start="2007-01-01", gate=impossible))
    assert result.success  # a rejection is a decision, not a failure
    wh = Warehouse(tmp_path / "home" / "warehouse.duckdb")
    assert wh.read('select * from "assets"."production_model"').empty
    assert wh.read('select * from "assets"."predictions"').empty
    drift = wh.read('select * from "assets"."drift_report"').set_index("component")
    assert drift.loc["predictions", "weight"] == 0.0 and 0.0 <= drift.loc["overall", "value"] <= 1.0
    meta = result.asset_materializations_for_node("predictions")[0].metadata
    assert meta["published"].value is False and "no champion" in meta["reason"].value
    assert _registry(tmp_path / "home").champion() is None


def test_daily_job_refreshes_data_predictions_and_drift_without_training(materialized, home_copy):
    result = run_job("daily_job", materialized.instance, **slice_config(home_copy))
    assert result.success
    done = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert {"raw_prices", "feature_matrix", "predictions", "drift_report"} <= done
    assert not done & {"training_set", "rf_model", "xgb_model", "meta_learner", "production_model"}
    assert _registry(home_copy).champion().version == "v0001"
    # Same data as the stored matrix: the daily run takes the incremental path (no new day here).
    features = next(e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == "feature_matrix")
    assert features.materialization.metadata["computation"].value.startswith("incremental: 0 new rows")


def test_a_priced_ticker_without_a_sector_stops_the_run(materialized, home_copy, tmp_path):
    folder = tmp_path / "orphan"
    write_slice_folder(folder)
    sectors = pd.read_csv(folder / "sectors.csv")
    sectors[sectors.ticker != "KO"].to_csv(folder / "sectors.csv", index=False)

    result = run_job("stockml_full_job", materialized.instance, **slice_config(home_copy, data_dir=folder, tickers=None))

    assert not result.success
    check = _check_result(result, "every_ticker_has_sector")
    assert not check.passed and check.metadata["tickers_without_sector"].value == "KO"
    assert _registry(home_copy).champion().version == "v0001"
