"""Faults a real operation meets: a run killed with SIGKILL must not wedge the runs after it (issue 15)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from dagster import DagsterInstance, DagsterRunStatus

from stockml_core.faults import FAILPOINT_ENV, POINTS
from tests.conftest import LENIENT_GATE, write_slice_folder

STOCKML = [sys.executable, "-m", "stockml_assets.cli"]


def _env(tmp_path) -> dict:
    return {
        **os.environ,
        "STOCKML_DATA_DIR": str(tmp_path / "data"),
        "STOCKML_HOME": str(tmp_path / "home"),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "STOCKML_FAST": "1",
        "STOCKML_AUTOMATION": "off",
        "PYTHONUNBUFFERED": "1",
    }


def _started_runs(dagster_home) -> list:
    with DagsterInstance.from_config(str(dagster_home)) as instance:
        return [r.run_id for r in instance.get_runs() if r.status == DagsterRunStatus.STARTED]


def _left_behind(home) -> dict:
    """What a killed run leaves on disk and in the registry: temporary files, versions, versions without a file."""
    from stockml_core.storage.registry import ModelRegistry
    from stockml_core.storage.warehouse import Warehouse

    tmp = sorted(p.name for p in home.rglob(".tmp-*"))
    wh = Warehouse(home / "warehouse.duckdb", read_only=True)
    versions = []
    if wh.exists() and wh.has_table("model_versions"):
        versions = ModelRegistry(wh, home / "models").versions().version.tolist()
    return {"tmp": tmp, "versions": versions, "without_file": [v for v in versions if not (home / "models" / f"{v}.joblib").exists()]}


def test_a_run_killed_at_each_of_five_points_is_completed_by_the_next_and_equals_an_uninterrupted_one(tmp_path):
    """kill -9 of a real `stockml run` at ingestion, inside the features transaction, in training, between the
    registry's commit and its rename, and between the gate's decision and the champion switch; each rerun is
    killed at the next point, recovering the run before it; the last rerun completes. Its champion has the
    uninterrupted run's content hash and metrics, nothing is left half-written, and `status` tells one story.
    (A kill of a history run once left its pool slot claimed and the next run hung forever, deaf to SIGTERM.)"""
    write_slice_folder(tmp_path / "data", tickers=["XOM", "KO", "JPM"], start="2014-06-01")
    gate = {"STOCKML_GATE": json.dumps(LENIENT_GATE)}  # three names cannot show skill: a champion to compare
    env = {**_env(tmp_path), **gate}
    reference_env = {**env, "STOCKML_HOME": str(tmp_path / "reference"), "DAGSTER_HOME": str(tmp_path / "reference_dh")}
    reference = subprocess.Popen(
        [*STOCKML, "run"], env=reference_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )  # the uninterrupted run, alongside
    table = []
    for point in POINTS:
        t0 = time.monotonic()
        killed = subprocess.run([*STOCKML, "run"], env={**env, FAILPOINT_ENV: point}, capture_output=True, text=True, timeout=300)
        assert killed.returncode == -signal.SIGKILL, (point, killed.stdout[-2000:], killed.stderr[-2000:])
        if table:  # the run killed before it was found dead and marked failed
            assert "recovered: stockml_full_job run" in killed.stderr, (point, killed.stderr[-2000:])
        left = _left_behind(tmp_path / "home")
        table.append(
            {
                "point": point,
                "killed_after_s": round(time.monotonic() - t0, 1),
                "runs_left_started": len(_started_runs(tmp_path / "dagster_home")),
                **left,
            }
        )
    assert table[3]["without_file"] == ["v0001"] and table[3]["tmp"]  # a version whose artefact was not renamed yet
    between = json.loads(
        subprocess.run([*STOCKML, "status", "--json"], env=env, capture_output=True, text=True, timeout=120).stdout
    )  # after the kill at the gate: decided, not applied
    assert between["champion"] is None and between["last_decision"]["promoted"]
    assert between["last_decision"]["switch_pending"] is True
    t0 = time.monotonic()
    rerun = subprocess.run([*STOCKML, "run"], env=env, capture_output=True, text=True, timeout=300)
    rerun_s = time.monotonic() - t0
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert "recovered: stockml_full_job run" in rerun.stderr
    ref_out, ref_err = reference.communicate(timeout=300)
    assert reference.returncode == 0, ref_out[-2000:] + ref_err[-2000:]

    status = json.loads(subprocess.run([*STOCKML, "status", "--json"], env=env, capture_output=True, text=True, timeout=120).stdout)
    champion, decision = status["champion"], status["last_decision"]
    from stockml_core.storage.registry import ModelRegistry
    from stockml_core.storage.warehouse import Warehouse

    registry = ModelRegistry(Warehouse(tmp_path / "home" / "warehouse.duckdb", read_only=True), tmp_path / "home" / "models")
    events = registry.history()
    # The run killed at the gate had decided to promote: the rerun applied that switch first. That version is the
    # uninterrupted run's champion, byte for byte, with the same out-of-sample metrics.
    completed = registry.get(events.version.iloc[0])
    assert "switch completed by the next run" in events.reason.iloc[0]
    uninterrupted = ModelRegistry(
        Warehouse(tmp_path / "reference" / "warehouse.duckdb", read_only=True), tmp_path / "reference" / "models"
    ).champion()
    assert completed.sha256 == uninterrupted.sha256
    assert json.dumps(completed.metrics, sort_keys=True) == json.dumps(uninterrupted.metrics, sort_keys=True)
    # Then it judged its own candidate: a second training cycle, since the killed run had also stored its
    # error-replay buffer (that asset runs beside production_model), so it trained with the replayed mistakes.
    # Promoted or refused, one story: the champion is the last promoted version, verified, nothing pending.
    assert champion["verified"] and not decision["switch_pending"]
    assert champion["version"] == events.version.iloc[-1]
    assert decision["promoted"] == (decision["candidate_version"] == champion["version"] == events.version.iloc[-1]), decision
    final = _left_behind(tmp_path / "home")
    assert final["tmp"] == [] and final["without_file"] == []  # nothing half-written is left
    with DagsterInstance.from_config(str(tmp_path / "dagster_home")) as instance:
        runs = instance.get_runs()
        assert sorted(r.status.value for r in runs) == ["FAILURE"] * 5 + ["SUCCESS"] * 2
        assert not instance.event_log_storage.get_concurrency_run_ids()  # no pool slot left claimed
    print("\n| kill -9 at | after (s) | runs left STARTED | temporary files | versions | version without its file |")
    for row in table:
        print(
            f"| {row['point']} | {row['killed_after_s']} | {row['runs_left_started']} | {len(row['tmp'])} | "
            f"{', '.join(row['versions']) or '-'} | {', '.join(row['without_file']) or '-'} |"
        )
    print(
        f"| rerun: completed | {rerun_s:.1f} | 0 | 0 | switch to {completed.version} (= the uninterrupted run's "
        f"sha256) completed; candidate {decision['candidate_version']} promoted: {decision['promoted']} | - |"
    )


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
