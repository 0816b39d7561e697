"""The one settings object: every threshold, window and path of the platform lives here."""

from __future__ import annotations

import functools
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATA_ROOT = PROJECT_ROOT / "data"
BROAD_DATA_DIR = DATA_ROOT / "us-broad"  # 258 real US stocks 1995-2017 with their real bad rows: the default
SAMPLE_DATA_DIR = DATA_ROOT / "sample"  # 33 real US stocks 1990-2017: the fast tests' data
DEFAULT_DATA_DIR = BROAD_DATA_DIR
BUNDLED_RARE_EVENTS = DATA_ROOT / "rare_events.csv"  # used when a data folder has no rare_events.csv of its own


def data_dir_from_env() -> Path:
    """The market data folder: ``STOCKML_DATA_DIR`` or the embedded ``data/us-broad``."""
    return Path(os.environ.get("STOCKML_DATA_DIR") or DEFAULT_DATA_DIR).resolve()


def first_day_from_env() -> str:
    """The first trading-day partition: ``STOCKML_FIRST_DAY`` or 1990-01-02 (the sample's first day)."""
    return os.environ.get("STOCKML_FIRST_DAY", "1990-01-02")


def automation_from_env() -> bool:
    """Schedules and sensors start on, unless ``STOCKML_AUTOMATION=off``."""
    return os.environ.get("STOCKML_AUTOMATION") != "off"


def daily_cron_from_env() -> str:
    """The daily schedule's cron: ``STOCKML_DAILY_CRON`` (tests run it every minute) or 18:30 on weekdays."""
    return os.environ.get("STOCKML_DAILY_CRON", "30 18 * * 1-5")


def fast_from_env() -> bool:
    """The ``fast`` profile (``FAST_TRAINING``) when ``STOCKML_FAST=1``."""
    return os.environ.get("STOCKML_FAST") == "1"


def webserver_url_from_env() -> str | None:
    """The Dagster webserver that serves this instance (``STOCKML_WEBSERVER_URL``, set by ``make ui``):
    asked to reload the definitions when the feed has delivered days past their partitions' end."""
    return os.environ.get("STOCKML_WEBSERVER_URL") or None


EVENT_LOGS = ("stockml", "dagster")


def event_log_from_env() -> str:
    """The local instance's event log: ``stockml`` (``stockml_assets.instance_storage``, the default) or
    ``dagster`` (Dagster's own SQLite event log; ``STOCKML_EVENT_LOG=dagster``): the way back to public
    APIs only, should a Dagster release change the private ones the project's storage builds on."""
    value = os.environ.get("STOCKML_EVENT_LOG", "stockml")
    if value not in EVENT_LOGS:
        raise ValueError(f"STOCKML_EVENT_LOG={value!r}: use one of {', '.join(EVENT_LOGS)}")
    return value


def home_from_env() -> Path:
    """Runtime state (warehouse, model artefacts): ``STOCKML_HOME`` or ``data/runtime``."""
    return Path(os.environ.get("STOCKML_HOME") or DATA_ROOT / "runtime").resolve()


@dataclass(frozen=True)
class RegimeSettings:
    """Regime thresholds on VIX and S&P 500 drawdown (all computed from data up to t)."""

    crash_vix: float = 35.0
    crash_drawdown: float = -0.15
    crash_return_20d: float = -0.08
    high_vol_vix: float = 25.0
    recovery_drawdown: float = -0.10
    recovery_return_20d: float = 0.0


@dataclass(frozen=True)
class LabelSettings:
    """Triple-barrier classes: down (0), flat (1), up (2) over ``horizon`` days, barriers at +/- threshold x sigma x sqrt(horizon)."""

    horizon: int = 5
    vol_window: int = 20
    threshold: float = 0.7  # barrier distance in units of the horizon-scaled daily volatility (about a third of the sample per class)
    # What the classes are: "triple_barrier" (the first volatility-scaled barrier touched: down / flat /
    # up), or the per-date terciles of the market-neutral forward return ("market_neutral": minus the
    # day's cross-sectional mean; "sector_neutral": minus the day's mean of the ticker's GICS sector),
    # i.e. down / flat / up relative to peers that day (stockml_core.modeling.labels).
    target: str = "market_neutral"
    min_names: int = 3  # a cross-sectional target needs this many names (of the sector, when sector-neutral) on the day


