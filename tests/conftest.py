"""Shared fixtures: one real materialization of the whole graph on a slice of the real sample."""

import os
import shutil
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from dagster import DagsterInstance

from stockml_core.settings import BUNDLED_RARE_EVENTS, SAMPLE_DATA_DIR

warnings.filterwarnings("ignore", category=UserWarning)
# The suite shares 2 cores with the daemon scenario running in the background: OpenMP threads (XGBoost)
# that spin while they wait would burn the core the other process needs. Set before XGBoost loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# DESIGN.md's asset graph: asset -> group.
DESIGN_GROUPS: dict[str, list[str]] = {
    "ingestion": ["market_universe", "raw_prices", "quarantined_prices", "market_context"],
    "regimes": ["market_regimes"],
    "archive": ["rare_event_catalog", "rare_event_archive"],
    "features": ["feature_matrix", "labels"],
    "training": ["training_set", "rf_model", "xgb_model", "meta_learner"],
    "evaluation": ["validation_report", "backtest_report"],
    "explainability": ["shap_values", "shap_importance"],
    "promotion": ["promotion_decision", "production_model"],
    "monitoring": [
        "predictions",
        "feature_drift",
        "regime_drift",
        "prediction_drift",
        "drift_report",
        "rare_event_watch",
        "error_replay_buffer",
        "sector_performance",
        "training_runs",
    ],
}

SLICE_TICKERS = ["XOM", "JPM", "KO", "IBM", "GE", "AEP"]
SLICE_START = "2003-01-01"
# Lenient thresholds guarantee a champion on the slice, so tests can prove it is never disturbed (six names
# cannot show a significant rank IC: at the default gate the slice's candidates are refused, as they should be).
LENIENT_GATE = {
    "rank_ic_margin": -2.0,
    "min_rank_ic_t": -1000.0,
    "net_sharpe_margin": -1000.0,
    "crash_rank_ic_tolerance": 2.0,
    "min_sector_accuracy": 0.0,
    "recent_rank_ic_tolerance": 2.0,
    "max_rank_ic_drop": 2.0,
}


def slice_config(home: Path, data_dir: Path = SAMPLE_DATA_DIR, **overrides) -> dict:
    cfg = {"home": home, "data_dir": data_dir, "tickers": SLICE_TICKERS, "start": SLICE_START, "fast": True, "gate": LENIENT_GATE}
    cfg.update(overrides)
    return cfg


# Partitioned by NYSE trading day (stockml_assets.partitions); the other assets are unpartitioned.
PARTITIONED_ASSETS = {
    "raw_prices",
    "market_context",
    "feature_matrix",
    "predictions",
    "feature_drift",
    "regime_drift",
    "prediction_drift",
    "drift_report",
    "rare_event_watch",
}
MONITORING_ONLY = {"predictions", "feature_drift", "regime_drift", "prediction_drift", "drift_report", "rare_event_watch"}
TRAINING_AND_GATE = {
    "training_set",
    "rf_model",
    "xgb_model",
    "meta_learner",
    "validation_report",
    "backtest_report",
    "shap_values",
    "shap_importance",
    "promotion_decision",
    "production_model",
}
ALL_ASSETS = {n for names in DESIGN_GROUPS.values() for n in names}
HISTORY_ASSETS = ALL_ASSETS - MONITORING_ONLY  # stockml_full_job: everything but the per-day monitoring


def job_assets(job_name: str) -> set[str]:
    """The assets a job of the project's definitions materializes (its selection)."""
    from stockml_assets.definitions import defs

    return {k.to_user_string() for k in defs.resolve_job_def(job_name).asset_layer.executable_asset_keys}


def make_instance(dagster_home: Path) -> DagsterInstance:
    """A throwaway local instance with the project's fast event log (as `stockml init-home` configures it)."""
    from stockml_assets.instance_storage import event_log_config

    dagster_home.mkdir(parents=True, exist_ok=True)
    return DagsterInstance.local_temp(
        str(dagster_home), overrides={"event_log_storage": event_log_config(str(dagster_home / "history" / "runs")), "telemetry": {"enabled": False}}
    )


def definitions(**config):
    from stockml_assets.definitions import build_definitions

    return build_definitions(**config)


def run_job(job_name: str, instance: DagsterInstance, **config):
    """An unpartitioned job (retraining_job, ...) on a deployment configured like ``slice_config``."""
    return definitions(**config).resolve_job_def(job_name).execute_in_process(instance=instance, raise_on_error=False)


