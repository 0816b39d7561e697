"""The sensors and the schedules, evaluated against a real Dagster instance."""

import json
from datetime import datetime
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from dagster import AssetMaterialization, DagsterInstance, MetadataValue, build_schedule_context, build_sensor_context

from stockml_assets.definitions import defs
from stockml_assets.partitions import day_keys
from stockml_assets.tags import CAPTURE_TAG
from stockml_core.settings import DriftSettings
from tests.conftest import evaluate, make_instance, write_slice_folder

NY = ZoneInfo("America/New_York")
DRIFT = DriftSettings()
HIGH = DRIFT.score_threshold + 0.2
LOW = DRIFT.score_threshold / 2
P, COOLDOWN = DRIFT.persistence_days, DRIFT.cooldown_days
DAYS = day_keys("2020-01-02", "2020-06-30")  # trading days to play scores on


def _report_drift(instance: DagsterInstance, scores: dict[str, float], partitions=None) -> None:
    """drift_report materializations as a run writes them: one per partition (day), each carrying the run's
    ``daily_scores``; a daily run has one day, a range run several."""
    for day in partitions or list(scores):
        instance.report_runless_asset_event(
            AssetMaterialization(
                asset_key="drift_report", partition=day, metadata={"drift_score": scores[max(scores)], "daily_scores": MetadataValue.json(scores)}
            )
        )


def _tick(instance: DagsterInstance, cursor: str | None, stockml=None):
    sensor = defs.resolve_sensor_def("drift_sensor")
    return evaluate(
        sensor, build_sensor_context(instance=instance, cursor=cursor, definitions=defs, resources={"stockml": stockml or defs.resources["stockml"]})
    )


def _play(instance: DagsterInstance, scores: list[float], start: int = 0, cursor: str | None = None, stockml=None):
    """One daily run and one sensor tick per trading day; (day, run requests) per day, and the cursor."""
    out = []
    for day, score in zip(DAYS[start:], scores, strict=False):
        _report_drift(instance, {day: score})
        tick = _tick(instance, cursor, stockml)
        cursor = tick.cursor
        out.append((day, list(tick.run_requests or [])))
    return out, cursor


def _triggered(played) -> list[tuple[str, object]]:
    return [(day, rr) for day, rrs in played for rr in rrs]


def test_the_drift_policy_is_the_deployments_settings(tmp_path):
    """drift_sensor reads the policy from the deployment's resource (STOCKML_DRIFT or its config), like the gate."""
    from stockml_assets.resources import StockMLResource

    strict = StockMLResource(data_dir=str(tmp_path), home=str(tmp_path / "home"), drift={"score_threshold": HIGH + 0.05, "persistence_days": 2})
    with DagsterInstance.ephemeral() as instance:
        played, _ = _play(instance, [HIGH] * (P + 3), stockml=strict)
    assert _triggered(played) == []  # HIGH is below this deployment's threshold
    lenient = StockMLResource(data_dir=str(tmp_path), home=str(tmp_path / "home"), drift={"persistence_days": 2})
    with DagsterInstance.ephemeral() as instance:
        played, _ = _play(instance, [HIGH] * (P + 3), stockml=lenient)
    assert [day for day, _ in _triggered(played)] == [DAYS[1]]  # on the 2nd day above: its own persistence
    with pytest.raises(ValueError, match="unknown DriftSettings fields"):
        StockMLResource(data_dir=str(tmp_path), home=str(tmp_path), drift={"threshold": 0.5}).settings()


