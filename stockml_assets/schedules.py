"""Schedules: the daily run after the US close (NYSE holidays skipped) and the weekly full retrain."""


from dagster import RunRequest, ScheduleEvaluationContext, SkipReason, schedule

from stockml_assets.jobs import daily_job, full_job
from stockml_core.calendar import is_trading_day

NEW_YORK = "America/New_York"


@schedule(job=daily_job, cron_schedule="30 18 * * 1-5", execution_timezone=NEW_YORK, name="daily_after_close",
          description="Weekdays 18:30 New York: ingest the day, predict, measure drift. NYSE holidays skipped.")
def daily_after_close(context: ScheduleEvaluationContext):
    day = context.scheduled_execution_time
    if not is_trading_day(day):
        return SkipReason(f"{day:%Y-%m-%d} is an NYSE holiday")
    return RunRequest(run_key=f"daily-{day:%Y-%m-%d}", tags={"stockml/trigger": "scheduled"})


@schedule(job=full_job, cron_schedule="0 6 * * 6", execution_timezone=NEW_YORK, name="weekly_full_retrain",
          description="Saturday 06:00 New York: rebuild everything and retrain; the gate decides.")
def weekly_full_retrain(context: ScheduleEvaluationContext):
    return RunRequest(run_key=f"weekly-{context.scheduled_execution_time:%Y-%m-%d}",
                      tags={"stockml/trigger": "scheduled"})


SCHEDULES = [daily_after_close, weekly_full_retrain]
