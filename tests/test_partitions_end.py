"""The trading-day partitions end at the data folder's last trading day, read when the code loads.

A code location is loaded in a fresh process, as the CLI, every run worker and the daemon's code
servers load it: each phase below runs in its own Python process against a real data folder.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd

from stockml_assets.partitions import FIRST_DAY, UP_TO_TODAY, partitions_end, trading_days
from stockml_core.settings import PROJECT_ROOT
from tests.conftest import write_slice_folder


def _load(data_dir: Path, script: str = "") -> dict:
    """Load the definitions in a fresh process with STOCKML_DATA_DIR=data_dir; run ``script`` there; its JSON."""
    code = (
        textwrap.dedent("""
        import json
        from stockml_assets.definitions import defs
        from stockml_assets.partitions import TRADING_DAYS
        out = {"last": TRADING_DAYS.get_last_partition_key(),
               "asset_last": defs.get_assets_def("drift_report").partitions_def.get_last_partition_key(),
               "job_last": defs.resolve_job_def("daily_job").partitions_def.get_last_partition_key()}
    """)
        + textwrap.dedent(script)
        + "\nprint(json.dumps(out))\n"
    )
    env = {**os.environ, "STOCKML_DATA_DIR": str(data_dir), "STOCKML_AUTOMATION": "off"}
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# In the process that loaded the definitions while the feed ended on 2006-01-25: the feed delivers
# Thursday 26th; the daily tick asks for it as a range (a partition key past the loaded end would be
# refused in the code server), and the new day is not yet one of this process's partitions.
STALE_TICK = """
import os
from datetime import datetime
from zoneinfo import ZoneInfo
import pandas as pd
from dagster import AssetMaterialization, DagsterInstance, build_schedule_context
prices = pd.read_csv(os.environ["STOCKML_DATA_DIR"] + "/prices.csv")
held = pd.read_csv(os.environ["STOCKML_DATA_DIR"] + "/held.csv")
pd.concat([prices, held]).to_csv(os.environ["STOCKML_DATA_DIR"] + "/prices.csv", index=False)
with DagsterInstance.local_temp() as instance:  # a schedule's context needs an instance on disk
    instance.report_runless_asset_event(AssetMaterialization(asset_key="drift_report", partition="2006-01-25"))
    with build_schedule_context(
        instance=instance, scheduled_execution_time=datetime(2006, 1, 26, 18, 30, tzinfo=ZoneInfo("America/New_York")),
        repository_def=defs.get_repository_def(), resources={"stockml": defs.resources["stockml"]}) as context:
        tick = defs.resolve_schedule_def("daily_after_close").evaluate_tick(context)
out["skip"] = tick.skip_message
out["requests"] = [{"partition_key": rr.partition_key, "tags": dict(rr.tags)} for rr in tick.run_requests or []]
out["last_after_delivery"] = TRADING_DAYS.get_last_partition_key()
"""


def test_partitions_end_at_the_delivered_day_and_the_schedule_asks_for_days_delivered_since(tmp_path) -> None:
    data = tmp_path / "data"
    prices = write_slice_folder(data, tickers=["XOM", "KO"], start="2005-06-01", end="2006-01-26")
    prices[prices.date <= "2006-01-25"].to_csv(data / "prices.csv", index=False)  # the feed so far
    prices[prices.date == "2006-01-26"].to_csv(data / "held.csv", index=False)  # its next delivery
    stale = _load(data, STALE_TICK)
    assert stale["last"] == stale["asset_last"] == stale["job_last"] == "2006-01-25", stale
    assert stale["last_after_delivery"] == "2006-01-25"  # fixed when the code loaded
    assert stale["skip"] is None and len(stale["requests"]) == 1, stale
    rr = stale["requests"][0]
    assert rr["partition_key"] is None, rr
    assert rr["tags"]["dagster/asset_partition_range_start"] == rr["tags"]["dagster/asset_partition_range_end"] == "2006-01-26"
    assert rr["tags"]["stockml/trigger"] == "scheduled"
    # A fresh load (the run worker, the daemon's next reload) ends at the delivered day.
    fresh = _load(data)
    assert fresh["last"] == fresh["asset_last"] == "2006-01-26", fresh


def test_partitions_run_to_today_when_the_data_folder_cannot_be_read(tmp_path) -> None:
    got = _load(tmp_path / "no-such-folder")
    today = pd.Timestamp.now(tz="America/New_York")
    assert got["last"] == UP_TO_TODAY.get_last_partition_key() and got["last"] <= f"{today:%Y-%m-%d}", got
    assert pd.Timestamp(got["last"]) >= today.tz_localize(None).normalize() - pd.Timedelta(days=5)


def test_partitions_end_on_the_last_trading_day_on_or_before_the_data_and_never_after_today() -> None:
    def last(day):
        return trading_days(partitions_end(day)).get_last_partition_key()

    assert last("2017-11-10") == "2017-11-10"  # a Friday: the window ends on Monday, Monday is no partition
    assert last("2017-11-12") == "2017-11-10"  # data dated on a Sunday (a bad row): the Friday before
    assert last("2017-11-23") == "2017-11-22"  # Thanksgiving: the Wednesday before
    assert last("2001-09-14") == "2001-09-10"  # the exchange was closed after 9/11
    assert last("2999-01-01") == UP_TO_TODAY.get_last_partition_key()  # a date in the future: today
    assert partitions_end(None) is None and partitions_end(pd.NaT) is None
    assert partitions_end(f"{pd.Timestamp(FIRST_DAY) - pd.Timedelta(days=30):%Y-%m-%d}") is None


def test_a_webserver_loaded_before_the_feed_delivered_catches_up_when_asked(tmp_path) -> None:
    """What a daily run's extend_partitions hook does under `make ui`, against a real webserver."""
    from stockml_assets.webserver import catch_up_served_partitions, served_partition_count
    from tests.test_ui import serving

    data = tmp_path / "data"
    prices = write_slice_folder(data, tickers=["XOM", "KO"], start="2005-06-01", end="2006-01-26")
    prices[prices.date <= "2006-01-25"].to_csv(data / "prices.csv", index=False)
    expected = trading_days(partitions_end("2006-01-26")).get_num_partitions()
    (tmp_path / "dagster_home").mkdir()
    with serving(
        tmp_path / "dagster_home", tmp_path / "home", tmp_path / "webserver.log", STOCKML_DATA_DIR=str(data), STOCKML_AUTOMATION="off"
    ) as server:
        assert served_partition_count(server.url, "drift_report") == expected - 1  # up to 2006-01-25
        prices.to_csv(data / "prices.csv", index=False)  # the feed delivers the 26th
        assert catch_up_served_partitions(server.url, expected) == expected - 1  # behind: it reloaded
        assert served_partition_count(server.url, "drift_report") == expected
        assert catch_up_served_partitions(server.url, expected) is None  # up to date: nothing to do