@dataclass(frozen=True)
class TrainingSettings:
    """Training set composition, walk-forward evaluation and model hyper-parameters."""

    recent_years: float = 8.0
    n_folds: int = 4
    test_years: float = 4.0  # the walk-forward test span at the end of the recent window ...
    max_test_share: float = 0.5  # ... at most this share of the trainable span (a 5-year file tests on ~2 years)
    min_history_years: float = 2.0  # below this trainable span no honest walk-forward fits: refused, named
    # None: expanding folds (each trains on everything before its test block); a number of trading
    # days: sliding folds that train on that many days before the embargo only.
    train_window_days: int | None = None
    replay_weight: float = 3.0
    replay_max_share: float = 0.20
    archive_weight: float = 1.0
    # Trees and rounds chosen on the walk-forward out-of-fold predictions of a real training set
    # (33 stocks, recent 2008-2015 + archive, 91k rows; README "Model settings"): 60 trees score as
    # 100 (accuracy 0.439, log loss 1.061) in 63% of the time; 100 XGBoost rounds score better than
    # 150 (0.412 / 1.068 against 0.404 / 1.074) in 72% of the time; two training sets of `stockml run`
    # (to 2017-11) confirm both (benchmarks/model_settings.py).
    rf_trees: int = 60
    rf_max_depth: int = 8
    rf_min_samples_leaf: int = 50
    rf_max_samples: float = 0.5  # bootstrap half the rows per tree: 2x faster, more diverse trees ...
    # ... and never more than this many. On us-broad's 660k-row training set (benchmarks/model_settings.py,
    # README "Model settings") the 4 folds took 376 s uncapped, 93 s at 60,000 rows a tree and 45 s at
    # 30,000, at out-of-fold accuracy / log loss / rank IC 0.4438 / 1.0457 / 0.0088 uncapped, 0.4458 /
    # 1.0452 / 0.0083 and 0.4463 / 1.0451 / 0.0110: no worse. On the 33-stock sample's ~100k-row sets
    # the cap is like the 30% of rows a tree that scored 0.004 lower there (a breadth setting). None: no cap.
    rf_max_rows_per_tree: int | None = 30_000
    # 50 rounds at learning rate 0.1 on 64 bins: on us-broad's training set the 4 folds took 93 s
    # instead of 172 s (100 rounds, 0.05, 256 bins) at out-of-fold accuracy / log loss / rank IC 0.4383 /
    # 1.0471 / 0.0072 against 0.4358 / 1.0502 / 0.0040; the best of four variants tried on the same rows
    # (a small selection on the test folds), none of them worse than the old default by more than 0.002.
    xgb_rounds: int = 50
    xgb_max_depth: int = 4
    xgb_learning_rate: float = 0.1
    xgb_subsample: float = 0.8  # rows per tree
    xgb_colsample_bytree: float = 0.8  # features per tree
    xgb_max_bin: int = 64
    # At most this many training rows a fit (a uniform sample without replacement, seeded; every
    # out-of-fold row is still predicted). XGBoost's time follows its rows (us-broad's 660k-row set
    # is under the cap: unchanged); at 3,000 names x 8 years a fold holds 6M rows. None: no cap.
    xgb_max_rows: int | None = 1_000_000
    seed: int = 7
    n_jobs: int = 2


