"""Freshness judged on the data's calendar: has every trading day the feed delivered been processed?

A wall-clock freshness policy says "fresh" for hours after a failed daily run (the last success was
recent) and "overdue" forever on a history whose feed ended years ago. What a user needs to know is
whether the platform has caught up with its feed: ``drift_report`` (the daily run's last measure)
holds the feed's last trading day. The check ``caught_up_with_the_feed`` on ``drift_report`` says
so; it fails when a delivered day is left unprocessed because the newest daily run failed, or for
longer than ``Settings.freshness_overdue_hours`` (the daemon is down, the schedule is off).

It is judged by ``feed_freshness_sensor`` every minute (recorded when the verdict changes), by the
CLI after each run it makes, and from the UI's "Execute" on the check; one function decides.
"""

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
from dagster import (
    AssetCheckEvaluation,
    AssetCheckExecutionContext,
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetKey,
    DagsterInstance,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    asset_check,
    sensor,
)

from stockml_assets.partitions import day_keys, last_trading_day
from stockml_assets.resources import StockMLResource
from stockml_core.market.data import DataFolderError, latest_price_date, prices_file
from stockml_core.settings import automation_from_env

CHECKED_ASSET = "drift_report"
CHECK_NAME = "caught_up_with_the_feed"
CHECK_KEY = AssetCheckKey(AssetKey(CHECKED_ASSET), CHECK_NAME)
DAILY_JOBS = ("daily_job", "stockml_full_job")  # the runs that bring delivered days in
ACTIVE = (DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.STARTED)


def last_processed_day(instance: DagsterInstance) -> str | None:
    """The newest trading day ``drift_report`` holds (not the day of its newest event: a backfill of past
    days runs later)."""
    return max(instance.get_materialized_partitions(AssetKey(CHECKED_ASSET)), default=None)


@dataclass(frozen=True)
class FeedFreshness:
    """The verdict: ``status`` is caught up, catching up, awaiting the daily run, daily run failed, overdue
    or feed unreadable."""

    passed: bool
    status: str
    description: str
    feed_last_day: str | None = None
    processed_last_day: str | None = None
    days_behind: int = 0
    run_id: str | None = None

    def key(self) -> str:
        """What identifies the verdict (a sensor records it again only when this changes)."""
        return json.dumps([self.passed, self.status, self.feed_last_day, self.processed_last_day, self.run_id])

    def metadata(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in ("passed", "description") and v is not None}


def judge_freshness(instance: DagsterInstance, data_dir: Path, overdue_hours: float, now: datetime | None = None) -> FeedFreshness:
    """Compare the feed's last trading day with the last one ``drift_report`` holds; when behind, say why."""
    now = now or datetime.now(UTC)
    processed = last_processed_day(instance)
    runs = [r for job in DAILY_JOBS for r in instance.get_run_records(RunsFilter(job_name=job), limit=1)]
    newest = max(runs, key=lambda r: r.create_timestamp, default=None)
    failed = newest is not None and newest.dagster_run.status in (DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)
    try:
        delivered = latest_price_date(data_dir)
    except (DataFolderError, OSError) as exc:
        run = newest.dagster_run if failed else None
        return FeedFreshness(
            False,
            "feed unreadable",
            f"the data folder cannot be read: {exc}" + (f"; the newest {run.job_name} run {run.run_id} failed" if run else ""),
            processed_last_day=processed,
            run_id=run.run_id if run else None,
        )
    if delivered is None:
        return FeedFreshness(True, "caught up", "the feed has delivered no prices yet", processed_last_day=processed)
    feed_last = last_trading_day(delivered) or f"{delivered:%Y-%m-%d}"
    if processed is not None and processed >= feed_last:
        run = newest.dagster_run if failed else None
        if run is not None and _last_day(run) is not None and _last_day(run) >= feed_last:
            # drift_report holds the day from an earlier run, but the feed's current version of it was refused
            return FeedFreshness(
                False,
                "daily run failed",
                f"the newest {run.job_name} run {run.run_id}, for "
                f"{_last_day(run)}, {_ended(run)}: {CHECKED_ASSET} holds {processed} from an "
                "earlier run, not the feed's current data; its page says why",
                feed_last,
                processed,
                run_id=run.run_id,
            )
        return FeedFreshness(
            True,
            "caught up",
            f"{CHECKED_ASSET} holds every trading day the feed delivered, up to {feed_last} (the data's last trading day)",
            feed_last,
            processed,
        )
    behind = len(day_keys(pd.Timestamp(processed) + pd.Timedelta(days=1), feed_last)) if processed else None
    lag = f"{behind} trading day(s) behind" if behind is not None else "no day processed yet"
    where = f"{CHECKED_ASSET} holds up to {processed or 'no day'}, the feed delivered up to {feed_last}: {lag}"
    base = {"feed_last_day": feed_last, "processed_last_day": processed, "days_behind": behind or 0}
    if newest is not None and newest.dagster_run.status in ACTIVE:
        return FeedFreshness(True, "catching up", f"{where}; run {newest.dagster_run.run_id} is processing", **base, run_id=newest.dagster_run.run_id)
    if failed:
        run = newest.dagster_run
        return FeedFreshness(
            False,
            "daily run failed",
            f"{where}; the newest {run.job_name} run {run.run_id} {_ended(run)}: its page says why; the next scheduled run retries",
            **base,
            run_id=run.run_id,
        )
    delivered_at = datetime.fromtimestamp(prices_file(data_dir).stat().st_mtime, UTC)  # read just above, so it exists
    waited = (now - delivered_at) / timedelta(hours=1)
    if waited > overdue_hours:
        return FeedFreshness(
            False,
            "overdue",
            f"{where}; the feed's file changed {waited:.1f} h ago and no daily run has processed it (is the daemon running, the daily schedule on?)",
            **base,
        )
    return FeedFreshness(
        True, "awaiting the daily run", f"{where}; delivered {waited:.1f} h ago, within the {overdue_hours:g} h the daily schedule has", **base
    )


