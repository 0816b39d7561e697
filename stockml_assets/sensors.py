"""Sensors: drift and new rare events launch retraining; failed training cycles are recorded."""


import json
from datetime import UTC, datetime

from dagster import (
    AssetKey,
    DagsterRunStatus,
    EventLogEntry,
    RunFailureSensorContext,
    RunRequest,
    SensorEvaluationContext,
    SkipReason,
    asset_sensor,
    run_failure_sensor,
    sensor,
)

from stockml_assets.assets.monitoring import record_training_run
from stockml_assets.jobs import full_job, retraining_job
from stockml_assets.resources import StockMLResource
from stockml_core.settings import DriftSettings

DRIFT_THRESHOLD = DriftSettings().score_threshold


@asset_sensor(asset_key=AssetKey("drift_report"), job=retraining_job, name="drift_sensor",
              description="Launch the retraining job when drift_report's score passes its threshold "
                          "(one run per drift materialization, deduplicated by run key).")
def drift_sensor(context: SensorEvaluationContext, asset_event: EventLogEntry):
    mat = asset_event.asset_materialization
    value = mat.metadata.get("drift_score") if mat else None
    if value is None:
        return SkipReason("drift_report materialization carries no drift_score")
    score = float(value.value)
    if score < DRIFT_THRESHOLD:
        return SkipReason(f"drift score {score:.3f} below threshold {DRIFT_THRESHOLD}")
    # One run per drift materialization: its run id and timestamp identify it.
    return RunRequest(run_key=f"drift-{asset_event.run_id or 'runless'}-{asset_event.timestamp:.6f}",
                      tags={"stockml/trigger": "drift", "stockml/drift_score": f"{score:.4f}"})


@sensor(job=retraining_job, name="new_rare_event_sensor", minimum_interval_seconds=60,
        description="Launch retraining when the rare-event catalog gains an event (captured, or added to the "
                    "data folder's rare_events.csv), so the archive grows into the next model.")
def new_rare_event_sensor(context: SensorEvaluationContext):
    event = context.instance.get_latest_materialization_event(AssetKey("rare_event_catalog"))
    mat = event.asset_materialization if event else None
    if mat is None or "event_names" not in mat.metadata:
        return SkipReason("rare_event_catalog not materialized yet")
    names = sorted(mat.metadata["event_names"].value)
    known = json.loads(context.cursor) if context.cursor else None
    context.update_cursor(json.dumps(names))
    new = sorted(set(names) - set(known or []))
    if known is None:
        return SkipReason(f"baseline of {len(names)} catalogued events recorded")
    if not new:
        return SkipReason("no new rare event")
    return RunRequest(run_key="new-event-" + "-".join(new), tags={"stockml/trigger": "new_event",
                                                                   "stockml/new_events": ",".join(new)})


@run_failure_sensor(monitored_jobs=[retraining_job, full_job], name="training_failure_sensor",
                    description="Record every failed training cycle, with its error, in training_runs.")
def training_failure_sensor(context: RunFailureSensorContext, stockml: StockMLResource):
    run = context.dagster_run
    if run.status != DagsterRunStatus.FAILURE:
        return
    record_training_run(stockml, {
        "run_id": run.run_id, "recorded_at": datetime.now(UTC).replace(tzinfo=None),
        "trigger": run.tags.get("stockml/trigger", "manual"), "samples": 0, "candidate_version": None,
        "accuracy": None, "balanced_accuracy": None, "promoted": False,
        "error": context.failure_event.message or "run failed"})


SENSORS = [drift_sensor, new_rare_event_sensor, training_failure_sensor]