@dataclass(frozen=True)
class GateSettings:
    """Promotion thresholds: a candidate is promoted only on evidence of directional, cross-sectional skill.

    Accuracy is not the question: whether a volatility-scaled barrier is touched, or whether a name
    lands in the day's middle tercile, follows the volatility that the range features can judge, so
    accuracy criteria can be passed on a random walk. The gate asks what a quant asks of a signal: a
    daily rank IC above the best simple baseline's on the same rows, with a t-statistic corrected for
    the overlap of h-day returns, and a long / short decile book whose net Sharpe is positive and at
    least the best baseline's (``stockml_core.decisions.promotion``).
    """

    rank_ic_margin: float = 0.002  # candidate rank IC >= best baseline rank IC + margin (about half a standard error at 258 names)
    min_rank_ic_t: float = 2.0  # the candidate's rank IC t-statistic (overlap-corrected) at least this
    net_sharpe_margin: float = 0.0  # decile-book net Sharpe >= max(0, best baseline's) + margin
    crash_rank_ic_tolerance: float = 0.02  # crash-regime rank IC >= best baseline's there - tolerance ...
    min_crash_days: int = 20  # ... judged only with at least this many crash-regime days in the evaluation
    min_sector_accuracy: float = 0.30  # worst GICS sector's accuracy on the three classes (chance is 1/3)
    # Replay: on the previous cycle's confident mistakes replayed in training, the candidate's
    # repeat-error rate must be at most the champion's on the same samples minus this margin
    # (replay must help, not hurt); n/a without replayed samples or without a champion.
    min_replay_correction: float = 0.0
    # The candidate against production on the most recent scored days: on the last ``recent_days``
    # days where the published (champion's) predictions and the candidate's out-of-sample scores meet
    # and the forward return is known, the candidate's rank IC >= production's - tolerance. This, not a
    # ceiling on the drift score, decides whether a retrain made for a crash replaces the champion.
    recent_days: int = 60
    min_recent_days: int = 20  # fewer common days: not applicable (said so)
    recent_rank_ic_tolerance: float = 0.0
    max_rank_ic_drop: float = 0.005  # candidate rank IC >= champion's recorded rank IC - this


@dataclass(frozen=True)
class DriftSettings:
    """Drift windows (trading days), threshold calibration, score weights and the retraining policy.

    Chosen on the real sample 1990-2017 (``benchmarks/drift_policy.py``): a trigger 0-5 trading days
    after each of the 12 assessable crash onsets and none on quiet days. score_threshold is sensitive:
    0.455-0.47 give the same, 0.44-0.45 trigger 2 days before the 2000-04-14 onset, 0.48 misses
    1999-09-29. The correction state (below) is what catches 2008-01-08, whose 250-day reference already
    held the 2007 stress: any drawdown from -7% to -9% with a 20-day return at or below -4% does.
    """

    current_window: int = 5  # a week: short enough to react within 5 days of a crash onset
    reference_window: int = 250
    calibration_step: int = 5  # slide of the reference windows that calibrate each feature's threshold
    calibration_quantile: float = 0.9  # a feature drifts when its week is further than 90% of the reference's weeks
    ks_alpha: float = 0.01
    psi_bins: int = 10
    score_threshold: float = 0.46
    weight_features: float = 0.25  # share of the tested features that drifted
    weight_regime: float = 0.55  # total variation of the mix of market states (the regimes, plus correction)
    weight_predictions: float = 0.20  # without a champion the other two are renormalized (0.3125 / 0.6875)
    persistence_days: int = 3  # consecutive days at or above score_threshold before a retrain; also ends an episode
    cooldown_days: int = 20  # trading days after a trigger during which no other triggers
    # The regime part measures the mix of market states: the four regimes, with a `normal` day whose
    # S&P 500 is at least 8% below its running peak and at least 5% down over 20 trading days counted
    # as `correction` (a falling market the VIX has not caught up with yet, e.g. January 2008).
    correction_drawdown: float = -0.08
    correction_return_20d: float = -0.05


@dataclass(frozen=True)
class CaptureSettings:
    """When a new rare event is captured into the catalog (all must hold on the day)."""

    regime: str = "crash"  # the day's market regime
    vix_above: float = 40.0  # VIX close above this ...
    vix_days: int = 3  # ... on at least this many consecutive trading days ending on the day
    min_drift_score: float = 0.25  # the day's drift score above this
    # The event starts on the first day of the stress run that holds the day (consecutive days in
    # a crash or high-volatility regime) and ends on the capture day.


