"""Sensors: drift and new rare events launch retraining; failed training cycles are recorded.

The sensors read Dagster's event log (materialization metadata) and the data folder's rare_events.csv,
never the DuckDB warehouse, so they never contend with a run for the warehouse's single writer lock.
"""

import json

import pandas as pd
from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunFailureSensorContext,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    run_failure_sensor,
    sensor,
)

from stockml_assets.jobs import full_job, retraining_job
from stockml_assets.resources import StockMLResource
from stockml_assets.tags import CAPTURE_TAG, DAY_TAG, DRIFT_SCORE_TAG, NEW_EVENTS_TAG, REASON_TAG, TRIGGER_TAG
from stockml_core.decisions.drift import EpisodeState, step_episode
from stockml_core.market.data import DataFolderError, load_rare_events
from stockml_core.settings import automation_from_env, loaded_drift

# The platform runs itself: sensors are on from the start (STOCKML_AUTOMATION=off leaves them off).
SENSOR_STATUS = DefaultSensorStatus.RUNNING if automation_from_env() else DefaultSensorStatus.STOPPED
DRIFT = loaded_drift()  # for the description; each tick reads the deployment's settings


def _new_materializations(context: SensorEvaluationContext, asset: str, after: int | None):
    """Materializations of ``asset`` after storage id ``after``, oldest first, as (storage_id, partition, metadata)."""
    out = []
    cursor = None
    while True:
        res = context.instance.fetch_materializations(
            AssetRecordsFilter(AssetKey(asset), after_storage_id=after), limit=500, cursor=cursor, ascending=True
        )
        for rec in res.records:
            mat = rec.asset_materialization
            if mat is not None:
                out.append((rec.storage_id, mat.partition, mat.metadata))
        if not res.has_more:
            return out
        cursor = res.cursor


def _load_cursor(context: SensorEvaluationContext, default: dict) -> dict:
    return {**default, **json.loads(context.cursor)} if context.cursor else dict(default)


@sensor(
    job=retraining_job,
    name="drift_sensor",
    minimum_interval_seconds=30,
    default_status=SENSOR_STATUS,
    description="Launch the retraining job once per drift episode: the daily drift score must stay at or above "
    f"{DRIFT.score_threshold} for {DRIFT.persistence_days} consecutive trading days, then no new "
    f"drift retrain for {DRIFT.cooldown_days} trading days. Tags the run with trigger and score.",
)
def drift_sensor(context: SensorEvaluationContext, stockml: StockMLResource):
    drift = stockml.settings().drift  # the deployment's policy (STOCKML_DRIFT or the resource config)
    state = _load_cursor(context, {"after": None, "episode": EpisodeState().to_dict(), "last_day": None})
    episode = EpisodeState.from_dict(state["episode"])
    requests, seen = [], 0
    records = _new_materializations(context, "drift_report", state["after"])
    if records:
        state["after"] = max(r[0] for r in records)
    for _, day, meta in sorted(records, key=lambda r: (r[1] or "", r[0])):
        scores = meta["daily_scores"].value if "daily_scores" in meta else {}
        if not day or day not in scores or (state["last_day"] and day <= state["last_day"]):
            continue  # a re-materialized past day does not replay the episode logic
        state["last_day"] = day
        seen += 1
        episode, trigger = step_episode(episode, day, float(scores[day]), drift)
        if trigger:
            requests.append(
                RunRequest(
                    run_key=f"drift-episode-{trigger['episode_start']}",
                    tags={TRIGGER_TAG: "drift", DRIFT_SCORE_TAG: f"{trigger['score']:.4f}", DAY_TAG: day, REASON_TAG: trigger["reason"][:200]},
                )
            )
    state["episode"] = episode.to_dict()
    cursor = json.dumps(state)
    if requests:
        return SensorResult(run_requests=requests, cursor=cursor)
    return SensorResult(skip_reason=SkipReason(f"{seen} new drift day(s); no retrain: {episode.summary()}"), cursor=cursor)