def test_drift_windows_set_in_the_resource_config_are_refused_with_the_fix(tmp_path, monkeypatch):
    """The drift assets' partition look-back is fixed when the code loads (STOCKML_DRIFT): a resource config
    with other windows would compute them on fewer days than it asked for; it is refused, naming the fix."""
    from stockml_assets.resources import StockMLResource, deployment
    from stockml_core.settings import DriftSettings, check_load_time_drift, loaded_drift

    loaded = DriftSettings().reference_window
    with pytest.raises(ValueError, match=r"reference_window 100 \(loaded with 250\).*STOCKML_DRIFT"):
        StockMLResource(data_dir=str(tmp_path), home=str(tmp_path), drift={"reference_window": 100}).settings()
    assert StockMLResource(data_dir=str(tmp_path), home=str(tmp_path), drift={"reference_window": loaded}).settings().drift.reference_window == loaded
    # Code loaded with other windows (STOCKML_DRIFT when it loaded) accepts exactly those.
    wide = DriftSettings(current_window=10)
    assert check_load_time_drift(DriftSettings(current_window=10), loaded=wide).current_window == 10
    with pytest.raises(ValueError, match="current_window 5 \\(loaded with 10\\)"):
        check_load_time_drift(DriftSettings(), loaded=wide)
    # What the code loaded with is read once: a later STOCKML_DRIFT changes neither the partitions' look-back nor
    # the check against it (a deployment asking for the new windows is refused, not computed on fewer days).
    from stockml_assets.partitions import DRIFT_LOOKBACK_DAYS

    monkeypatch.setenv("STOCKML_DRIFT", '{"current_window": 10, "reference_window": 400}')
    assert loaded_drift().reference_window + loaded_drift().current_window - 1 == DRIFT_LOOKBACK_DAYS
    with pytest.raises(ValueError, match="STOCKML_DRIFT"):
        deployment(data_dir=tmp_path, home=tmp_path).settings()
    monkeypatch.delenv("STOCKML_DRIFT")
    # The deployment object reads the environment once and creates nothing (what `stockml status` reads).
    monkeypatch.setenv("STOCKML_HOME", str(tmp_path / "nowhere"))
    monkeypatch.setenv("STOCKML_GATE", '{"min_rank_ic_t": 3.0}')
    monkeypatch.setenv("STOCKML_DRIFT", '{"score_threshold": 0.5}')
    d = deployment()
    assert d.settings().gate.min_rank_ic_t == 3.0 and d.settings().drift.score_threshold == 0.5
    assert not (tmp_path / "nowhere").exists()


def test_drift_must_persist_before_one_retraining_run_is_requested():
    assert P >= 2  # the policy this test protects: one day above is noise
    with DagsterInstance.ephemeral() as instance:
        played, cursor = _play(instance, [HIGH] * (P + 3))
        again = _tick(instance, cursor)  # no new materialization: nothing more
    triggered = _triggered(played)
    assert [day for day, _ in triggered] == [DAYS[P - 1]]  # on the P-th consecutive day above, not before
    request = triggered[0][1]
    assert request.run_key == f"drift-episode-{DAYS[0]}"
    assert request.tags["stockml/trigger"] == "drift" and request.tags["stockml/day"] == DAYS[P - 1]
    assert float(request.tags["stockml/drift_score"]) == pytest.approx(HIGH, abs=1e-4)
    assert request.job_name in (None, "retraining_job")
    assert not again.run_requests


def test_isolated_high_days_and_low_drift_request_nothing():
    scores = ([HIGH] + [LOW] * (P - 1 if P > 1 else 1)) * 4 + [LOW] * 5
    with DagsterInstance.ephemeral() as instance:
        played, cursor = _play(instance, scores)
        tick = _tick(instance, cursor)
    assert _triggered(played) == []
    assert "no retrain" in (tick.skip_message or "")


def test_one_retrain_per_episode_and_none_within_the_cooldown():
    # Episode 1 triggers; it ends after P days below; episode 2 starts at once but is held back by the cooldown.
    scores = [HIGH] * P + [LOW] * P + [HIGH] * (COOLDOWN + P + 5)
    with DagsterInstance.ephemeral() as instance:
        played, _ = _play(instance, scores)
    triggered = _triggered(played)
    assert len(triggered) == 2
    first, second = triggered
    assert first[0] == DAYS[P - 1]
    # The second episode's retrain comes once the cooldown has passed, not one day earlier.
    assert DAYS.index(second[0]) - DAYS.index(first[0]) == max(COOLDOWN, 2 * P)
    assert first[1].run_key != second[1].run_key == f"drift-episode-{DAYS[2 * P]}"