@dataclass(frozen=True)
class QualitySettings:
    """Quarantine limits and corporate-action detection on the price feed (``stockml_core.market.quality``).

    The limits tell a few bad prints (quarantined, the rest goes on) from a broken feed (the whole run
    is refused). A real 1.09M-row file (``us-broad``) has 25 bad rows (0.002%) on 24 days, never more
    than one a day; the S&P 500 5-year file 23 in 619,040. 0.1% of a run, or 1% of one day's tickers,
    is far above either and well below a feed that garbles a column or a day.
    """

    max_bad_share_run: float = 0.001  # refuse a run when more of its rows fail a row rule ...
    min_bad_rows: int = 5  # ... but always allow this many (a one-day run of 258 rows may carry a bad print)
    max_bad_share_day: float = 0.01  # refuse when more than this share of one day's tickers fail (at least 1 allowed)
    detect_corporate_actions: bool = True
    # Detection thresholds, checked on us-broad's 48 daily moves beyond +/-40% (crashes, takeovers, news):
    # none of them is flagged; the one suspect in its 1.09M rows is real (UNP 1996-10-16, -33% overnight on
    # 1.9x volume: the Union Pacific Resources spin-off, unadjusted); planted LNT-like prints and unadjusted
    # splits are flagged (tests/test_quality.py).
    # Looser reversal rules (|move| 0.35, 3 days, back within 10%) flagged seven real 2008 crisis
    # round trips (AIG, KEY, UNM, WYN, ...), and 2 days still AIG 2008-09-17 (-45%, +31%, +43%): a
    # bad print comes back the next day and almost exactly.
    reversal_move: float = 0.50  # |log move| (about -39% / +65%) ...
    reversal_days: int = 1  # ... undone within this many days ...
    reversal_back: float = 0.05  # ... to within 5% (log) of the close before the move
    split_tolerance: float = 0.03  # close / previous close and open / previous close within 3% of 1/k or k ...
    split_volume_band: float = 1.6  # ... and the next days' median volume x ratio within [1/1.6, 1.6] of the usual
    spinoff_gap: float = 0.30  # overnight gap down of at least 30% ...
    spinoff_max_intraday: float = 0.10  # ... with the session moving less than 10% ...
    spinoff_max_volume_ratio: float = 3.0  # ... on less than 3x the 20-day median volume


@dataclass(frozen=True)
class Settings:
    """Everything configurable about one StockML deployment."""

    data_dir: Path = field(default_factory=data_dir_from_env)
    home: Path = field(default_factory=home_from_env)
    tickers: tuple[str, ...] | None = None  # restrict the universe (tests, small runs)
    start: str | None = None  # restrict the history (ISO dates)
    end: str | None = None
    regimes: RegimeSettings = field(default_factory=RegimeSettings)
    labels: LabelSettings = field(default_factory=LabelSettings)
    training: TrainingSettings = field(default_factory=TrainingSettings)
    gate: GateSettings = field(default_factory=GateSettings)
    drift: DriftSettings = field(default_factory=DriftSettings)
    capture: CaptureSettings = field(default_factory=CaptureSettings)
    quality: QualitySettings = field(default_factory=QualitySettings)
    top_k: int = 5  # backtest: long top-k / short bottom-k
    cost_bps: float = 5.0  # backtest: cost per side in basis points
    replay_buffer_size: int = 1000
    # A delivered trading day left unprocessed this long (no failed run to blame) fails the freshness check
    # (stockml_assets/freshness.py): the daily schedule runs 18:30 New York, after the feed's close.
    freshness_overdue_hours: float = 6.0
    # A history run computes, checks and stores the features in blocks of trading days of about this
    # many rows (``features.block_days``: never under MAX_LOOKBACK // 2 days; each block's per-ticker stage in
    # groups of whole tickers of at most this many rows, look-back included): its memory follows the
    # block, not the panel. Measured at 375 names x 20 years (1.89M rows, features and their checks,
    # features.feature_blocks + check_or_fail in one process): 500k-row blocks 10.8 s and +2.85 GiB above the prices,
    # 250k 9.0 s and +1.97 GiB, 125k (the day floor binds) 9.9 s and +1.96 GiB; 3.8 GiB peak for 1M.
    feature_block_rows: int = 250_000

    @property
    def warehouse_path(self) -> Path:
        return self.home / "warehouse.duckdb"

    @property
    def artefact_dir(self) -> Path:
        return self.home / "models"

    @property
    def training_set_dir(self) -> Path:
        """The training set's float32 feature matrices (``stockml_core.storage.matrix_store``)."""
        return self.home / "training_sets"

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["data_dir"] = str(self.data_dir)
        d["home"] = str(self.home)
        return d


