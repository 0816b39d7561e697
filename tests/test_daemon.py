"""End to end with real processes: the platform runs itself, no call from the test.

A simulated feed (``stockml feed``) releases one trading day of a real slice every minute, with a
planted regime shift at ``SHIFT_DAY``; ``dagster-daemon`` and ``dagster-webserver`` serve the
project's definitions against a project-style DAGSTER_HOME (``init_home``'s dagster.yaml: fast
event log, run queue of one, concurrency pools). The daily schedule (every minute here) ingests
each delivered day; the drift sensor sees the shift and launches a retrain; the gate decides.

The test only prepares the folders, trains the initial champion in-process (as ``stockml run``
would), starts and stops the three processes, and reads: Dagster's run records and event log,
the webserver's /graphql, and (after every process has stopped) the warehouse.

Slow (about 6 minutes: a history run and one daily run in-process, then three trading days a
minute apart and the retrain). It needs the env hooks STOCKML_FAST and
STOCKML_GATE (stockml_assets/resources.py): the daemon builds its definitions from the environment.
Run it alone: ``pytest tests/test_daemon.py -s``.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC
from pathlib import Path

import pandas as pd
from dagster import AssetKey, AssetRecordsFilter, DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter

from stockml_assets.tags import TRIGGER_TAG
from stockml_assets.webserver import graphql
from stockml_core.settings import PROJECT_ROOT, DriftSettings
from tests.conftest import LENIENT_GATE, write_slice_folder
from tests.test_replay import plant_shift

SHIFT_DAY = "2006-01-23"  # returns x4 and VIX x2.2 from this Monday on (tests/test_replay.py)
# The drift score ramps up as shifted days fill the 5-day current window (measured on the 3-ticker
# slice: about 0.02 on the quiet days, then 0.15, 0.28, 0.44, 0.59, 0.78, 0.80 on D..D+5); with
# DriftSettings' threshold 0.46 and persistence 3, the retrain follows the run for D+5 (2006-01-30).
# The days up to D+2 are the feed's initial state, processed in-process before the processes start
# (the history run and one daily run over D-3..D+2, which also shows the quiet days stay below the
# threshold); the feed then releases D+3, D+4 and D+5 one a minute, so the daemon's schedule runs
# three daily runs and the sensor's retrain follows the third.
DAEMON_TICKERS = ["XOM", "JPM", "KO"]
SETUP_FROM = "2006-01-18"  # D-3: the first day the in-process setup measures drift for
FEED_START = "2006-01-26"  # D+3: the first day the feed releases while the daemon runs
FEED_EVERY_S = 60  # one trading day a minute, like the schedule's cron below
FEED_PHASE_S = 40  # start the feed at :40 so its releases land just before the schedule's :00 ticks
DEADLINE_S = 9 * 60  # from the daemon's start
POLL_S = 5
BIN = Path(sys.executable).parent
TRIGGER = TRIGGER_TAG


def _check_instance_yaml(dagster_home: Path) -> None:
    """init_home's dagster.yaml loads in this Dagster (1.13 refuses run_queue limits next to concurrency.pools)."""
    from dagster._core.instance.config import dagster_instance_config

    config, _ = dagster_instance_config(str(dagster_home))
    assert config["concurrency"]["runs"]["max_concurrent_runs"] == 1, config
    assert config["event_log_storage"]["class"] == "LocalEventLogStorage", config


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a TCP socket in LISTEN state on ``port`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            addr, hexport = fields[1].split(":")
            if int(hexport, 16) != port or fields[3] != "0A":
                continue
            if v6:
                words = [addr[i : i + 8] for i in range(0, 32, 8)]
                raw = b"".join(bytes.fromhex(w)[::-1] for w in words)
                found.add(socket.inet_ntop(socket.AF_INET6, raw))
            else:
                found.add(socket.inet_ntoa(bytes.fromhex(addr)[::-1]))
    return found


def _tail(path: Path, n: int = 4000) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else "(no log)"


def _graphql(port: int, query: str) -> dict:
    return graphql(f"http://127.0.0.1:{port}", query)


def _webserver_up(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5) as resp:
            return resp.status == 200
    except OSError:
        return False


def _stop(procs: dict[str, subprocess.Popen]) -> None:
    """SIGTERM each process group (the daemon's code server and run workers are in it), then SIGKILL."""
    for proc in procs.values():
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for proc in procs.values():
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, 0)  # anyone left in the group?
            except ProcessLookupError:
                break
            proc.poll()
            time.sleep(0.5)
        else:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


def _failure(instance: DagsterInstance, run_id: str) -> str:
    msgs = [ev.dagster_event.message or "" for ev in instance.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE)]
    msgs += [ev.dagster_event.message or "" for ev in instance.all_logs(run_id, of_type=DagsterEventType.RUN_FAILURE)]
    return " | ".join(m[:1500] for m in msgs) or "(no failure event)"


def _daily_scores(instance: DagsterInstance) -> dict[str, float]:
    res = instance.fetch_materializations(AssetRecordsFilter(AssetKey("drift_report")), limit=1000, ascending=True)
    out = {}
    for rec in res.records:
        meta = rec.asset_materialization.metadata if rec.asset_materialization else {}
        if "daily_scores" in meta:
            out.update(meta["daily_scores"].value)
    return dict(sorted(out.items()))


def _promotion_decision(instance: DagsterInstance, run_id: str):
    res = instance.fetch_materializations(AssetRecordsFilter(AssetKey("promotion_decision")), limit=20)
    return next((rec.asset_materialization for rec in res.records if rec.run_id == run_id), None)


def _epoch(dt) -> float:
    """A run record's datetime (naive means UTC in Dagster's run storage) as epoch seconds."""
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def _hms(ts: float | None, t0: float) -> str:
    return "-" if ts is None else f"+{ts - t0:5.0f}s"


def daemon_scenario(tmp_path: Path) -> None:
    """The whole end-to-end scenario; raises AssertionError when the platform did not run itself.

    It runs in its own process, started when the session starts (tests/conftest.py), so its minutes
    of waiting for schedule ticks overlap the rest of the suite; the test below waits for it.
    """
    t_test = time.time()
    source, data, home, dagster_home = (tmp_path / n for n in ("source", "data", "home", "dagster_home"))
    logs = tmp_path / "logs"
    logs.mkdir()
    # Three tickers: light on the two cores the rest of the suite runs on meanwhile.
    write_slice_folder(source, tickers=DAEMON_TICKERS, start="2001-06-01", end="2006-03-31")
    plant_shift(source, SHIFT_DAY)
    env = {
        "DAGSTER_HOME": str(dagster_home),
        "STOCKML_DATA_DIR": str(data),
        "STOCKML_HOME": str(home),
        "STOCKML_DAILY_CRON": "* * * * *",
        "STOCKML_FAST": "1",
        "STOCKML_GATE": json.dumps(LENIENT_GATE),
    }
    os.environ.update(env)
    os.environ.pop("STOCKML_AUTOMATION", None)

    from stockml_assets.cli import init_home
    from stockml_assets.definitions import build_definitions
    from stockml_assets.feed import prepare
    from stockml_assets.resources import StockMLResource
    from stockml_assets.runs import data_span, failure_messages, run_daily, run_history

    assert init_home() == dagster_home.resolve()
    assert "LocalEventLogStorage" in (dagster_home / "dagster.yaml").read_text()
    _check_instance_yaml(dagster_home)

    # The feed's initial state (what `stockml feed` writes first), and the history on it in-process:
    # ingestion, features, archive and the initial champion through the (lenient) gate.
    prepare(source, data, FEED_START)
    defs = build_definitions()  # from the environment, like the daemon's
    settings = defs.resources["stockml"].settings()
    assert settings.training.xgb_rounds == 30 and settings.gate.min_sector_accuracy == 0.0  # STOCKML_FAST / STOCKML_GATE
    first, last = data_span(settings)
    assert last < pd.Timestamp(FEED_START) and f"{last:%Y-%m-%d}" == "2006-01-25"
    t0 = time.perf_counter()
    with DagsterInstance.get() as instance:
        res = run_history(defs, instance, first, last)
        assert res.success, failure_messages(res)
        res = run_daily(defs, instance, SETUP_FROM, last=last, tags={TRIGGER: "manual"})
        assert res.success, failure_messages(res)
    history_s = time.perf_counter() - t0
    champion = StockMLResource(data_dir=str(data), home=str(home)).registry().champion()
    assert champion is not None, "the history run trained no champion"

    port = _free_port()
    # The daily runs ask this webserver to reload when it serves partitions ending before the feed's day.
    penv = {**os.environ, "PYTHONUNBUFFERED": "1", "STOCKML_WEBSERVER_URL": f"http://127.0.0.1:{port}"}
    commands = {
        "feed": [
            sys.executable,
            "-m",
            "stockml_assets.cli",
            "feed",
            "--source",
            str(source),
            "--target",
            str(data),
            "--start",
            FEED_START,
            "--every",
            str(FEED_EVERY_S),
        ],
        "daemon": [str(BIN / "dagster-daemon"), "run", "-m", "stockml_assets.definitions"],
        "webserver": [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-m", "stockml_assets.definitions"],
    }
    procs: dict[str, subprocess.Popen] = {}
    timeline: list[str] = []
    started = time.time()
    try:
        # The daemon and the webserver first (the first tick processes the feed's initial state), then
        # the feed at FEED_PHASE_S past a minute: no release waits most of a minute for its tick.
        for name in ("daemon", "webserver", "feed"):
            if name == "feed":
                time.sleep((FEED_PHASE_S - time.time()) % 60)
            with open(logs / f"{name}.log", "w") as out:
                procs[name] = subprocess.Popen(
                    commands[name], cwd=PROJECT_ROOT, env=penv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
                )

        def diagnostics() -> str:
            return "\n".join(f"--- {n}.log ---\n{_tail(logs / f'{n}.log')}" for n in commands)

        done = None
        web_up_at = None
        with DagsterInstance.get() as instance:
            while time.time() - started < DEADLINE_S:
                time.sleep(POLL_S)
                for name, proc in procs.items():
                    if name != "feed" and proc.poll() is not None:  # the feed may finish; the servers may not
                        raise AssertionError(f"{name} exited with {proc.returncode}\n{diagnostics()}")
                if web_up_at is None and _webserver_up(port):
                    web_up_at = time.time()
                records = instance.get_run_records(RunsFilter(job_name="daily_job"), ascending=True) + instance.get_run_records(
                    RunsFilter(job_name="retraining_job"), ascending=True
                )
                for rec in records:
                    if rec.dagster_run.status == DagsterRunStatus.FAILURE:
                        run = rec.dagster_run
                        raise AssertionError(
                            f"{run.job_name} run {run.run_id} ({run.tags}) failed: {_failure(instance, run.run_id)}\n{diagnostics()}"
                        )
                daily = [
                    r
                    for r in records
                    if r.dagster_run.job_name == "daily_job"
                    and r.dagster_run.tags.get(TRIGGER) == "scheduled"
                    and r.dagster_run.status == DagsterRunStatus.SUCCESS
                ]
                drift = [r for r in records if r.dagster_run.job_name == "retraining_job" and r.dagster_run.tags.get(TRIGGER) == "drift"]
                if len(daily) >= 2 and drift and drift[0].dagster_run.status == DagsterRunStatus.SUCCESS:
                    decision = _promotion_decision(instance, drift[0].dagster_run.run_id)
                    if decision is not None:
                        done = (daily, drift[0], decision, records)
                        break
            elapsed = time.time() - started
            scores = _daily_scores(instance)
            all_runs = instance.get_run_records(RunsFilter(), ascending=True)
            for rec in all_runs:
                run = rec.dagster_run
                what = run.tags.get("dagster/partition") or "..".join(
                    filter(None, [run.tags.get("dagster/asset_partition_range_start"), run.tags.get("dagster/asset_partition_range_end")])
                )
                timeline.append(
                    f"{run.job_name:17s} {what:23s} trigger={run.tags.get(TRIGGER, '-'):9s} "
                    f"{run.status.value:8s} created {_hms(_epoch(rec.create_timestamp), started)} "
                    f"start {_hms(rec.start_time, started)} end {_hms(rec.end_time, started)}"
                    + (f" score={run.tags['stockml/drift_score']}" if "stockml/drift_score" in run.tags else "")
                )
        assert done is not None, (
            f"within {DEADLINE_S} s: not two scheduled daily runs then a successful drift retrain "
            f"with a promotion decision\nruns:\n" + "\n".join(timeline) + f"\ndrift scores: {scores}\n{diagnostics()}"
        )
        daily, retrain, decision, _ = done
        run = retrain.dagster_run
        # The retrain came from the sensor after the daily runs measured the shift, with its score.
        threshold = DriftSettings().score_threshold
        assert float(run.tags["stockml/drift_score"]) >= threshold, run.tags
        assert run.tags["stockml/day"] >= SHIFT_DAY, run.tags
        assert _epoch(retrain.create_timestamp) >= daily[1].end_time, "the retrain came before two daily runs"
        quiet = [d for d in scores if d < SHIFT_DAY]
        assert len(quiet) == 3 and all(scores[d] < threshold for d in quiet), scores  # quiet before the shift
        # The webserver serves the same instance (graphql) and listens on loopback only.
        assert web_up_at is not None, diagnostics()
        gql = _graphql(
            port, '{ runsOrError(filter: {pipelineName: "retraining_job"}) { ... on Runs { results { runId status tags { key value } } } } }'
        )
        seen = {r["runId"]: r for r in gql["data"]["runsOrError"]["results"]}
        assert seen[run.run_id]["status"] == "SUCCESS"
        # Its partitions end at a day the feed delivered while it ran (it loaded when the feed ended on
        # 2006-01-25): the daily runs had it reload, so the UI counts no undelivered day as missing.
        served = _graphql(
            port, '{ assetNodeOrError(assetKey: {path: ["drift_report"]}) { ... on AssetNode { partitionKeysByDimension { partitionKeys } } } }'
        )
        served_keys = served["data"]["assetNodeOrError"]["partitionKeysByDimension"][0]["partitionKeys"]
        assert max(scores) in served_keys and served_keys[-1] >= max(scores) > "2006-01-25", (served_keys[-3:], max(scores))
        assert _listening_addresses(port) == {"127.0.0.1"}, _listening_addresses(port)
    finally:
        _stop(procs)
        stopped = time.time()
    for name, proc in procs.items():
        try:
            os.killpg(proc.pid, 0)
            raise AssertionError(f"{name}'s process group {proc.pid} survived the stop")
        except ProcessLookupError:
            pass

    # After every process stopped, the warehouse: a promoted candidate is in model_promotion_history
    # with that run's id and the drift trigger (a rejected one leaves no row, by design).
    verdict = decision.metadata["verdict"].value
    history = StockMLResource(data_dir=str(data), home=str(home)).registry().history()
    ours = [json.loads(d) if isinstance(d, str) else d for d in history.decision]
    rows = history[[isinstance(d, dict) and d.get("dagster_run_id") == run.run_id for d in ours]]
    if verdict == "PROMOTE":
        assert len(rows) == 1 and rows.trigger.iloc[0] == "drift", history
    else:
        assert rows.empty
    summary = [
        f"history and setup daily run (in-process, {first:%Y-%m-%d}..{last:%Y-%m-%d}): {history_s:.0f} s",
        f"processes up {stopped - started:.0f} s; condition met after {elapsed:.0f} s; "
        f"webserver answered after {web_up_at - started:.0f} s; test wall time {time.time() - t_test:.0f} s",
        f"retrain {run.run_id[:8]} (score {run.tags['stockml/drift_score']}, day {run.tags['stockml/day']}): "
        f"{verdict}, candidate {decision.metadata['candidate_version'].value}",
        f"drift scores: { {d: round(float(s), 3) for d, s in scores.items()} }",
        "runs (times from the processes' start):",
        *timeline,
    ]
    (tmp_path / "summary.txt").write_text("\n".join(summary) + "\n")
    print("\n" + "\n".join(summary))


DAEMON_TEST = "test_daemon_schedule_and_drift_sensor_run_the_platform"
SCENARIO_TIMEOUT_S = 12 * 60


def start_scenario(base: Path) -> subprocess.Popen:
    """Start ``daemon_scenario`` in a background process (its own process group); output in base/scenario.log."""
    base.mkdir(parents=True, exist_ok=True)
    log = open(base / "scenario.log", "w")  # noqa: SIM115 (closed with the process)
    # A shell records the exit status from outside (whatever ends the scenario, a kill included), written whole
    # (a temporary file renamed), for a test in another process than this one (an xdist worker).
    script = '"$0" -m tests.test_daemon "$1"; code=$?; echo $code > "$1/exit_code.tmp"; mv "$1/exit_code.tmp" "$1/exit_code"; exit $code'
    return subprocess.Popen(
        ["sh", "-c", script, sys.executable, str(base)], cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def _wait_for_exit_file(base: Path, timeout_s: float) -> str:
    """The scenario's exit status (``exit_code``, written by ``start_scenario``'s shell), for a scenario another
    process started (the xdist controller); 'timeout' if it has not finished in time."""
    started = time.monotonic()
    while time.monotonic() < started + timeout_s:
        if (base / "exit_code").exists():
            return (base / "exit_code").read_text().strip()
        time.sleep(2)
    return "timeout"


def test_daemon_schedule_and_drift_sensor_run_the_platform(request, tmp_path) -> None:
    """Waits for the scenario started with the session (or starts it now when run alone)."""
    from tests.conftest import DAEMON_SCENARIO_ENV

    proc, base = getattr(request.config, "stockml_daemon_scenario", (None, None))
    if hasattr(request.config, "workerinput") and os.environ.get(DAEMON_SCENARIO_ENV):  # an xdist worker: the controller started it
        base = Path(os.environ[DAEMON_SCENARIO_ENV])
        code = _wait_for_exit_file(base, SCENARIO_TIMEOUT_S)
    else:
        if proc is None:
            base = tmp_path / "scenario"
            proc = start_scenario(base)
        try:
            code = proc.wait(timeout=SCENARIO_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            stop_scenario(proc)
            code = "timeout"
    summary = base / "summary.txt"
    print(summary.read_text() if summary.exists() else "")
    assert str(code) == "0", f"daemon scenario failed ({code}):\n{_tail(base / 'scenario.log', 6000)}"


def test_feed_releases_one_trading_day_at_a_time(tmp_path) -> None:
    """`stockml feed` (fast, without processes): rows before --start at once, then one day per release."""
    from stockml_assets.feed import run_feed

    source, target = tmp_path / "source", tmp_path / "target"
    prices = write_slice_folder(source, tickers=["XOM", "KO"], start="2006-01-03", end="2006-01-31")
    (target).mkdir()
    (target / "prices.csv.gz").write_text("stale")  # a left-over the feed must not leave as a second truth
    seen: list[str] = []

    def sleep(_seconds: float) -> None:  # each release happens after a sleep: look at the state before it
        seen.append(pd.read_csv(target / "prices.csv").date.max())

    released = run_feed(source, target, "2006-01-25", 60, sleep=sleep, say=lambda _: None)
    days = sorted(prices.date.unique())
    assert released == len([d for d in days if d >= "2006-01-25"]) == 5
    assert seen == [d for d in days if d < "2006-01-31"][-5:]  # 01-24 (initial state), then one more each time
    out = pd.read_csv(target / "prices.csv").sort_values(["ticker", "date"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(out, prices.sort_values(["ticker", "date"]).reset_index(drop=True))
    assert sorted(p.name for p in target.iterdir()) == ["market.csv.gz", "prices.csv", "rare_events.csv", "sectors.csv"]


def stop_scenario(proc: subprocess.Popen) -> None:
    """SIGTERM lets the scenario stop its daemon, webserver and feed (its finally block); then SIGKILL."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks that stop the processes
    daemon_scenario(Path(sys.argv[1]))
