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


def evaluate(definition, context):
    """A sensor's or schedule's tick on a context built by ``build_sensor_context`` / ``build_schedule_context``,
    closed afterwards: an open context leaves its instance set as the process's current one (Dagster's
    defs-state context), and a later definitions load in this process meets it disposed."""
    with context as ctx:
        return definition.evaluate_tick(ctx)


@pytest.fixture(autouse=True)
def _no_dagster_instance_context_left_behind():
    """A test that leaves a Dagster instance entered as the current one (a sensor or schedule context never
    closed) fails here, not a later test of the same worker at its first definitions load."""
    from dagster._core.storage.defs_state.base import DefsStateStorage

    before = DefsStateStorage.get()
    yield
    left = DefsStateStorage.get()
    if left is not None and left is not before:
        from dagster._core.storage.defs_state.base import _current_storage

        _current_storage.set(before)  # the next test starts clean
        pytest.fail("the test left a Dagster instance context open (close sensor/schedule contexts: tests.conftest.evaluate)")


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


# Under ``make test`` the suite runs on pytest-xdist workers (``-n 2``): each test module is one unit of work,
# so a module-scoped fixture is built once, and the modules that use the session's ``materialized`` graph are
# one unit together, so that graph is built once, on one worker (ModuleScheduling below; xdist's own
# ``--dist loadgroup`` cannot do it under pytest 9.2, whose node ids ignore the group suffix xdist 3.8 sets).
# Units are handed out slowest first (measured with ``--durations``, 2026-12-07): the rest fill the gaps, and
# the daemon test, which only waits for the scenario started with the session, comes last.
MATERIALIZED_GROUP = "materialized"
MATERIALIZED_MODULES = {
    "tests/test_bad_inputs.py",
    "tests/test_browser.py",
    "tests/test_event_log.py",
    "tests/test_freshness.py",
    "tests/test_graph.py",
    "tests/test_quality_gates.py",
    "tests/test_sensors_schedules.py",
}
SLOWEST_FIRST = [
    MATERIALIZED_GROUP,
    "tests/test_faults.py",
    "tests/test_replay.py",
    "tests/test_cli.py",
    "tests/test_canaries.py",
    "tests/test_quarantine_graph.py",
    "tests/test_feature_asset.py",
    "tests/test_partitions_end.py",
    "tests/test_reproducibility.py",
]
DAEMON_SCENARIO_ENV = "STOCKML_DAEMON_SCENARIO_DIR"  # set by the controller of an xdist run for its workers


def work_unit(nodeid: str) -> str:
    from tests.test_daemon import DAEMON_TEST

    module = nodeid.split("::")[0]
    if nodeid.split("::")[-1] == DAEMON_TEST:
        return "daemon"  # a unit of its own, queued last: the worker that takes it only waits
    return MATERIALIZED_GROUP if module in MATERIALIZED_MODULES else module


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    if config.getoption("dist") == "each":
        return None  # xdist's own: every test on every worker
    from xdist.scheduler import LoadScopeScheduling

    config.option.loadscopereorder = False  # the units in collection order: SLOWEST_FIRST

    class ModuleScheduling(LoadScopeScheduling):
        """xdist's load-by-scope scheduling with ``work_unit`` as the scope."""

        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return ModuleScheduling(config, log)


def pytest_collection_modifyitems(config, items) -> None:
    """Order the tests by unit (see SLOWEST_FIRST); start the daemon end-to-end scenario in the background as
    the session starts (without xdist: here; with it: the controller does, once) and run its test, which
    waits for it, last."""
    from tests.test_daemon import DAEMON_TEST, start_scenario

    using = {i.nodeid.split("::")[0] for i in items if "materialized" in getattr(i, "fixturenames", ())}
    if using - MATERIALIZED_MODULES:
        raise pytest.UsageError(f"tests/conftest.py: add {sorted(using - MATERIALIZED_MODULES)} to MATERIALIZED_MODULES (they use `materialized`)")
    rank = {unit: n for n, unit in enumerate(SLOWEST_FIRST)}
    daemon = [i for i in items if i.name == DAEMON_TEST]
    rest = sorted((i for i in items if i.name != DAEMON_TEST), key=lambda i: rank.get(work_unit(i.nodeid), len(rank)))  # stable
    items[:] = rest + daemon
    if not daemon or hasattr(config, "workerinput"):
        return  # an xdist worker: its controller started the scenario (pytest_xdist_node_collection_finished)
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="stockml-daemon-"))
    config.stockml_daemon_scenario = (start_scenario(base), base)


def _xdist_controller(config) -> bool:
    return config.pluginmanager.has_plugin("dsession") and not hasattr(config, "workerinput")


@pytest.hookimpl(trylast=True)  # after xdist's, which registers the controller's "dsession" plugin
def pytest_configure(config) -> None:
    if _xdist_controller(config):
        import tempfile

        # Workers inherit the environment when they start, after this: they find the scenario's folder here.
        os.environ[DAEMON_SCENARIO_ENV] = tempfile.mkdtemp(prefix="stockml-daemon-")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node, ids) -> None:
    """On the xdist controller: the first worker's collection says whether the daemon test runs; if so, start
    its scenario once, now, in the folder the workers know (DAEMON_SCENARIO_ENV)."""
    from tests.test_daemon import DAEMON_TEST, start_scenario

    config = node.config
    if getattr(config, "stockml_daemon_scenario", None) or not any(i.split("::")[-1] == DAEMON_TEST for i in ids):
        return
    if not os.environ.get(DAEMON_SCENARIO_ENV):
        return  # not the controller pytest_configure prepared: the worker's test starts its own
    base = Path(os.environ[DAEMON_SCENARIO_ENV])
    config.stockml_daemon_scenario = (start_scenario(base), base)


def pytest_sessionfinish(session, exitstatus) -> None:
    from tests.test_daemon import stop_scenario

    proc, _ = getattr(session.config, "stockml_daemon_scenario", (None, None))
    if proc is not None:
        stop_scenario(proc)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """One line on the browser tests at the end of every run that collected them: how many ran, or, loudly,
    that they skipped and why (CI must open the UI in a real browser: .ci/run, make browser)."""
    if hasattr(config, "workerinput"):
        return
    counts: dict[str, int] = {}
    reasons: set[str] = set()
    for outcome in ("passed", "failed", "error", "skipped"):
        for report in terminalreporter.stats.get(outcome, []):
            if getattr(report, "nodeid", "").startswith("tests/test_browser.py") and (report.when == "call" or outcome != "passed"):
                counts[outcome] = counts.get(outcome, 0) + 1
                if outcome == "skipped" and isinstance(report.longrepr, tuple):
                    reasons.add(str(report.longrepr[2]))
    if not counts:
        return
    ran = counts.get("passed", 0) + counts.get("failed", 0)
    terminalreporter.write_sep("=", f"browser tests: {ran} ran in Chromium ({', '.join(f'{n} {k}' for k, n in sorted(counts.items()))})")
    if counts.get("skipped"):
        terminalreporter.write_line(f"!!! BROWSER TESTS SKIPPED: {'; '.join(sorted(reasons))}", red=True, bold=True)
