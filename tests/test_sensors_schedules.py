"""The drift sensor and the schedules, evaluated against a real Dagster instance."""

from datetime import datetime
from zoneinfo import ZoneInfo

from dagster import AssetMaterialization, DagsterInstance, MetadataValue, build_schedule_context, build_sensor_context

from stockml_assets.definitions import defs
from stockml_assets.sensors import DRIFT_THRESHOLD

NY = ZoneInfo("America/New_York")


def _report_drift(instance: DagsterInstance, score: float) -> None:
    instance.report_runless_asset_event(AssetMaterialization(asset_key="drift_report", metadata={"drift_score": score}))


def _tick(instance: DagsterInstance, cursor: str | None):
    sensor = defs.resolve_sensor_def("drift_sensor")
    return sensor.evaluate_tick(build_sensor_context(instance=instance, cursor=cursor, definitions=defs))


def test_one_high_drift_materialization_requests_exactly_one_retraining_run():
    with DagsterInstance.ephemeral() as instance:
        _report_drift(instance, DRIFT_THRESHOLD + 0.2)
        first = _tick(instance, None)
        again = _tick(instance, first.cursor)  # no new materialization: nothing more

    assert len(first.run_requests) == 1
    request = first.run_requests[0]
    assert request.run_key.startswith("drift-") and request.tags["stockml/trigger"] == "drift"
    assert request.job_name in (None, "retraining_job")
    assert again.run_requests == [] or again.run_requests is None


def test_low_drift_requests_nothing():
    with DagsterInstance.ephemeral() as instance:
        _report_drift(instance, DRIFT_THRESHOLD / 2)
        tick = _tick(instance, None)
    assert not tick.run_requests
    assert "below threshold" in (tick.skip_message or "")


def test_two_drift_events_get_two_distinct_run_keys():
    with DagsterInstance.ephemeral() as instance:
        _report_drift(instance, 0.9)
        first = _tick(instance, None)
        _report_drift(instance, 0.95)
        second = _tick(instance, first.cursor)
    assert len(first.run_requests) == len(second.run_requests) == 1
    assert first.run_requests[0].run_key != second.run_requests[0].run_key


def test_daily_schedule_skips_nyse_holidays():
    schedule = defs.resolve_schedule_def("daily_after_close")
    thanksgiving = datetime(2017, 11, 23, 18, 30, tzinfo=NY)
    with DagsterInstance.ephemeral() as instance:
        result = schedule.evaluate_tick(build_schedule_context(instance=instance, scheduled_execution_time=thanksgiving))
    assert not result.run_requests and "holiday" in result.skip_message


def test_daily_schedule_runs_on_trading_days_after_the_close():
    schedule = defs.resolve_schedule_def("daily_after_close")
    assert schedule.cron_schedule == "30 18 * * 1-5" and schedule.execution_timezone == "America/New_York"
    day = datetime(2017, 11, 10, 18, 30, tzinfo=NY)
    with DagsterInstance.ephemeral() as instance:
        result = schedule.evaluate_tick(build_schedule_context(instance=instance, scheduled_execution_time=day))
    assert len(result.run_requests) == 1 and result.run_requests[0].tags["stockml/trigger"] == "scheduled"


def test_weekly_full_retrain_is_defined():
    schedule = defs.resolve_schedule_def("weekly_full_retrain")
    assert schedule.job_name == "stockml_full_job" and schedule.cron_schedule == "0 6 * * 6"


def test_default_executor_is_in_process():
    assert defs.resolve_job_def("stockml_full_job").executor_def.name == "in_process"




def _report_catalog(instance: DagsterInstance, names: list[str]) -> None:
    instance.report_runless_asset_event(AssetMaterialization(asset_key="rare_event_catalog",
                                                             metadata={"event_names": MetadataValue.json(names)}))


def test_a_new_rare_event_requests_retraining_once():
    sensor = defs.resolve_sensor_def("new_rare_event_sensor")
    with DagsterInstance.ephemeral() as instance:
        _report_catalog(instance, ["gulf_war_1990", "us_downgrade_2011"])
        baseline = sensor.evaluate_tick(build_sensor_context(instance=instance, definitions=defs))
        _report_catalog(instance, ["gulf_war_1990", "us_downgrade_2011", "crash_2018"])
        grown = sensor.evaluate_tick(build_sensor_context(instance=instance, cursor=baseline.cursor, definitions=defs))
        same = sensor.evaluate_tick(build_sensor_context(instance=instance, cursor=grown.cursor, definitions=defs))
    assert not baseline.run_requests
    assert len(grown.run_requests) == 1 and grown.run_requests[0].tags["stockml/trigger"] == "new_event"
    assert "crash_2018" in grown.run_requests[0].run_key
    assert not same.run_requests


def test_a_failed_training_run_is_recorded_in_training_runs(tmp_path):
    from dagster import DagsterEventType, build_run_status_sensor_context

    from stockml_assets.definitions import build_definitions
    from stockml_core.warehouse import Warehouse

    home = tmp_path / "home"
    fresh = build_definitions(home=home, tickers=["XOM"], fast=True)
    with DagsterInstance.ephemeral() as instance:
        # Retraining on an empty home fails: there is no feature_matrix to train on.
        result = fresh.resolve_job_def("retraining_job").execute_in_process(
            instance=instance, raise_on_error=False, tags={"stockml/trigger": "drift"})
        assert not result.success
        failure = next(e for e in result.all_events if e.event_type == DagsterEventType.RUN_FAILURE)
        context = build_run_status_sensor_context(
            sensor_name="training_failure_sensor", dagster_instance=instance, dagster_run=result.dagster_run,
            dagster_event=failure, resources={"stockml": fresh.resources["stockml"]}).for_run_failure()
        fresh.resolve_sensor_def("training_failure_sensor")(context)
    log = Warehouse(home / "warehouse.duckdb").read("select * from training_runs_log")
    assert log.run_id.tolist() == [result.run_id]
    assert log.trigger.tolist() == ["drift"] and not log.promoted.iloc[0] and log.error.iloc[0]
