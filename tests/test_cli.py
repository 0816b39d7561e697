"""`stockml run` and `stockml status` as a user meets them, on a data folder of their own."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import DagsterInstance

from stockml_core.evaluation import BASELINES
from tests.conftest import write_slice_folder

STOCKML = [sys.executable, "-m", "stockml_assets.cli"]


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """`stockml run` on a user's own data folder (STOCKML_DATA_DIR) with its own STOCKML_HOME."""
    root = tmp_path_factory.mktemp("cli")
    write_slice_folder(root / "data", tickers=["XOM", "KO", "JPM", "IBM"], start="2006-01-01")
    env = {**os.environ, "STOCKML_DATA_DIR": str(root / "data"), "STOCKML_HOME": str(root / "home"),
           "DAGSTER_HOME": str(root / "dagster_home")}
    run = subprocess.run([*STOCKML, "run"], env=env, capture_output=True, text=True, timeout=600)
    return root, env, run


def test_run_materializes_through_dagster_and_prints_the_summary(cli_run):
    _, _, run = cli_run
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout
    for expected in ["ok  raw_prices", "ok  production_model",  # one progress line per asset
                     "Rows ingested:", "Features:", "Last decision: candidate v0001", "accuracy_vs_best_baseline",
                     "Top 10 SHAP features:", "Drift score:", "make ui"]:
        assert expected in out
    assert "Champion: v0001" in out or "No model passed the gate" in out


def test_runs_show_in_the_projects_dagster_instance(cli_run):
    root, _, _ = cli_run
    assert (root / "dagster_home" / "dagster.yaml").exists()
    with DagsterInstance.from_config(str(root / "dagster_home")) as instance:
        runs = instance.get_runs()
    assert [r.job_name for r in runs] == ["stockml_full_job"] and runs[0].is_success


def test_status_json_reports_champion_decision_and_drift(cli_run):
    _, env, _ = cli_run
    status = subprocess.run([*STOCKML, "status", "--json"], env=env, capture_output=True, text=True, timeout=120)
    def no_nan(token: str):
        raise AssertionError(f"status JSON holds {token}: not standard JSON")

    data = json.loads(status.stdout, parse_constant=no_nan)
    keys = {"accuracy", "balanced_accuracy", "auc_ovr", "auc_direction", "ic", "rank_ic", "icir"}
    assert keys <= set(data["champion"]["metrics"])
    assert set(data["champion"]["baselines"]) == set(BASELINES)
    assert all(keys <= set(m) for m in data["champion"]["baselines"].values())
    assert data["champion"]["baselines"]["always_up"]["auc_ovr"] == 0.5
    assert data["last_decision"]["candidate_version"] == "v0001"
    assert {c["name"] for c in data["last_decision"]["criteria"]} >= {"accuracy_vs_best_baseline", "worst_sector_accuracy"}
    assert 0.0 <= data["drift_score"] <= 1.0
    assert Path(data["warehouse"]).parent == Path(env["STOCKML_HOME"])


def test_status_before_any_run_says_so(tmp_path):
    env = {**os.environ, "STOCKML_HOME": str(tmp_path / "empty")}
    status = subprocess.run([*STOCKML, "status"], env=env, capture_output=True, text=True, timeout=120)
    assert status.returncode == 0 and "no model has passed the promotion gate" in status.stdout


def test_override_needs_a_reason_and_a_registered_version(cli_run):
    _, env, _ = cli_run
    no_reason = subprocess.run([*STOCKML, "override", "v0001"], env=env, capture_output=True, text=True, timeout=120)
    assert no_reason.returncode == 2 and "--reason" in no_reason.stderr
    unknown = subprocess.run([*STOCKML, "override", "v0099", "--reason", "try"], env=env, capture_output=True,
                             text=True, timeout=300)
    assert unknown.returncode == 1 and "override failed" in unknown.stdout and "v0099" in unknown.stdout
    status = json.loads(subprocess.run([*STOCKML, "status", "--json"], env=env, capture_output=True, text=True,
                                       timeout=120).stdout)
    assert status["champion"]["version"] == "v0001"  # unchanged
