"""Faults a real operation meets: a run killed with SIGKILL must not wedge the runs after it (issue 15)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from dagster import DagsterInstance, DagsterRunStatus

from tests.conftest import write_slice_folder

STOCKML = [sys.executable, "-m", "stockml_assets.cli"]


def _env(tmp_path) -> dict:
    return {**os.environ, "STOCKML_DATA_DIR": str(tmp_path / "data"), "STOCKML_HOME": str(tmp_path / "home"),
            "DAGSTER_HOME": str(tmp_path / "dagster_home"), "STOCKML_FAST": "1", "STOCKML_AUTOMATION": "off",
            "PYTHONUNBUFFERED": "1"}


def test_a_run_killed_with_sigkill_is_recovered_by_the_next_run(tmp_path) -> None:
    """kill -9 of a history backfill while raw_prices holds the duckdb_writer pool slot left its run STARTED and
    the slot claimed: the next run hung forever, deaf to SIGTERM. Now the next run marks it failed, frees the
    slot, says so, and completes."""
    write_slice_folder(tmp_path / "data", tickers=["XOM", "KO", "JPM"], start="2013-01-01")
    env = _env(tmp_path)
    cmd = [*STOCKML, "backfill", "2013-01-02", "2017-11-10", "--job", "history", "--no-training"]
    victim = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    deadline = time.monotonic() + 240
    for line in victim.stdout:  # killed as soon as the universe is stored: raw_prices is running, holding the slot
        seen.append(line)
        if "market_universe" in line and "ok" in line:
            break
        assert time.monotonic() < deadline, "".join(seen[-20:])
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    with DagsterInstance.from_config(str(tmp_path / "dagster_home")) as instance:
        (left,) = instance.get_runs()
        assert left.status == DagsterRunStatus.STARTED  # what a SIGKILL leaves behind
    t0 = time.monotonic()
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    assert f"recovered: stockml_full_job run {left.run_id}" in rerun.stderr and time.monotonic() - t0 < 240
    with DagsterInstance.from_config(str(tmp_path / "dagster_home")) as instance:
        runs = {r.run_id: r for r in instance.get_runs()}
        assert runs[left.run_id].status == DagsterRunStatus.FAILURE and len(runs) == 2
        assert all(r.status == DagsterRunStatus.SUCCESS for i, r in runs.items() if i != left.run_id)
        assert not instance.event_log_storage.get_concurrency_run_ids()  # no slot left claimed
    status = subprocess.run([*STOCKML, "status", "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert status.returncode == 0


def test_sigterm_stops_a_run_within_seconds_and_leaves_no_run_started(tmp_path) -> None:
    write_slice_folder(tmp_path / "data", tickers=["XOM", "KO", "JPM"], start="2009-01-01")
    env = _env(tmp_path)
    cmd = [*STOCKML, "backfill", "2009-01-02", "2017-11-10", "--job", "history", "--no-training"]
    run = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in run.stdout:
        if "market_universe" in line and "ok" in line:
            break
    t0 = time.monotonic()
    run.send_signal(signal.SIGTERM)
    run.wait(timeout=60)
    assert time.monotonic() - t0 < 30 and run.returncode != 0
    with DagsterInstance.from_config(str(tmp_path / "dagster_home")) as instance:
        (stopped,) = instance.get_runs()
        assert stopped.status in (DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED), stopped.status
        assert not instance.event_log_storage.get_concurrency_run_ids()