def test_a_range_run_is_read_day_by_day_and_past_days_do_not_replay():
    with DagsterInstance.ephemeral() as instance:
        baseline = _tick(instance, None)
        # One run over P days (one materialization per partition, each with every day's score).
        days = DAYS[:P]
        _report_drift(instance, {d: HIGH for d in days})
        tick = _tick(instance, baseline.cursor)
        # The same days materialized again (a backfill of the past): no second trigger.
        _report_drift(instance, {d: HIGH for d in days})
        again = _tick(instance, tick.cursor)
    assert [rr.tags["stockml/day"] for rr in tick.run_requests] == [days[-1]]
    assert not again.run_requests


def _report_watch(instance: DagsterInstance, day: str, event: dict) -> None:
    instance.report_runless_asset_event(
        AssetMaterialization(asset_key="rare_event_watch", partition=day, metadata={"candidate_event": MetadataValue.json(event)})
    )


def test_rare_event_capture_sensor_requests_one_capture_per_event():
    sensor = defs.resolve_sensor_def("rare_event_capture_sensor")
    event = {"name": "captured_2020_03_09", "start": "2020-03-09", "end": "2020-03-16", "description": "test"}
    with DagsterInstance.ephemeral() as instance:
        _report_watch(instance, "2020-03-13", {})  # conditions do not hold
        quiet = evaluate(sensor, build_sensor_context(instance=instance, definitions=defs))
        _report_watch(instance, "2020-03-16", event)
        found = evaluate(sensor, build_sensor_context(instance=instance, cursor=quiet.cursor, definitions=defs))
        same = evaluate(sensor, build_sensor_context(instance=instance, cursor=found.cursor, definitions=defs))
    assert not quiet.run_requests and not same.run_requests
    assert len(found.run_requests) == 1
    rr = found.run_requests[0]
    assert rr.run_key == "capture-captured_2020_03_09" and rr.tags["stockml/trigger"] == "new_event"
    assert json.loads(rr.tags[CAPTURE_TAG]) == event


@pytest.fixture
def feed(tmp_path, monkeypatch):
    """A data folder whose feed has delivered prices up to 2016-11-25 (the Friday after Thanksgiving)."""
    write_slice_folder(tmp_path / "feed", tickers=["XOM", "KO"], start="2016-01-01", end="2016-11-25")
    monkeypatch.setenv("STOCKML_DATA_DIR", str(tmp_path / "feed"))
    return tmp_path / "feed"


@pytest.fixture
def instance(tmp_path):
    """A local instance (a schedule's context needs an instance reference; an ephemeral one has none)."""
    inst = make_instance(tmp_path / "dagster_home")
    yield inst
    inst.dispose()


def _schedule_tick(instance: DagsterInstance, when: datetime):
    """The daily schedule's tick on a deployment whose data folder is the feed's (STOCKML_DATA_DIR, set by ``feed``)."""
    from stockml_assets.resources import StockMLResource
    from stockml_core.settings import data_dir_from_env

    resources = {"stockml": StockMLResource(data_dir=str(data_dir_from_env()), home=defs.resources["stockml"].home)}
    schedule = defs.resolve_schedule_def("daily_after_close")
    return evaluate(
        schedule,
        build_schedule_context(instance=instance, scheduled_execution_time=when, repository_def=defs.get_repository_def(), resources=resources),
    )


def _processed(instance: DagsterInstance, day: str) -> None:
    """The last daily run processed ``day`` (its drift_report partition is the newest)."""
    instance.report_runless_asset_event(AssetMaterialization(asset_key="drift_report", partition=day))