@sensor(
    job=retraining_job,
    name="rare_event_capture_sensor",
    minimum_interval_seconds=30,
    default_status=SENSOR_STATUS,
    description="When rare_event_watch finds a new rare event (crash regime, VIX above 40 for 3+ days, drift score "
    "above 0.25, no overlap with a catalogued event), launch retraining that captures it into the "
    "catalog and grows the archive. One run per event (run key = event name).",
)
def rare_event_capture_sensor(context: SensorEvaluationContext):
    state = _load_cursor(context, {"after": None})
    requests = []
    for storage_id, day, meta in _new_materializations(context, "rare_event_watch", state["after"]):
        state["after"] = storage_id
        event = meta["candidate_event"].value if "candidate_event" in meta else {}
        if event and event.get("end") == day:  # a range run reports its candidate on the capture day only
            requests.append(
                RunRequest(
                    run_key=f"capture-{event['name']}",
                    tags={TRIGGER_TAG: "new_event", DAY_TAG: day, CAPTURE_TAG: json.dumps(event), NEW_EVENTS_TAG: event["name"]},
                )
            )
    if requests:
        return SensorResult(run_requests=requests, cursor=json.dumps(state))
    return SensorResult(skip_reason=SkipReason("no new rare event"), cursor=json.dumps(state))


@sensor(
    job=retraining_job,
    name="new_rare_event_sensor",
    minimum_interval_seconds=60,
    default_status=SENSOR_STATUS,
    description="Launch retraining when the data folder's rare_events.csv holds an event (started by the last "
    "ingested trading day) that the stored catalog lacks, so the archive grows into the next model. "
    "An event a retrain has already catalogued (drift, weekly) needs no second one; captured events "
    "retrain through the capture sensor.",
)
def new_rare_event_sensor(context: SensorEvaluationContext, stockml: StockMLResource):
    event = context.instance.get_latest_materialization_event(AssetKey("rare_event_catalog"))
    mat = event.asset_materialization if event else None
    if mat is None or "historical_event_names" not in mat.metadata:
        return SkipReason("rare_event_catalog not materialized yet")
    prices = context.instance.get_latest_materialization_event(AssetKey("raw_prices"))
    as_of = prices.asset_materialization.partition if prices and prices.asset_materialization else None
    try:
        events = load_rare_events(stockml.settings().data_dir)
    except DataFolderError as exc:
        return SkipReason(f"rare_events.csv cannot be read: {exc}")
    if as_of:  # an event that starts after the last ingested day is not known yet (replays see no future)
        events = events[events.start <= pd.Timestamp(as_of)]
    new = sorted(set(events.name) - set(mat.metadata["historical_event_names"].value))
    if not new:
        return SkipReason(f"no new rare event: the catalog holds all {len(events)} events of rare_events.csv that start by {as_of or 'today'}")
    return RunRequest(run_key="new-event-" + "-".join(new), tags={TRIGGER_TAG: "new_event", NEW_EVENTS_TAG: ",".join(new)})


@run_failure_sensor(
    monitored_jobs=[retraining_job, full_job],
    name="training_failure_sensor",
    default_status=SENSOR_STATUS,
    description="Record every failed training cycle, with its error, in training_runs. A failed cycle never reaches the gate, so the champion stays.",
)
def training_failure_sensor(context: RunFailureSensorContext, stockml: StockMLResource):
    run = context.dagster_run
    if run.status != DagsterRunStatus.FAILURE:
        return
    record_failed_cycle(stockml, run.run_id, run.tags.get(TRIGGER_TAG, "manual"), context.failure_event.message or "run failed")


def record_failed_cycle(stockml: StockMLResource, run_id: str, trigger: str, error: str) -> None:
    stockml.training_runs_log().append(
        {
            "run_id": run_id,
            "trigger": trigger,
            "samples": 0,
            "candidate_version": None,
            "accuracy": None,
            "balanced_accuracy": None,
            "promoted": False,
            "error": error,
        },
    )


SENSORS = [drift_sensor, rare_event_capture_sensor, new_rare_event_sensor, training_failure_sensor]
