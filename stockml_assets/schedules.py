"""Schedules: the daily run after the US close (NYSE holidays skipped) and the weekly retrain."""

import pandas as pd
from dagster import DefaultScheduleStatus, RunRequest, RunsFilter, ScheduleEvaluationContext, SkipReason, schedule

from stockml_assets.freshness import ACTIVE, last_processed_day
from stockml_assets.jobs import daily_job, retraining_job
from stockml_assets.partitions import NEW_YORK, TRADING_DAYS, day_keys, range_tags
from stockml_assets.resources import StockMLResource
from stockml_assets.tags import TRIGGER_TAG
from stockml_core.market.calendar import is_trading_day
from stockml_core.market.data import DataFolderError, latest_price_date
from stockml_core.settings import automation_from_env, daily_cron_from_env

# Tests and demos run the daily schedule faster (e.g. every minute against a simulated feed).
DAILY_CRON = daily_cron_from_env()
# On from the start, like the sensors (STOCKML_AUTOMATION=off leaves them off).
SCHEDULE_STATUS = DefaultScheduleStatus.RUNNING if automation_from_env() else DefaultScheduleStatus.STOPPED


def next_daily_range(context: ScheduleEvaluationContext, data_dir) -> tuple[str, str] | str:
    """The trading days the daily run should process now: after the last processed day, up to the
    last day the feed has delivered (and not after the tick's own day). A string says why none."""
    tick = pd.Timestamp(context.scheduled_execution_time).tz_convert(NEW_YORK)
    holiday = "" if is_trading_day(tick) else f"{tick:%Y-%m-%d} is not an NYSE trading day; "
    from stockml_assets.execution import recover_dead_runs

    recover_dead_runs(context.instance, context.log.warning)  # a killed in-process run must not block the schedule
    active = context.instance.get_runs(RunsFilter(job_name=daily_job.name, statuses=list(ACTIVE)), limit=1)
    if active:
        return f"daily run {active[0].run_id} is still in progress"
    try:
        delivered = latest_price_date(data_dir)
    except DataFolderError as exc:
        return str(exc)
    if delivered is None:
        return "the feed has delivered no prices yet"
    # The newest day processed, not the day of the newest event: a backfill of past days runs later.
    done = last_processed_day(context.instance)
    until = min(delivered, pd.Timestamp(tick.date()))
    start = pd.Timestamp(done) + pd.Timedelta(days=1) if done else until
    keys = day_keys(start, until) if start <= until else []
    if not keys:
        return f"{holiday}no new trading day: last processed {done or 'none'}, feed delivered up to {delivered:%Y-%m-%d}"
    return keys[0], keys[-1]


@schedule(
    job=daily_job,
    cron_schedule=DAILY_CRON,
    execution_timezone=NEW_YORK,
    name="daily_after_close",
    default_status=SCHEDULE_STATUS,
    description="Weekdays 18:30 New York: ingest the new trading day(s) the feed has delivered, compute their "
    "features, predict with the champion, measure drift, watch for rare events. Days missed while "
    "the daemon was down are caught up in the same single run. NYSE holidays skipped.",
)
def daily_after_close(context: ScheduleEvaluationContext, stockml: StockMLResource):
    found = next_daily_range(context, stockml.settings().data_dir)
    if isinstance(found, str):
        return SkipReason(found)
    first, last = found
    # The partitions end where the data ended when this code loaded; the run worker loads afresh and
    # knows the new days. A partition key past the loaded end is refused here, a range is not.
    tags = {TRIGGER_TAG: "scheduled"}
    if first == last and last <= TRADING_DAYS.get_last_partition_key():
        return RunRequest(run_key=f"daily-{first}", partition_key=first, tags=tags)
    return RunRequest(run_key=f"daily-{first}-{last}", tags={**tags, **range_tags(first, last)})


@schedule(
    job=retraining_job,
    cron_schedule="0 6 * * 6",
    execution_timezone=NEW_YORK,
    name="weekly_full_retrain",
    default_status=SCHEDULE_STATUS,
    description="Saturday 06:00 New York: retrain on everything ingested so far; the same gate decides.",
)
def weekly_full_retrain(context: ScheduleEvaluationContext):
    return RunRequest(run_key=f"weekly-{context.scheduled_execution_time:%Y-%m-%d}", tags={TRIGGER_TAG: "scheduled"})


SCHEDULES = [daily_after_close, weekly_full_retrain]
__all__ = ["SCHEDULES", "TRADING_DAYS"]
