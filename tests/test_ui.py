"""The real Dagster webserver serves the project: every designed asset in its group with its blocking gate
(an asset check, or for the trading-day partitioned assets their partitions and single-run backfill),
the jobs, the sensors and the schedules, all read back through the UI's own ``/graphql`` endpoint.

One webserver (started from ``workspace.yaml`` on 127.0.0.1, a free port, throwaway DAGSTER_HOME and
STOCKML_HOME) serves every test in this module; it is stopped by its process group id, also on failure.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.conftest import DESIGN_GROUPS, PARTITIONED_ASSETS

PROJECT_ROOT = Path(__file__).resolve().parents[1]
WORKSPACE = PROJECT_ROOT / "workspace.yaml"
LOCATION_NAME = "stockml"  # workspace.yaml's location_name
HOST = "127.0.0.1"
STARTUP_TIMEOUT_S = 180.0  # the machine is slow and shared: importing the code location takes a while
STOP_TIMEOUT_S = 20.0

EXPECTED_ASSETS = {asset: group for group, assets in DESIGN_GROUPS.items() for asset in assets}

ASSETS_QUERY = """
{
  assetNodes {
    assetKey { path }
    groupName
    isPartitioned
    partitionDefinition { type description fmt }
    backfillPolicy { policyType maxPartitionsPerRun }
    metadataEntries { label }
    assetChecksOrError {
      __typename
      ... on AssetChecks { checks { name blocking } }
    }
  }
}
"""

REPOSITORIES_QUERY = """
{
  repositoriesOrError {
    __typename
    ... on RepositoryConnection {
      nodes {
        name
        location { name }
        jobs { name }
        sensors { name sensorType }
        schedules { name cronSchedule executionTimezone }
      }
    }
    ... on PythonError { message }
  }
}
"""

LOCATION_STATUS_QUERY = """
{
  locationStatusesOrError {
    __typename
    ... on WorkspaceLocationStatusEntries { entries { name loadStatus } }
    ... on PythonError { message }
  }
}
"""

LOCATION_ERROR_QUERY = """
{
  workspaceOrError {
    ... on Workspace {
      locationEntries {
        name
        locationOrLoadError { __typename ... on PythonError { message } }
      }
    }
  }
}
"""


@dataclass(frozen=True)
class Webserver:
    pid: int
    port: int
    url: str
    log_path: Path
    dagster_home: Path
    stockml_home: Path

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        """POST one query; fail on transport errors or GraphQL errors, return ``data``."""
        response = requests.post(f"{self.url}/graphql", json={"query": query, "variables": variables or {}}, timeout=60)
        response.raise_for_status()
        body = response.json()
        assert not body.get("errors"), f"GraphQL errors: {body['errors']}"
        return body["data"]

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "<no webserver log>"


def _free_port() -> int:
    """A port free on 127.0.0.1 right now (the server binds it moments later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _stop_process_group(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group (webserver + code server), then SIGKILL whatever is left."""
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        pgid = None
    if pgid is not None:
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pass
    if pgid is not None:
        # The leader may be gone while a child (the code server) lingers: kill the whole group.
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=STOP_TIMEOUT_S)


def _location_loaded(server: Webserver) -> bool:
    """True once the code location has finished loading (successfully or not)."""
    entries = server.graphql(LOCATION_STATUS_QUERY)["locationStatusesOrError"].get("entries") or []
    return any(e["name"] == LOCATION_NAME and e["loadStatus"] == "LOADED" for e in entries)


def _wait_until_ready(proc: subprocess.Popen, server: Webserver) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"dagster-webserver exited with {proc.returncode} before answering:\n{server.log_tail()}")
        try:
            info = requests.get(f"{server.url}/server_info", timeout=5)
            if info.status_code == 200 and _location_loaded(server):
                return
        except (requests.RequestException, AssertionError, ValueError) as exc:
            last_error = exc
        time.sleep(1.0)
    pytest.fail(f"dagster-webserver not ready after {STARTUP_TIMEOUT_S:.0f} s ({last_error!r}):\n{server.log_tail()}")


@contextlib.contextmanager
def serving(dagster_home: Path, stockml_home: Path, log_path: Path, **env_vars: str):
    """A ``dagster-webserver`` on 127.0.0.1 serving ``workspace.yaml`` against ``dagster_home`` (plus ``env_vars``),
    ready (its code location loaded); stopped with its process group on exit."""
    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "STOCKML_HOME": str(stockml_home), **env_vars}
    cmd = [sys.executable, "-m", "dagster_webserver", "-h", HOST, "-p", str(port), "-w", str(WORKSPACE)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    server = Webserver(pid=proc.pid, port=port, url=f"http://{HOST}:{port}", log_path=log_path, dagster_home=dagster_home, stockml_home=stockml_home)
    try:
        _wait_until_ready(proc, server)
        yield server
    finally:
        _stop_process_group(proc)


@pytest.fixture(scope="module")
def webserver(tmp_path_factory: pytest.TempPathFactory):
    dagster_home = tmp_path_factory.mktemp("dagster_home")
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with serving(dagster_home, tmp_path_factory.mktemp("stockml_home"), tmp_path_factory.mktemp("webserver_log") / "webserver.log") as server:
        yield server


@pytest.fixture(scope="module")
def asset_nodes(webserver: Webserver) -> dict[str, dict]:
    """``asset name -> asset node`` as the UI sees them."""
    nodes = webserver.graphql(ASSETS_QUERY)["assetNodes"]
    by_name = {"/".join(node["assetKey"]["path"]): node for node in nodes}
    assert len(by_name) == len(nodes), "duplicate asset keys in the UI"
    return by_name


@pytest.fixture(scope="module")
def repository(webserver: Webserver) -> dict:
    """The single repository of the ``stockml`` code location."""
    result = webserver.graphql(REPOSITORIES_QUERY)["repositoriesOrError"]
    assert result["__typename"] == "RepositoryConnection", result
    repos = [repo for repo in result["nodes"] if repo["location"]["name"] == LOCATION_NAME]
    assert len(repos) == 1, f"expected one repository in location {LOCATION_NAME!r}: {result['nodes']}"
    return repos[0]


def _listening_addresses(port: int) -> set[str]:
    """Hex local addresses of LISTEN sockets on ``port`` from /proc/net/tcp{,6} (Linux)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            address, port_hex = fields[1].rsplit(":", 1)
            if int(port_hex, 16) == port and fields[3] == "0A":  # 0A = TCP_LISTEN
                found.add(address)
    return found


def test_webserver_answers_on_loopback_only(webserver: Webserver):
    with socket.create_connection((HOST, webserver.port), timeout=5):
        pass
    info = requests.get(f"{webserver.url}/server_info", timeout=10)
    assert info.status_code == 200
    assert "dagster_webserver_version" in info.json()

    if not Path("/proc/net/tcp").exists():
        pytest.skip("no /proc/net/tcp: cannot list the listening addresses on this platform")
    addresses = _listening_addresses(webserver.port)
    assert addresses, f"nothing listens on port {webserver.port}"
    # 0100007F is 127.0.0.1 in /proc's little-endian hex; anything else (0.0.0.0, ::) would be exposed.
    assert addresses == {"0100007F"}, f"webserver listens beyond 127.0.0.1: {addresses}"


def test_code_location_loads_without_error(webserver: Webserver):
    entries = webserver.graphql(LOCATION_ERROR_QUERY)["workspaceOrError"]["locationEntries"]
    by_name = {entry["name"]: entry["locationOrLoadError"] for entry in entries}
    assert set(by_name) == {LOCATION_NAME}
    location = by_name[LOCATION_NAME]
    assert location["__typename"] == "RepositoryLocation", location.get("message")


def test_every_designed_asset_is_in_its_group(asset_nodes: dict[str, dict]):
    actual = {name: node["groupName"] for name, node in asset_nodes.items()}
    missing = sorted(set(EXPECTED_ASSETS) - set(actual))
    unexpected = sorted(set(actual) - set(EXPECTED_ASSETS))
    wrong_group = {name: (actual[name], group) for name, group in EXPECTED_ASSETS.items() if name in actual and actual[name] != group}
    assert not missing, f"designed assets missing from the UI: {missing}"
    assert not unexpected, f"assets not in the design: {unexpected}"
    assert not wrong_group, f"assets in the wrong group (actual, designed): {wrong_group}"


def test_every_unpartitioned_asset_has_a_blocking_check(asset_nodes: dict[str, dict]):
    assert asset_nodes, "the UI serves no assets"
    problems = {}
    for name, node in sorted(asset_nodes.items()):
        if name in PARTITIONED_ASSETS:
            continue  # validated inside the asset, per run (next test)
        checks_or_error = node["assetChecksOrError"]
        if checks_or_error["__typename"] != "AssetChecks":
            problems[name] = checks_or_error["__typename"]
            continue
        checks = checks_or_error["checks"]
        if not checks:
            problems[name] = "no asset checks"
        elif not any(check["blocking"] for check in checks):
            problems[name] = f"no blocking check among {[c['name'] for c in checks]}"
    assert not problems, f"assets without a blocking check: {problems}"


def test_daily_assets_are_partitioned_by_nyse_trading_day(asset_nodes: dict[str, dict]):
    partitioned = {name for name, node in asset_nodes.items() if node["isPartitioned"]}
    assert partitioned == PARTITIONED_ASSETS
    for name in sorted(PARTITIONED_ASSETS):
        node = asset_nodes[name]
        part = node["partitionDefinition"]
        assert part["type"] == "TIME_WINDOW" and part["fmt"] == "%Y-%m-%d", (name, part)
        assert "0 0 * * 1-5" in part["description"] and "America/New_York" in part["description"], (name, part)
        # A backfill over years of days is one run (vectorized), not one run per day.
        assert node["backfillPolicy"]["policyType"] == "SINGLE_RUN", (name, node["backfillPolicy"])
        # Its column schema is shown on the definition; its rows are validated in the asset before storing.
        labels = {entry["label"] for entry in node["metadataEntries"]}
        assert "dagster/column_schema" in labels, (name, labels)


def test_jobs_are_served(repository: dict):
    jobs = {job["name"] for job in repository["jobs"]}
    assert {"stockml_full_job", "daily_job", "retraining_job", "rollback_job", "override_job"} <= jobs, jobs


def test_sensors_are_served(repository: dict):
    sensors = {sensor["name"]: sensor["sensorType"] for sensor in repository["sensors"]}
    assert sensors.get("drift_sensor") == "STANDARD", sensors  # reads drift_report's daily scores itself
    assert sensors.get("rare_event_capture_sensor") == "STANDARD", sensors
    assert sensors.get("new_rare_event_sensor") == "STANDARD", sensors
    assert sensors.get("training_failure_sensor") == "RUN_STATUS", sensors


def test_schedules_are_served_with_their_cron_and_timezone(repository: dict):
    schedules = {schedule["name"]: schedule for schedule in repository["schedules"]}
    assert {"daily_after_close", "weekly_full_retrain"} <= set(schedules), sorted(schedules)
    daily = schedules["daily_after_close"]
    assert daily["cronSchedule"] == "30 18 * * 1-5"
    assert daily["executionTimezone"] == "America/New_York"
    assert schedules["weekly_full_retrain"]["executionTimezone"] == "America/New_York"


def test_a_run_from_the_cli_path_shows_on_its_jobs_page_with_the_code_location(webserver: Webserver):
    """Issue 16: runs executed in-process (`stockml run`, backfill, replay) had no origin, so the Overview and
    every job page said nothing had run. They now carry the `stockml` code location's origin."""
    from dagster import AssetKey, DagsterInstance

    from stockml_assets.definitions import build_definitions
    from stockml_assets.execution import execute
    from stockml_core.settings import SAMPLE_DATA_DIR

    job = build_definitions(data_dir=SAMPLE_DATA_DIR, home=webserver.stockml_home).resolve_job_def("stockml_full_job")
    with DagsterInstance.from_config(str(webserver.dagster_home)) as instance:
        result = execute(job, instance, asset_selection=[AssetKey("market_universe")])
    assert result.success
    run_id = result.run_id
    runs = webserver.graphql(
        """query ($id: String!) { runsOrError(filter: {runIds: [$id]}) { ... on Runs { results {
        runId jobName repositoryOrigin { repositoryLocationName repositoryName } } } } }""",
        {"id": run_id},
    )
    (run,) = runs["runsOrError"]["results"]
    assert run["repositoryOrigin"] == {"repositoryLocationName": LOCATION_NAME, "repositoryName": "__repository__"}
    page = webserver.graphql(
        """query ($location: String!) { pipelineOrError(params: {pipelineName: "stockml_full_job",
        repositoryName: "__repository__", repositoryLocationName: $location}) { __typename ... on Pipeline { runs { runId } } } }""",
        {"location": LOCATION_NAME},
    )["pipelineOrError"]
    assert page["__typename"] == "Pipeline" and run_id in [r["runId"] for r in page["runs"]]  # the job page lists it
