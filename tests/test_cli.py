"""`stockml run` and `stockml status` as a user meets them, on a data folder of their own."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from dagster import AssetKey, DagsterInstance

from stockml_core.modeling.evaluation import ALL_BASELINES
from tests.conftest import LENIENT_GATE, write_slice_folder

STOCKML = [sys.executable, "-m", "stockml_assets.cli"]


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """`stockml run` on a user's own data folder (STOCKML_DATA_DIR) with its own STOCKML_HOME (the smaller
    models of STOCKML_FAST: this tests the command, not the models)."""
    root = tmp_path_factory.mktemp("cli")
    write_slice_folder(root / "data", tickers=["XOM", "KO", "JPM", "IBM"], start="2010-01-01")
    # Four names cannot show a significant rank IC: the lenient gate makes a champion to test the commands with.
    env = {
        **os.environ,
        "STOCKML_DATA_DIR": str(root / "data"),
        "STOCKML_HOME": str(root / "home"),
        "DAGSTER_HOME": str(root / "dagster_home"),
        "STOCKML_FAST": "1",
        "STOCKML_GATE": json.dumps(LENIENT_GATE),
    }
    run = subprocess.run([*STOCKML, "run"], env=env, capture_output=True, text=True, timeout=600)
    return root, env, run


def test_run_materializes_through_dagster_and_prints_the_summary(cli_run):
    _, _, run = cli_run
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout
    # The history run over the data's span (training and the gate), then the daily run for its last day.
    history, daily = out.index("1/2 history: 2010-01-04..2017-11-10"), out.index("2/2 daily run for 2017-11-10")
    assert history < out.index("ok  raw_prices") < out.index("ok  production_model") < daily  # one line per asset
    drift = out.index("ok  drift (drift_report, feature_drift, prediction_drift, regime_drift)")
    assert daily < out.index("ok  predictions") < out.index("ok  rare_event_watch") and daily < drift < out.index("ok  rare_event_watch")
    for expected in [
        "Rows ingested:",
        "Features:",
        "Last decision: candidate v0001",
        "rank_ic_vs_best_baseline",
        "Skill of candidate v0001",
        "net_sharpe",
        "Top 10 SHAP features:",
        "Drift score:",
        " on 2017-11-10",
        "make ui",
    ]:
        assert expected in out, expected
    assert "Champion: v0001" in out or "No model passed the gate" in out
    # Long steps report as they go: each fold's fit with its rows, time and an estimate of what is left.
    assert "rf_model: rf fold 1/3:" in out and "xgb_model: xgb final fit:" in out and "s left" in out
    assert "Data quality: " in out and "0 quarantined" in out
    # Freshness on the data's calendar (the slice ends 2017-11-10, years before today): caught up.
    assert "Freshness on the data's calendar: passed (caught up): drift_report holds every trading day the feed delivered, up to 2017-11-10" in out
    # Issue 16: read as a quant reads it: thresholds beside the drift score, the backtest, integers as integers,
    # n/a (never nan) for criteria that do not apply, and a plain warning when the champion ranks no better than chance.
    assert "(retraining when >= 0.46 for 3 days in a row" in out and "Backtest of candidate v0001 (daily long top-5" in out
    assert not re.search(r"\bnan\b", out, re.IGNORECASE) and not re.search(r"\d\.0000\s*$", out, re.MULTILINE)
    # Model names as the README writes them, in both tables (not the stored keys rf / xgb).
    tables = out[out.index("Out-of-sample (purged walk-forward)") : out.index("Backtest of candidate")]
    assert tables.count("candidate (stacked)") == 2 and tables.count("RandomForest") == 2 and tables.count("XGBoost") == 2
    assert tables.count("12-1 momentum (ranked)") == 2 and not re.search(r"^\s*(rf|xgb|momentum_12_1)\s", tables, re.MULTILINE)
    if "Champion: v0001" in out:
        t = float(re.search(r"rank_ic_t (-?\d+\.\d+)", out.split("Champion: v0001")[1]).group(1))
        assert ("WARNING: champion v0001 shows no directional skill" in out) == (t < 2.0)


def test_every_model_the_report_shows_has_a_readers_name():
    from stockml_core.modeling.evaluation import MODEL_LABELS, model_label

    for model in ["candidate", "rf", "xgb", *ALL_BASELINES]:
        assert model in MODEL_LABELS and model_label(model) != model, model
    assert len(set(MODEL_LABELS.values())) == len(MODEL_LABELS)  # no two models read alike
    assert model_label("some_new_model") == "some_new_model"


def test_a_refused_run_says_on_the_terminal_what_failed_and_why(tmp_path):
    write_slice_folder(tmp_path / "data", tickers=["XOM", "KO"], start="2016-01-01")
    sectors = pd.read_csv(tmp_path / "data" / "sectors.csv")
    pd.concat([sectors, sectors[sectors.ticker == "KO"]]).to_csv(tmp_path / "data" / "sectors.csv", index=False)
    env = {
        **os.environ,
        "STOCKML_DATA_DIR": str(tmp_path / "data"),
        "STOCKML_HOME": str(tmp_path / "home"),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "STOCKML_FAST": "1",
    }
    run = subprocess.run([*STOCKML, "run"], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 1
    out = run.stdout
    # Refused inside the asset, before anything is stored: the step fails naming the duplicated ticker and the fix.
    assert "FAILED  market_universe" in out and "market_universe_unique_tickers" in out, out[-3000:]
    assert "KO Consumer Staples (keep one row per ticker in sectors.csv)" in out and "nothing was stored" in out
    assert "dagster._core" not in out  # the message, not Dagster's exception class


def test_runs_show_in_the_projects_dagster_instance(cli_run):
    root, _, _ = cli_run
    config = (root / "dagster_home" / "dagster.yaml").read_text()
    assert "LocalEventLogStorage" in config  # the fast event log for partitioned runs
    with DagsterInstance.from_config(str(root / "dagster_home")) as instance:
        runs = instance.get_runs()  # newest first
        assert [r.job_name for r in runs] == ["daily_job", "stockml_full_job"] and all(r.is_success for r in runs)
        assert runs[0].tags["dagster/partition"] == "2017-11-10"
        assert (runs[1].tags["dagster/asset_partition_range_start"], runs[1].tags["dagster/asset_partition_range_end"]) == (
            "2010-01-04",
            "2017-11-10",
        )
        assert instance.get_latest_materialization_event(AssetKey("drift_report")).asset_materialization.partition == "2017-11-10"


def test_status_json_reports_champion_decision_and_drift(cli_run):
    _, env, _ = cli_run
    status = subprocess.run([*STOCKML, "status", "--json"], env=env, capture_output=True, text=True, timeout=120)

    def no_nan(token: str):
        raise AssertionError(f"status JSON holds {token}: not standard JSON")

    data = json.loads(status.stdout, parse_constant=no_nan)
    keys = {
        "accuracy",
        "balanced_accuracy",
        "auc_ovr",
        "auc_direction",
        "ic",
        "rank_ic",
        "icir",
        "rank_icir",
        "ic_t",
        "rank_ic_t",
        "days",
        "net_sharpe",
        "turnover",
    }
    assert keys <= set(data["champion"]["metrics"])
    assert set(data["champion"]["baselines"]) == set(ALL_BASELINES) and set(data["champion"]["base_models"]) == {"rf", "xgb"}
    assert all(keys <= set(m) for m in [*data["champion"]["baselines"].values(), *data["champion"]["base_models"].values()])
    assert data["champion"]["metrics"]["days"] > 100 and data["champion"]["metrics"]["rank_ic_t"] is not None
    assert data["champion"]["baselines"]["always_up"]["auc_ovr"] == 0.5
    assert data["last_decision"]["candidate_version"] == "v0001"
    assert {c["name"] for c in data["last_decision"]["criteria"]} >= {
        "rank_ic_vs_best_baseline",
        "rank_ic_t",
        "net_sharpe_vs_best_baseline",
        "worst_sector_accuracy",
    }
    assert data["last_decision"]["promoted"] is True and data["last_decision"]["failed"] == []
    assert {c["outcome"] for c in data["last_decision"]["criteria"]} <= {"pass", "fail", "not applicable"}
    assert 0.0 <= data["drift_score"] <= 1.0 and data["drift_date"] == "2017-11-10"
    assert Path(data["warehouse"]).parent == Path(env["STOCKML_HOME"])


def test_status_before_any_run_says_so(tmp_path):
    env = {**os.environ, "STOCKML_HOME": str(tmp_path / "empty")}
    status = subprocess.run([*STOCKML, "status"], env=env, capture_output=True, text=True, timeout=120)
    assert status.returncode == 0 and "no model has passed the promotion gate" in status.stdout


def test_override_needs_a_reason_and_a_registered_version(cli_run):
    _, env, _ = cli_run
    no_reason = subprocess.run([*STOCKML, "override", "v0001"], env=env, capture_output=True, text=True, timeout=120)
    assert no_reason.returncode == 2 and "--reason" in no_reason.stderr
    unknown = subprocess.run([*STOCKML, "override", "v0099", "--reason", "try"], env=env, capture_output=True, text=True, timeout=300)
    assert unknown.returncode == 1 and "override failed" in unknown.stdout and "v0099" in unknown.stdout
    assert "Error occurred while executing" not in unknown.stdout  # the cause, not Dagster's wrapper
    status = json.loads(subprocess.run([*STOCKML, "status", "--json"], env=env, capture_output=True, text=True, timeout=120).stdout)
    assert status["champion"]["version"] == "v0001"  # unchanged


def test_backfill_runs_a_range_of_days_in_one_daily_run(cli_run):
    root, env, _ = cli_run
    done = subprocess.run([*STOCKML, "backfill", "2017-11-06", "2017-11-10", "--job", "daily"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "daily backfill 2017-11-06..2017-11-10" in done.stdout and "succeeded" in done.stdout
    with DagsterInstance.from_config(str(root / "dagster_home")) as instance:
        run = instance.get_runs(limit=1)[0]
    assert run.job_name == "daily_job" and run.is_success
    assert (run.tags["dagster/asset_partition_range_start"], run.tags["dagster/asset_partition_range_end"]) == ("2017-11-06", "2017-11-10")
    from stockml_core.storage.warehouse import Warehouse

    drift = Warehouse(Path(env["STOCKML_HOME"]) / "warehouse.duckdb").read(
        'select date, value from "assets"."drift_report" where component = \'overall\' order by date'
    )
    assert [f"{d:%Y-%m-%d}" for d in drift.date] == ["2017-11-06", "2017-11-07", "2017-11-08", "2017-11-09", "2017-11-10"]
    status = json.loads(subprocess.run([*STOCKML, "status", "--json"], env=env, capture_output=True, text=True, timeout=120).stdout)
    assert status["drift_date"] == "2017-11-10" and status["drift_score"] == pytest.approx(float(drift.value.iloc[-1]))


def test_replay_refuses_bad_arguments_in_one_line_and_deletes_nothing(tmp_path):
    (tmp_path / "victim_").mkdir()
    (tmp_path / "victim_" / "keep.txt").write_text("x")
    env = {**os.environ, "STOCKML_HOME": str(tmp_path), "DAGSTER_HOME": str(tmp_path / "dh")}
    r = subprocess.run(
        [*STOCKML, "replay", "--start", "./victim", "--end", "", "--out", str(tmp_path / "out")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert r.returncode == 2 and r.stderr.strip() == "replay refused: --start './victim' is not a date in the form YYYY-MM-DD"
    assert (tmp_path / "victim_" / "keep.txt").exists() and not (tmp_path / "out").exists()


def test_status_fails_when_the_champions_artefact_fails_its_hash(cli_run, tmp_path):
    import shutil

    root, env, _ = cli_run
    home = tmp_path / "home"
    shutil.copytree(root / "home", home)
    artefact = home / "models" / "v0001.joblib"
    data = bytearray(artefact.read_bytes())
    data[len(data) // 2] ^= 1
    artefact.write_bytes(bytes(data))
    warehouse = (home / "warehouse.duckdb").read_bytes()
    r = subprocess.run([*STOCKML, "status", "--json"], env={**env, "STOCKML_HOME": str(home)}, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "integrity" in r.stderr
    assert (home / "warehouse.duckdb").read_bytes() == warehouse  # status opened it read-only and wrote nothing
    champ = json.loads(r.stdout)["champion"]
    assert champ["verified"] is False and "expected sha256" in champ["integrity"]
    ok = json.loads(subprocess.run([*STOCKML, "status", "--json"], env=env, capture_output=True, text=True, timeout=120).stdout)
    assert ok["champion"]["verified"] is True and ok["champion"]["integrity"] == "sha256 verified"


def test_the_event_log_can_be_dagsters_own(tmp_path, monkeypatch) -> None:
    """STOCKML_EVENT_LOG=dagster: a home whose instance uses only Dagster's public storage; switching back rewrites it."""
    from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

    from stockml_assets.cli import init_home
    from stockml_assets.instance_storage import LocalEventLogStorage

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dh"))
    monkeypatch.setenv("STOCKML_EVENT_LOG", "dagster")
    home = init_home()
    assert "event_log_storage" not in (home / "dagster.yaml").read_text()
    with DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.event_log_storage) is SqliteEventLogStorage
    monkeypatch.setenv("STOCKML_EVENT_LOG", "stockml")
    init_home()
    with DagsterInstance.from_config(str(home)) as instance:
        assert isinstance(instance.event_log_storage, LocalEventLogStorage)
    monkeypatch.setenv("STOCKML_EVENT_LOG", "sqlite")
    with pytest.raises(ValueError, match="STOCKML_EVENT_LOG='sqlite': use one of stockml, dagster"):
        init_home()
