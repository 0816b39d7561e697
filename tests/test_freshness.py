"""Freshness on the data's calendar: the caught_up_with_the_feed check on drift_report."""

import os
from datetime import UTC, datetime, timedelta

from dagster import AssetCheckKey, AssetKey, AssetMaterialization, build_sensor_context

from stockml_assets.definitions import defs
from stockml_assets.freshness import CHECK_NAME, judge_freshness, record_freshness
from stockml_assets.resources import StockMLResource
from tests.conftest import SAMPLE_DATA_DIR, evaluate, write_slice_folder

KEY = AssetCheckKey(AssetKey("drift_report"), CHECK_NAME)


def _evaluations(instance) -> list:
    """The check's recorded evaluations, newest first."""
    records = instance.event_log_storage.get_asset_check_execution_history(KEY, limit=50)
    return [r.event.dagster_event.event_specific_data for r in records if r.event and r.event.dagster_event]


def test_after_the_daily_run_the_feed_is_caught_up(materialized) -> None:
    """After `stockml run`'s daily run every delivered day is processed. The check is no step of the daily
    run (the sensor and the CLI judge it: a step per run would cost every replayed day)."""
    assert not [
        e for e in materialized.daily.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION" and e.event_specific_data.check_name == CHECK_NAME
    ]
    f = judge_freshness(materialized.instance, SAMPLE_DATA_DIR, 6.0)
    assert (f.passed, f.status, f.feed_last_day, f.processed_last_day) == (True, "caught up", materialized.last_day, materialized.last_day)


def test_a_delivered_day_waits_then_is_overdue_and_the_sensor_records_each_change(fresh_instance, tmp_path) -> None:
    folder = tmp_path / "data"
    write_slice_folder(folder, tickers=["XOM", "KO"], start="2006-01-03", end="2006-01-26")
    delivered = datetime.fromtimestamp(os.stat(folder / "prices.csv").st_mtime, UTC)
    fresh_instance.report_runless_asset_event(AssetMaterialization(asset_key="drift_report", partition="2006-01-25"))

    waiting = judge_freshness(fresh_instance, folder, 6.0, now=delivered + timedelta(hours=1))
    assert waiting.passed and waiting.status == "awaiting the daily run", waiting
    assert (waiting.feed_last_day, waiting.processed_last_day, waiting.days_behind) == ("2006-01-26", "2006-01-25", 1)
    late = judge_freshness(fresh_instance, folder, 6.0, now=delivered + timedelta(hours=7))
    assert not late.passed and late.status == "overdue" and "1 trading day(s) behind" in late.description, late

    sensor = defs.resolve_sensor_def("feed_freshness_sensor")

    def tick(cursor):
        return evaluate(
            sensor,
            build_sensor_context(
                instance=fresh_instance,
                cursor=cursor,
                definitions=defs,
                resources={"stockml": StockMLResource(data_dir=str(folder), home=str(tmp_path / "home"))},
            ),
        )

    first = tick(None)
    again = tick(first.cursor)  # the same verdict: not recorded twice
    assert len(_evaluations(fresh_instance)) == 1 and again.cursor == first.cursor
    fresh_instance.report_runless_asset_event(AssetMaterialization(asset_key="drift_report", partition="2006-01-26"))
    tick(again.cursor)
    newest = _evaluations(fresh_instance)
    assert len(newest) == 2 and newest[0].passed and newest[0].metadata["status"].value == "caught up"
    assert "2006-01-26" in newest[0].description


def test_an_unreadable_feed_fails_the_check(fresh_instance, tmp_path) -> None:
    f = record_freshness(fresh_instance, tmp_path / "missing", 6.0)
    assert not f.passed and f.status == "feed unreadable" and "no prices.csv" in f.description
    (ev,) = _evaluations(fresh_instance)
    assert not ev.passed and ev.metadata["status"].value == "feed unreadable"