# ------------------------------------------------------------------------------------ profiles and overrides

# The ``fast`` profile (tests, quick looks; STOCKML_FAST=1): smaller models, three folds; never the default.
FAST_TRAINING = TrainingSettings(rf_trees=40, rf_max_depth=6, xgb_rounds=30, n_folds=3, test_years=3.0)
# The JSON overrides of the settings sections, one environment variable each (an unknown field is an error).
OVERRIDES_FROM_ENV = {
    "gate": "STOCKML_GATE",
    "training": "STOCKML_TRAINING",
    "quality": "STOCKML_QUALITY",
    "labels": "STOCKML_LABELS",
    "drift": "STOCKML_DRIFT",
}


def overrides_from_env(section: str) -> dict:
    """The JSON overrides of one settings section from its environment variable ({} when unset)."""
    import json

    env = OVERRIDES_FROM_ENV[section]
    if not os.environ.get(env):
        return {}
    try:
        return json.loads(os.environ[env])
    except json.JSONDecodeError as exc:
        raise ValueError(f"{env} is not JSON ({exc}); e.g. {env}='{{\"field\": value}}'") from None


def overridden(section, changes: dict, env: str):
    """``section`` (a settings dataclass) with ``changes`` applied; an unknown field names the known ones."""
    if not changes:
        return section
    known = set(type(section).__dataclass_fields__)
    unknown = set(changes) - known
    if unknown:
        raise ValueError(f"unknown {type(section).__name__} fields {sorted(unknown)} (from {env} or the resource config); known: {sorted(known)}")
    return replace(section, **changes)


# The drift windows size the drift assets' partition look-back, which Dagster fixes when the code loads:
# they come from STOCKML_DRIFT only. A deployment whose settings disagree would compute its windows on
# fewer days than it asked for, so it is refused (``check_load_time_drift``).
LOAD_TIME_DRIFT_FIELDS = ("current_window", "reference_window")


@functools.cache
def loaded_drift() -> DriftSettings:
    """DriftSettings with STOCKML_DRIFT applied, read once per process on first use (the partitions' import):
    what the code loads with (the partitions' drift look-back, the drift asset's and sensor's descriptions), the
    same route the resource's settings take. Read once, so a later change of STOCKML_DRIFT cannot make
    ``check_load_time_drift`` disagree with the look-back the partitions were built with."""
    return overridden(DriftSettings(), overrides_from_env("drift"), OVERRIDES_FROM_ENV["drift"])


def check_load_time_drift(drift: DriftSettings, loaded: DriftSettings | None = None) -> DriftSettings:
    """``drift``, if its windows are the ones the code loaded with (``loaded_drift``); else a ValueError naming
    the fields and the fix."""
    loaded = loaded or loaded_drift()
    wrong = {f: getattr(drift, f) for f in LOAD_TIME_DRIFT_FIELDS if getattr(drift, f) != getattr(loaded, f)}
    if wrong:
        said = ", ".join(f"{f} {v} (loaded with {getattr(loaded, f)})" for f, v in wrong.items())
        example = ", ".join(f'"{f}": {v}' for f, v in wrong.items())
        raise ValueError(
            f"drift windows cannot be set in the resource config: {said}; the partitions' look-back is fixed when the code "
            f"loads, so set them in STOCKML_DRIFT (e.g. STOCKML_DRIFT='{{{example}}}') and restart the code location"
        )
    return drift