def test_daily_schedule_skips_nyse_holidays(feed, instance):
    thanksgiving = datetime(2016, 11, 24, 18, 30, tzinfo=NY)
    _processed(instance, "2016-11-23")
    result = _schedule_tick(instance, thanksgiving)
    assert not result.run_requests
    assert "2016-11-24" in result.skip_message and "NYSE" in result.skip_message  # says why: the exchange is closed


def test_daily_schedule_requests_the_next_delivered_trading_day(feed, instance):
    schedule = defs.resolve_schedule_def("daily_after_close")
    assert schedule.cron_schedule == "30 18 * * 1-5" and schedule.execution_timezone == "America/New_York"
    assert schedule.job_name == "daily_job"
    _processed(instance, "2016-11-23")
    result = _schedule_tick(instance, datetime(2016, 11, 25, 18, 30, tzinfo=NY))
    assert len(result.run_requests) == 1
    rr = result.run_requests[0]
    assert rr.partition_key == "2016-11-25" and rr.run_key == "daily-2016-11-25"  # the holiday is not a partition
    assert rr.tags["stockml/trigger"] == "scheduled"


def test_daily_schedule_continues_after_the_newest_day_even_after_a_backfill_of_the_past(feed, instance):
    _processed(instance, "2016-11-23")
    _processed(instance, "2016-06-01")  # a backfill of a past day, run after the last daily run
    result = _schedule_tick(instance, datetime(2016, 11, 25, 18, 30, tzinfo=NY))
    assert [rr.partition_key for rr in result.run_requests] == ["2016-11-25"]


def test_daily_schedule_catches_up_missed_days_in_one_range_run(feed, instance):
    _processed(instance, "2016-11-18")
    result = _schedule_tick(instance, datetime(2016, 11, 28, 18, 30, tzinfo=NY))
    assert len(result.run_requests) == 1
    rr = result.run_requests[0]
    # Monday's tick: the feed has delivered up to Friday 25th; the range is every trading day since the 18th.
    assert rr.tags["dagster/asset_partition_range_start"] == "2016-11-21"
    assert rr.tags["dagster/asset_partition_range_end"] == "2016-11-25"
    assert rr.run_key == "daily-2016-11-21-2016-11-25"


def test_daily_schedule_waits_for_the_feed(feed, instance):
    _processed(instance, "2016-11-25")
    result = _schedule_tick(instance, datetime(2016, 11, 28, 18, 30, tzinfo=NY))
    assert not result.run_requests
    assert "no new trading day" in result.skip_message and "2016-11-25" in result.skip_message


def test_weekly_full_retrain_targets_the_retraining_job(instance):
    schedule = defs.resolve_schedule_def("weekly_full_retrain")
    assert schedule.job_name == "retraining_job" and schedule.cron_schedule == "0 6 * * 6"
    result = evaluate(schedule, build_schedule_context(instance=instance, scheduled_execution_time=datetime(2017, 11, 11, 6, 0, tzinfo=NY)))
    assert [rr.run_key for rr in result.run_requests] == ["weekly-2017-11-11"]


def test_default_executor_is_in_process():
    for job in ("stockml_full_job", "daily_job", "retraining_job"):
        assert defs.resolve_job_def(job).executor_def.name == "in_process"


def _report_catalog(instance: DagsterInstance, names: list[str]) -> None:
    instance.report_runless_asset_event(
        AssetMaterialization(asset_key="rare_event_catalog", metadata={"historical_event_names": MetadataValue.json(names)})
    )


