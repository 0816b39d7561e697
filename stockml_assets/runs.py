"""Running the platform in-process: the Dagster instance, the history run and the daily run.

Every CLI command (``stockml run``, ``backfill``, ``daily``), the history simulation
(``stockml_assets.simulation``), the benchmarks and the tests run the real definitions through these.
"""

from pathlib import Path

import pandas as pd
from dagster import DagsterInstance, Definitions

from stockml_assets.execution import execute
from stockml_assets.partitions import range_tags
from stockml_assets.tags import TRIGGER_TAG
from stockml_core.market import data as core_data
from stockml_core.settings import Settings

# In-process runs log warnings and errors to the console; every event still goes to the event log.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def local_instance(path: Path) -> DagsterInstance:
    """A Dagster instance in a folder, with StockML's fast SQLite event log (see instance_storage)."""
    from stockml_assets.instance_storage import event_log_config
    from stockml_core.settings import event_log_from_env

    path.mkdir(parents=True, exist_ok=True)
    overrides: dict = {"telemetry": {"enabled": False}}
    if event_log_from_env() == "stockml":
        overrides["event_log_storage"] = event_log_config(str(path / "history" / "runs"))
    return DagsterInstance.local_temp(str(path), overrides=overrides)


def data_span(s: Settings) -> tuple[pd.Timestamp, pd.Timestamp]:
    """First and last trading day of the data folder's prices (within the deployment's start/end)."""
    prices, _ = core_data.load_prices(s.data_dir, s.tickers, s.start, s.end)
    if prices.empty:
        raise core_data.DataFolderError(f"{s.data_dir}: no prices for the configured universe and dates")
    return pd.Timestamp(prices.date.min()), pd.Timestamp(prices.date.max())


def failure_messages(result) -> list[str]:
    """One line per failed step: the step and its root error (a step error's cause is the user's error)."""
    out = []
    for ev in result.all_events:
        if ev.is_step_failure:
            err = ev.event_specific_data.error
            while err.cause is not None and "DagsterExecutionStepExecutionError" in err.cls_name:
                err = err.cause
            message = err.message.strip()
            if err.cls_name == "Failure":  # a Failure the asset raised: its description is the message
                message = message.split("Failure: ", 1)[-1]
            out.append(f"{ev.step_key}: {message[:2000]}")
        elif ev.event_type_value == "ASSET_CHECK_EVALUATION":  # a failed blocking check stops the run without a step failure
            data = ev.event_specific_data
            if not data.passed and getattr(data.severity, "value", "ERROR") == "ERROR":
                why = (data.metadata or {}).get("summary")
                out.append(
                    f"{data.asset_key.to_user_string()}: check {data.asset_check_key.name} failed"
                    + (f": {str(why.value)[:2000]}" if why is not None else "")
                    + "; nothing downstream ran, the stored data and the champion are unchanged"
                )
    return out


def run_history(
    defs: Definitions, instance: DagsterInstance, first, last, tags: dict | None = None, train: bool = True, run_config: dict | None = None
):
    """One run over every trading day in [first, last]: ingestion, features, labels, archive and (if
    ``train``) training through the gate. A single-run backfill: the work is vectorized."""
    job = defs.resolve_job_def("stockml_full_job")
    selection = None
    if not train:
        from stockml_assets.jobs import RETRAINING

        keep = job.asset_layer.executable_asset_keys - RETRAINING.resolve(defs.resolve_asset_graph()) | {
            k for k in job.asset_layer.executable_asset_keys if k.path[-1] in ("labels", "rare_event_catalog")
        }
        selection = sorted(keep)
    return execute(
        job, instance, asset_selection=selection, tags={TRIGGER_TAG: "manual", **(tags or {}), **range_tags(first, last)}, run_config=run_config
    )


def run_daily(defs: Definitions, instance: DagsterInstance, day, tags: dict | None = None, last=None, run_config: dict | None = None):
    """The daily job for one trading day's partition (or, with ``last``, every day in [day, last] in one run)."""
    job = defs.resolve_job_def("daily_job")
    tags = {TRIGGER_TAG: "scheduled", **(tags or {})}
    if last is not None:
        return execute(job, instance, tags={**tags, **range_tags(day, last)}, run_config=run_config)
    return execute(job, instance, partition_key=pd.Timestamp(day).strftime("%Y-%m-%d"), tags=tags, run_config=run_config)
