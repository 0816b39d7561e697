"""Sensors: drift launches retraining; failed training cycles are recorded."""


from datetime import datetime, timezone

from dagster import (
    AssetKey, DagsterRunStatus, EventLogEntry, RunFailureSensorContext, RunRequest, SensorEvaluationContext,
    SkipReason, asset_sensor, run_failure_sensor,
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
    return RunRequest(run_key=f"drift-{asset_event.storage_id}",
                      tags={"stockml/trigger": "drift", "stockml/drift_score": f"{score:.4f}"})


@run_failure_sensor(monitored_jobs=[retraining_job, full_job], name="training_failure_sensor",
                    description="Record every failed training cycle, with its error, in training_runs.")
def training_failure_sensor(context: RunFailureSensorContext, stockml: StockMLResource):
    run = context.dagster_run
    if run.status != DagsterRunStatus.FAILURE:
        return
    record_training_run(stockml, {
        "run_id": run.run_id, "recorded_at": datetime.now(timezone.utc).replace(tzinfo=None),
        "trigger": run.tags.get("stockml/trigger", "manual"), "samples": 0, "candidate_version": None,
        "accuracy": None, "balanced_accuracy": None, "promoted": False,
        "error": context.failure_event.message or "run failed"})


SENSORS = [drift_sensor, training_failure_sensor]