def _last_day(run) -> str | None:
    """The last trading day a run was asked to process (its partition, or its range's end)."""
    return run.tags.get("dagster/asset_partition_range_end") or run.tags.get("dagster/partition")


def _ended(run) -> str:
    return "was canceled" if run.status == DagsterRunStatus.CANCELED else "failed"


def _result_kwargs(f: FeedFreshness) -> dict:
    return {
        "passed": f.passed,
        "severity": AssetCheckSeverity.ERROR,
        "description": f.description,
        "metadata": {**f.metadata(), "verdict": f.description},
    }


def record_freshness(instance: DagsterInstance, data_dir: Path, overdue_hours: float) -> FeedFreshness:
    """Judge and record the verdict as the check's evaluation (no run: the CLI and the sensor call it)."""
    f = judge_freshness(instance, data_dir, overdue_hours)
    instance.report_runless_asset_event(AssetCheckEvaluation(asset_key=AssetKey(CHECKED_ASSET), check_name=CHECK_NAME, **_result_kwargs(f)))
    return f


@asset_check(
    asset=AssetKey(CHECKED_ASSET),
    name=CHECK_NAME,
    description="Freshness on the data's calendar: drift_report holds the last trading day the feed "
    "delivered. Fails when the newest daily run failed and left a delivered day unprocessed, "
    "or when a delivered day waits longer than the daily schedule allows. Judged every "
    "minute by feed_freshness_sensor and after each CLI run.",
)
def caught_up_with_the_feed(context: AssetCheckExecutionContext, stockml: StockMLResource) -> AssetCheckResult:
    s = stockml.settings()
    return AssetCheckResult(**_result_kwargs(judge_freshness(context.instance, s.data_dir, s.freshness_overdue_hours)))


@sensor(
    name="feed_freshness_sensor",
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING if automation_from_env() else DefaultSensorStatus.STOPPED,
    description="Every minute: has drift_report caught up with the feed's last trading day? Records the "
    "caught_up_with_the_feed check when its verdict changes (a failed daily run fails it).",
)
def feed_freshness_sensor(context: SensorEvaluationContext, stockml: StockMLResource):
    s = stockml.settings()
    f = judge_freshness(context.instance, s.data_dir, s.freshness_overdue_hours)
    if f.key() != context.cursor:
        context.instance.report_runless_asset_event(
            AssetCheckEvaluation(asset_key=AssetKey(CHECKED_ASSET), check_name=CHECK_NAME, **_result_kwargs(f))
        )
    return SensorResult(skip_reason=SkipReason(f"{f.status}: {f.description}"), cursor=f.key())