def test_an_event_added_to_rare_events_csv_requests_retraining_once(tmp_path):
    """The data folder's rare_events.csv gains an event: one retrain, none once a run has catalogued it, and
    none for an event that starts after the last ingested day."""
    from stockml_assets.resources import StockMLResource

    data = tmp_path / "data"
    data.mkdir()
    pd.DataFrame(
        [
            ("gulf_war_1990", "1990-07-17", "1990-10-11"),
            ("us_downgrade_2011", "2011-07-22", "2011-10-03"),
            ("crash_2016", "2016-01-04", "2016-02-11"),
            ("future_2030", "2030-01-02", "2030-02-01"),
        ],
        columns=["name", "start", "end"],
    ).assign(description="x").to_csv(data / "rare_events.csv", index=False)
    sensor = defs.resolve_sensor_def("new_rare_event_sensor")
    resources = {"stockml": StockMLResource(data_dir=str(data), home=str(tmp_path / "home"))}

    def tick(instance):
        return evaluate(sensor, build_sensor_context(instance=instance, definitions=defs, resources=resources))

    with DagsterInstance.ephemeral() as instance:
        assert not tick(instance).run_requests  # nothing catalogued yet: the history run will
        instance.report_runless_asset_event(AssetMaterialization(asset_key="raw_prices", partition="2017-11-10"))
        _report_catalog(instance, ["gulf_war_1990", "us_downgrade_2011"])
        grown = tick(instance)
        _report_catalog(instance, ["crash_2016", "gulf_war_1990", "us_downgrade_2011"])  # the retrain's catalog
        after = tick(instance)
    assert [rr.run_key for rr in grown.run_requests] == ["new-event-crash_2016"]
    assert grown.run_requests[0].tags["stockml/trigger"] == "new_event"
    assert not after.run_requests and "holds all 3 events" in after.skip_message


def test_a_failed_training_run_is_recorded_in_training_runs(tmp_path):
    from dagster import DagsterEventType, build_run_status_sensor_context

    from stockml_assets.definitions import build_definitions
    from stockml_core.storage.warehouse import Warehouse

    home = tmp_path / "home"
    fresh = build_definitions(home=home, tickers=["XOM"], fast=True)
    with DagsterInstance.ephemeral() as instance:
        # Retraining on an empty home fails: there is no feature_matrix to train on.
        result = fresh.resolve_job_def("retraining_job").execute_in_process(
            instance=instance, raise_on_error=False, tags={"stockml/trigger": "drift"}
        )
        assert not result.success
        failure = next(e for e in result.all_events if e.event_type == DagsterEventType.RUN_FAILURE)
        context = build_run_status_sensor_context(
            sensor_name="training_failure_sensor",
            dagster_instance=instance,
            dagster_run=result.dagster_run,
            dagster_event=failure,
            resources={"stockml": fresh.resources["stockml"]},
        ).for_run_failure()
        fresh.resolve_sensor_def("training_failure_sensor")(context)
    log = Warehouse(home / "warehouse.duckdb").read("select * from training_runs_log")
    assert log.run_id.tolist() == [result.run_id]
    assert log.trigger.tolist() == ["drift"] and not log.promoted.iloc[0] and log.error.iloc[0]


def test_the_daily_schedule_recovers_a_daily_run_whose_process_was_killed(feed, instance):
    """Issue 15 (1): a daily run left STARTED by a killed process made every later tick say "still in progress"
    (and its pool slot blocked every run). The tick finds its process gone, marks it failed and goes on."""
    import subprocess
    import sys

    from dagster import DagsterRunStatus

    from stockml_assets.execution import process_tags
    from stockml_assets.tags import HOST_TAG, PID_TAG, STARTED_TAG

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    tags = {**process_tags(), PID_TAG: dead.stdout.strip(), STARTED_TAG: "1"}  # this host, a process that is gone
    assert tags[HOST_TAG]
    left = instance.create_run_for_job(defs.resolve_job_def("daily_job"), tags=tags, status=DagsterRunStatus.STARTED)
    _processed(instance, "2016-11-22")
    result = _schedule_tick(instance, datetime(2016, 11, 28, 18, 30, tzinfo=NY))
    assert instance.get_run_by_id(left.run_id).status == DagsterRunStatus.FAILURE
    assert [rr.run_key for rr in result.run_requests] == ["daily-2016-11-23-2016-11-25"]  # not "still in progress"