def run_history_job(instance: DagsterInstance, first=None, last=None, train: bool = True, **config):
    """stockml_full_job over the trading days [first, last] (default: the data's whole span) in one run."""
    from stockml_assets.runs import data_span, run_history

    defs = definitions(**config)
    if first is None or last is None:
        span = data_span(defs.resources["stockml"].settings())
        first, last = first or span[0], last or span[1]
    return run_history(defs, instance, first, last, train=train)


def run_daily_job(instance: DagsterInstance, day, last=None, **config):
    """daily_job for one trading day's partition (or every day in [day, last] in one run)."""
    from stockml_assets.runs import run_daily

    return run_daily(definitions(**config), instance, day, last=last)


def materialized_keys(result) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


def materialized_partitions(result, asset: str) -> list[str]:
    return sorted(e.partition for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == asset)


@pytest.fixture(scope="session")
def materialized(tmp_path_factory):
    """The whole graph materialized once on 6 tickers from 2003, in a tmp home and a tmp instance:
    the history run over the slice's trading days (training and the gate), then the daily run for
    the last day (the champion's predictions, drift, the rare-event watch), as `stockml run` does."""
    from stockml_assets.runs import data_span

    home = tmp_path_factory.mktemp("stockml_home")
    instance = make_instance(tmp_path_factory.mktemp("dagster_home"))
    config = slice_config(home)
    _, last = data_span(definitions(**config).resources["stockml"].settings())
    t0 = time.perf_counter()
    history = run_history_job(instance, SLICE_START, last, **config)
    t1 = time.perf_counter()
    daily = run_daily_job(instance, last, **config) if history.success else None
    t2 = time.perf_counter()
    print(f"\nmaterialized fixture: history {t1 - t0:.1f} s, daily {t2 - t1:.1f} s")
    return SimpleNamespace(
        home=home,
        instance=instance,
        result=history,
        daily=daily,
        last_day=f"{last:%Y-%m-%d}",
        config=config,
        timings={"history": t1 - t0, "daily": t2 - t1},
    )


@pytest.fixture
def home_copy(materialized, tmp_path) -> Path:
    """A private copy of the materialized runtime state, for tests that change it."""
    dst = tmp_path / "home"
    shutil.copytree(materialized.home, dst)
    # Model artefacts are addressed relative to the registry's artefact folder, so a copy is self-contained.
    return dst


def write_slice_folder(dst: Path, tickers=SLICE_TICKERS, start=SLICE_START, end=None) -> pd.DataFrame:
    """A data folder in the documented layout holding a slice of the real sample; returns its prices."""
    dst.mkdir(parents=True, exist_ok=True)
    prices = pd.read_csv(SAMPLE_DATA_DIR / "prices.csv.gz")
    prices = prices[prices.ticker.isin(tickers) & (prices.date >= start)]
    if end:
        prices = prices[prices.date <= end]
    prices.to_csv(dst / "prices.csv", index=False)
    sectors = pd.read_csv(SAMPLE_DATA_DIR / "sectors.csv")
    sectors[sectors.ticker.isin(tickers)].to_csv(dst / "sectors.csv", index=False)
    shutil.copy(SAMPLE_DATA_DIR / "market.csv.gz", dst / "market.csv.gz")
    shutil.copy(BUNDLED_RARE_EVENTS, dst / "rare_events.csv")
    return prices


@pytest.fixture
def fresh_instance(tmp_path):
    """A private Dagster instance, so a test's runs never change what the session's instance holds."""
    instance = make_instance(tmp_path / "dagster_home")
    yield instance
    instance.dispose()


def pytest_collection_modifyitems(config, items) -> None:
    """The daemon end-to-end scenario waits minutes for schedule ticks: start it in the background as
    the session starts, and run its test (which waits for it) last."""
    from tests.test_daemon import DAEMON_TEST, start_scenario

    daemon = [i for i in items if i.name == DAEMON_TEST]
    if not daemon:
        return
    items[:] = [i for i in items if i.name != DAEMON_TEST] + daemon
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="stockml-daemon-"))
    config.stockml_daemon_scenario = (start_scenario(base), base)


def pytest_sessionfinish(session, exitstatus) -> None:
    from tests.test_daemon import stop_scenario

    proc, _ = getattr(session.config, "stockml_daemon_scenario", (None, None))
    if proc is not None:
        stop_scenario(proc)
