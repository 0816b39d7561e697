"""NYSE trading-day partitions for the assets that grow by day, and the windows they read.

One partition per NYSE trading day (weekends, exchange holidays and special closures excluded),
keyed ``YYYY-MM-DD`` in New York time, from ``FIRST_DAY`` to the last trading day the data folder
holds: the UI's "missing" then means a delivered day not yet processed, not a day the feed has not
delivered (the embedded data ends on 2017-11-10; partitions to today read "75% filled"). The end is
read when the code loads (every CLI command and run worker loads afresh; the standalone daemon
reloads its code servers every minute, and ``make ui``'s daily run asks the webserver to reload),
from the data folder's date column; when that folder cannot be read the partitions run to today, so
the UI still loads and the run shows the error. Runs over a range of days are single runs (the work
is vectorized); a downstream day reads a trailing window of upstream days, declared with a
``TimeWindowPartitionMapping`` so the lineage shows it.
"""

from datetime import datetime

import pandas as pd
from dagster import (
    AssetExecutionContext,
    BackfillPolicy,
    PartitionKeyRange,
    TimeWindowPartitionMapping,
    TimeWindowPartitionsDefinition,
)

from stockml_core.features import MAX_LOOKBACK
from stockml_core.market.calendar import nyse_holidays
from stockml_core.market.data import DataFolderError, latest_price_date
from stockml_core.settings import data_dir_from_env, first_day_from_env, loaded_drift

NEW_YORK = "America/New_York"
FIRST_DAY = first_day_from_env()
# Holidays up to next year: every event that carries the definition serializes the list, so it
# stays as short as it can.
_HOLIDAYS = [
    datetime(d.year, d.month, d.day) for y in range(int(FIRST_DAY[:4]), datetime.now().year + 2) for d in sorted(nyse_holidays(y)) if d.weekday() < 5
]
_CALENDAR = {"start": FIRST_DAY, "cron_schedule": "0 0 * * 1-5", "fmt": "%Y-%m-%d", "timezone": NEW_YORK, "exclusions": _HOLIDAYS}
# Every trading day up to today (today's partition exists from midnight, for the run after the close).
UP_TO_TODAY = TimeWindowPartitionsDefinition(**_CALENDAR, end_offset=1)


def day_keys(start, end) -> list[str]:
    """The partition keys (trading days) in [start, end] (either may be a non-trading day)."""
    a, b = pd.Timestamp(start).strftime("%Y-%m-%d"), pd.Timestamp(end).strftime("%Y-%m-%d")
    if b < a:
        return []
    # Every trading day up to today (the schedule asks for days the feed delivered after this code
    # loaded). Dagster snaps a key that is not a partition to the next one: keep only days inside [a, b].
    return [k for k in UP_TO_TODAY.get_partition_keys_in_range(PartitionKeyRange(a, b)) if a <= k <= b]


def last_trading_day(day) -> str | None:
    """The last NYSE trading day (a partition key) on or before ``day`` and not after today; None when there is
    none (no day, or one before FIRST_DAY)."""
    if day is None or pd.isna(day):
        return None
    b = min(pd.Timestamp(day).strftime("%Y-%m-%d"), UP_TO_TODAY.get_last_partition_key() or "")
    if b < FIRST_DAY:
        return None
    keys = day_keys(max(f"{pd.Timestamp(b) - pd.Timedelta(days=14):%Y-%m-%d}", FIRST_DAY), b)
    return keys[-1] if keys else None


def partitions_end(last_day) -> datetime | None:
    """Where the partitions end for data whose last date is ``last_day``: the end of the window of
    its ``last_trading_day``; None (up to today) when there is none."""
    key = last_trading_day(last_day)
    return UP_TO_TODAY.time_window_for_partition_key(key).end if key else None


def _delivered_end() -> datetime | None:
    try:
        return partitions_end(latest_price_date(data_dir_from_env()))
    except (DataFolderError, OSError):
        return None  # the runs that read the folder report what is wrong with it


def trading_days(end: datetime | None) -> TimeWindowPartitionsDefinition:
    """The trading-day partitions ending at ``end`` (a ``partitions_end``), or up to today when None."""
    return UP_TO_TODAY if end is None else TimeWindowPartitionsDefinition(**_CALENDAR, end=end, end_offset=1)


TRADING_DAYS = trading_days(_delivered_end())
SINGLE_RUN = BackfillPolicy.single_run()
PARTITIONED = {"partitions_def": TRADING_DAYS, "backfill_policy": SINGLE_RUN}
PARTITION_EXPR = {"partition_expr": "date"}  # the DuckDB column the IO manager slices partitions on

# Features of day t read each ticker's MAX_LOOKBACK rows before t; a margin covers suspended days.
FEATURE_LOOKBACK_DAYS = int(MAX_LOOKBACK * 1.25)
FEATURE_HISTORY = TimeWindowPartitionMapping(start_offset=-FEATURE_LOOKBACK_DAYS, allow_nonexistent_upstream_partitions=True)
_d = loaded_drift()  # the windows are fixed when the code loads, so from the environment only
DRIFT_LOOKBACK_DAYS = _d.reference_window + _d.current_window - 1
DRIFT_HISTORY = TimeWindowPartitionMapping(start_offset=-DRIFT_LOOKBACK_DAYS, allow_nonexistent_upstream_partitions=True)
SHORT_HISTORY = TimeWindowPartitionMapping(start_offset=-10, allow_nonexistent_upstream_partitions=True)


def run_days(context: AssetExecutionContext) -> tuple[pd.Timestamp, pd.Timestamp]:
    """First and last trading day of the partitions this run materializes (one day, or a range)."""
    keys = context.partition_key_range
    return pd.Timestamp(keys.start), pd.Timestamp(keys.end)


def range_tags(start, end) -> dict[str, str]:
    """Run tags that make one run materialize every partition in [start, end] (a single-run backfill)."""
    keys = day_keys(start, end)
    if not keys:
        raise ValueError(f"no NYSE trading day between {start} and {end}")
    return {"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]}
