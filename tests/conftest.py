"""Shared fixtures: one real materialization of the whole graph on a slice of the real sample."""

import shutil
import warnings
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from dagster import DagsterInstance

from stockml_core.settings import DEFAULT_DATA_DIR

warnings.filterwarnings("ignore", category=UserWarning)

# DESIGN.md's asset graph: asset -> group.
DESIGN_GROUPS: dict[str, list[str]] = {
    "ingestion": ["market_universe", "raw_prices", "market_context"],
    "regimes": ["market_regimes"],
    "archive": ["rare_event_catalog", "rare_event_archive"],
    "features": ["feature_matrix", "labels"],
    "training": ["training_set", "rf_model", "xgb_model", "meta_learner"],
    "evaluation": ["validation_report", "backtest_report"],
    "explainability": ["shap_values", "shap_importance"],
    "promotion": ["promotion_decision", "production_model"],
    "monitoring": ["predictions", "feature_drift", "regime_drift", "prediction_drift", "drift_report",
                   "error_replay_buffer", "sector_performance", "training_runs"],
}

SLICE_TICKERS = ["XOM", "JPM", "KO", "IBM", "GE", "AEP"]
SLICE_START = "2003-01-01"
# Lenient thresholds guarantee a champion on the slice, so tests can prove it is never disturbed.
LENIENT_GATE = {"accuracy_margin": -1.0, "balanced_accuracy_margin": -1.0, "crash_accuracy_tolerance": 1.0,
                "min_sector_accuracy": 0.0, "max_drift_score": 1.0, "max_relative_degradation": 1.0}


def slice_config(home: Path, data_dir: Path = DEFAULT_DATA_DIR, **overrides) -> dict:
    cfg = {"home": home, "data_dir": data_dir, "tickers": SLICE_TICKERS, "start": SLICE_START, "fast": True,
           "gate": LENIENT_GATE}
    cfg.update(overrides)
    return cfg


def run_job(job_name: str, instance: DagsterInstance, **config):
    from stockml_assets.definitions import build_definitions

    defs = build_definitions(**config)
    return defs.resolve_job_def(job_name).execute_in_process(instance=instance, raise_on_error=False)


@pytest.fixture(scope="session")
def materialized(tmp_path_factory):
    """The whole graph materialized once on 6 tickers from 2003, in a tmp home and a tmp instance."""
    home = tmp_path_factory.mktemp("stockml_home")
    dagster_home = tmp_path_factory.mktemp("dagster_home")
    instance = DagsterInstance.local_temp(str(dagster_home), overrides={"telemetry": {"enabled": False}})
    result = run_job("stockml_full_job", instance, **slice_config(home))
    return SimpleNamespace(home=home, instance=instance, result=result)


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
    prices = pd.read_csv(DEFAULT_DATA_DIR / "prices.csv.gz")
    prices = prices[prices.ticker.isin(tickers) & (prices.date >= start)]
    if end:
        prices = prices[prices.date <= end]
    prices.to_csv(dst / "prices.csv", index=False)
    sectors = pd.read_csv(DEFAULT_DATA_DIR / "sectors.csv")
    sectors[sectors.ticker.isin(tickers)].to_csv(dst / "sectors.csv", index=False)
    shutil.copy(DEFAULT_DATA_DIR / "market.csv.gz", dst / "market.csv.gz")
    shutil.copy(DEFAULT_DATA_DIR / "rare_events.csv", dst / "rare_events.csv")
    return prices
