"""Pandera models: the one source of every table's schema, and its validation with named rows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from stockml_core.market.regimes import REGIMES
from stockml_core.modeling.labels import CLASS_NAMES

CLASS_LABELS = [0, 1, 2]
SIGNALS = list(CLASS_NAMES)


PROBABILITY_TOLERANCE = 1e-5  # class probabilities of a row must sum to 1 within this


def probabilities_off(proba) -> np.ndarray:
    """Rows (of an n x classes array) whose finite class probabilities do not sum to 1: the one rule the
    predictions' schema, their gate and the out-of-fold checks apply (rows with a NaN are not judged here)."""
    p = np.asarray(proba, dtype=float)
    finite = np.isfinite(p).all(axis=1)
    return finite & (np.abs(p.sum(axis=1) - 1.0) > PROBABILITY_TOLERANCE)


class MarketUniverseSchema(pa.DataFrameModel):
    """Tickers with name and GICS sector."""

    ticker: Series[str] = pa.Field(unique=True, str_length={"min_value": 1}, description="exchange ticker, one row each")
    name: Series[str] = pa.Field(description="company name (filled from the ticker, with a warning, where the file leaves it empty)")
    gics_sector: Series[str] = pa.Field(
        str_length={"min_value": 1}, description="GICS sector: the cross-sectional and sector-neutral features group by it"
    )


class RawPricesSchema(pa.DataFrameModel):
    """Daily OHLCV, one row per (ticker, date); impossible rows are rejected, never repaired."""

    ticker: Series[str] = pa.Field(description="exchange ticker")
    date: Series[pd.Timestamp] = pa.Field(description="NYSE trading day")
    open: Series[float] = pa.Field(gt=0, description="open price, split-adjusted as delivered (a corporate_actions.csv adjusts)")
    high: Series[float] = pa.Field(gt=0, description="session high")
    low: Series[float] = pa.Field(gt=0, description="session low")
    close: Series[float] = pa.Field(gt=0, description="close price")
    volume: Series[float] = pa.Field(ge=0, description="shares traded")

    class Config:
        unique = ["ticker", "date"]
        strict = True

    @pa.dataframe_check(error="high >= low")
    def high_not_below_low(cls, df: pd.DataFrame) -> Series[bool]:
        return df.high >= df.low

    @pa.dataframe_check(error="open and close inside [low, high]")
    def open_close_in_range(cls, df: pd.DataFrame) -> Series[bool]:
        return (df[["open", "close"]].max(axis=1) <= df.high) & (df[["open", "close"]].min(axis=1) >= df.low)

    @pa.dataframe_check(error="no future dates")
    def no_future_dates(cls, df: pd.DataFrame) -> Series[bool]:
        return df.date <= pd.Timestamp.now().normalize()


class QuarantinedPricesSchema(pa.DataFrameModel):
    """Price rows kept out of every model: one row per (input row, rule failed), with the values as read and the fix."""

    ticker: Series[str] = pa.Field(description="ticker as in the price file")
    date: Series[pd.Timestamp] = pa.Field(description="date as in the price file")
    rule: Series[str] = pa.Field(description="the row rule failed (stockml_core.market.quality.RULES)")
    detail: Series[str] = pa.Field(description="the values or evidence that fail it")
    fix: Series[str] = pa.Field(description="how to fix the row at its source")
    open: Series[float] = pa.Field(nullable=True, description="open as read (NaN: missing or not a number)")
    high: Series[float] = pa.Field(nullable=True, description="high as read")
    low: Series[float] = pa.Field(nullable=True, description="low as read")
    close: Series[float] = pa.Field(nullable=True, description="close as read")
    volume: Series[float] = pa.Field(nullable=True, description="volume as read")
    source_row: Series[int] = pa.Field(ge=0, description="data line of the price file (0 = first line after the header)")


class MarketContextSchema(pa.DataFrameModel):
    """S&P 500, VIX and 10-year yield per NYSE trading day (S&P OHLV may be empty, see repairs)."""

    date: Series[pd.Timestamp] = pa.Field(unique=True, description="NYSE trading day")
    spx_open: Series[float] = pa.Field(nullable=True, gt=0, description="S&P 500 open (empty where the source has none)")
    spx_high: Series[float] = pa.Field(nullable=True, gt=0, description="S&P 500 high")
    spx_low: Series[float] = pa.Field(nullable=True, gt=0, description="S&P 500 low")
    spx_close: Series[float] = pa.Field(gt=0, description="S&P 500 close")
    spx_volume: Series[float] = pa.Field(nullable=True, ge=0, description="S&P 500 volume")
    vix_open: Series[float] = pa.Field(gt=0, description="VIX open")
    vix_high: Series[float] = pa.Field(gt=0, description="VIX high")
    vix_low: Series[float] = pa.Field(gt=0, description="VIX low")
    vix_close: Series[float] = pa.Field(gt=0, description="VIX close")
    dgs10: Series[float] = pa.Field(description="10-year Treasury yield, percent (FRED DGS10, last value carried to the trading day)")

    @pa.dataframe_check(error="VIX high >= low")
    def vix_range(cls, df: pd.DataFrame) -> Series[bool]:
        return df.vix_high >= df.vix_low

    @pa.dataframe_check(error="no future dates")
    def no_future_dates(cls, df: pd.DataFrame) -> Series[bool]:
        return df.date <= pd.Timestamp.now().normalize()


class MarketRegimesSchema(pa.DataFrameModel):
    date: Series[pd.Timestamp] = pa.Field(unique=True, description="NYSE trading day")
    regime: Series[str] = pa.Field(isin=list(REGIMES), description="market regime on the day, from data up to it (stockml_core.market.regimes)")
    vix_close: Series[float] = pa.Field(gt=0, description="VIX close the regime read")
    spx_drawdown: Series[float] = pa.Field(le=0, ge=-1, description="S&P 500 close against its running peak, minus 1 (0 = at the peak)")
    spx_return_20d: Series[float] = pa.Field(description="S&P 500 return over the last 20 trading days")


class RareEventCatalogSchema(pa.DataFrameModel):
    name: Series[str] = pa.Field(unique=True, description="event name")
    start: Series[pd.Timestamp] = pa.Field(description="first day of the event window")
    end: Series[pd.Timestamp] = pa.Field(description="last day of the event window")
    description: Series[str] = pa.Field(description="what happened")
    source: Series[str] = pa.Field(
        isin=["historical", "captured"], description="historical (rare_events.csv) or captured (found by the rare-event watch)"
    )
    trading_days: Series[int] = pa.Field(ge=0, description="NYSE trading days in the window with market data")

    @pa.dataframe_check(error="end >= start")
    def window_ordered(cls, df: pd.DataFrame) -> Series[bool]:
        return df.end >= df.start


class RareEventArchiveSchema(pa.DataFrameModel):
    ticker: Series[str] = pa.Field(description="exchange ticker")
    date: Series[pd.Timestamp] = pa.Field(description="trading day inside an event window")
    event: Series[str] = pa.Field(description="the catalogued event whose window holds the day")
    label: Series[float] = pa.Field(isin=CLASS_LABELS, description="the row's class: 0 down, 1 flat, 2 up")

    class Config:
        unique = ["ticker", "date"]


class LabelsSchema(pa.DataFrameModel):
    ticker: Series[str] = pa.Field(description="exchange ticker")
    date: Series[pd.Timestamp] = pa.Field(description="trading day the label is attached to (its features use data up to it)")
    past_return: Series[float] = pa.Field(nullable=True, description="return over the horizon up to the date (known at the date)")
    fwd_return: Series[float] = pa.Field(
        nullable=True, description="return from the close of the date over the label horizon (the future the label describes)"
    )
    excess_return: Series[float] = pa.Field(nullable=True, description="forward return minus the market's (or the sector's) on the same days")
    target_rank: Series[float] = pa.Field(
        nullable=True, gt=0, le=1, description="percentile of the target return among the date's tickers (tercile targets)"
    )
    vol_scale: Series[float] = pa.Field(nullable=True, gt=0, description="volatility that scales the barriers (triple-barrier target)")
    label: Series[float] = pa.Field(
        nullable=True, isin=CLASS_LABELS, description="class: 0 down, 1 flat, 2 up (NaN: the horizon runs past the data or spans a quarantined day)"
    )
    barrier_day: Series[float] = pa.Field(nullable=True, ge=1, description="trading day on which a barrier was first touched (triple-barrier target)")

    class Config:
        unique = ["ticker", "date"]


class TrainingSetSchema(pa.DataFrameModel):
    ticker: Series[str] = pa.Field(description="exchange ticker")
    date: Series[pd.Timestamp] = pa.Field(description="trading day of the row")
    sector: Series[str] = pa.Field(description="GICS sector")
    regime: Series[str] = pa.Field(isin=list(REGIMES), description="market regime on the date")
    label: Series[int] = pa.Field(isin=CLASS_LABELS, description="class: 0 down, 1 flat, 2 up")
    source: Series[str] = pa.Field(
        isin=["recent", "archive", "replay"], description="recent (the training window), archive (a rare-event window) or replay (a replayed mistake)"
    )
    weight: Series[float] = pa.Field(gt=0, description="sample weight in the fits (archive and replay rows are up-weighted)")

    class Config:
        unique = ["ticker", "date"]


class ValidationReportSchema(pa.DataFrameModel):
    scope: Series[str] = pa.Field(
        isin=["overall", "regime", "sector", "symbol", "fold", "year", "source"],
        description="what the metric is grouped by: overall, regime, sector, symbol, fold, year or source",
    )
    group: Series[str] = pa.Field(description="the group's value (e.g. the regime's name; all for overall)")
    model: Series[str] = pa.Field(description="candidate, its parts (rf, xgb) or a baseline")
    metric: Series[str] = pa.Field(description="metric name (rank_ic, rank_ic_t, accuracy, auc_direction, ...)")
    value: Series[float] = pa.Field(nullable=True, description="the metric, out-of-sample on the purged walk-forward test blocks")


class BacktestReportSchema(pa.DataFrameModel):
    date: Series[pd.Timestamp] = pa.Field(unique=True, description="trading day")
    strategy_return: Series[float] = pa.Field(description="long top-k / short bottom-k return of the day, net of costs")
    buy_and_hold_return: Series[float] = pa.Field(description="equal-weight buy-and-hold return of the day")
    turnover: Series[float] = pa.Field(ge=0, description="sum of absolute weight changes of the day")
    strategy_equity: Series[float] = pa.Field(gt=0, description="strategy equity, starting at 1")
    buy_and_hold_equity: Series[float] = pa.Field(gt=0, description="buy-and-hold equity, starting at 1")


class ShapValuesSchema(pa.DataFrameModel):
    model_version: Series[str] = pa.Field(description="registry version explained")
    sample: Series[str] = pa.Field(
        isin=["latest", "validation"], description="latest (the last date's rows) or validation (a sample of out-of-sample rows)"
    )
    base_model: Series[str] = pa.Field(isin=["rf", "xgb"], description="rf or xgb: the base model explained")
    ticker: Series[str] = pa.Field(description="exchange ticker")
    date: Series[pd.Timestamp] = pa.Field(description="trading day of the row")
    regime: Series[str] = pa.Field(description="market regime on the date")
    feature_name: Series[str] = pa.Field(description="feature")
    shap_value: Series[float] = pa.Field(description="SHAP value of the feature for the row's up-minus-down margin")


class ShapImportanceSchema(pa.DataFrameModel):
    model_version: Series[str] = pa.Field(description="registry version explained")
    regime: Series[str] = pa.Field(description="all, or one regime")
    feature_name: Series[str] = pa.Field(description="feature")
    importance_score: Series[float] = pa.Field(ge=0, description="mean absolute SHAP value, normalised to sum to 1 within the regime")
    rank: Series[int] = pa.Field(ge=1, description="1 = most important")


class PromotionDecisionSchema(pa.DataFrameModel):
    candidate_version: Series[str] = pa.Field(description="registry version judged")
    name: Series[str] = pa.Field(description="criterion")
    value: Series[float] = pa.Field(nullable=True, description="the candidate's value (NaN only when not applicable)")
    op: Series[str] = pa.Field(isin=[">=", "<="], description="how value must compare to threshold")
    threshold: Series[float] = pa.Field(nullable=True, description="the bound the value must meet")
    passed: Series[bool] = pa.Field(description="the criterion passed (not-applicable criteria pass)")
    detail: Series[str] = pa.Field(description="the evidence behind the numbers, or why the criterion does not apply")
    applicable: Series[bool] = pa.Field(
        description="False where the evidence does not exist (no champion, no crash days, ...): it passes, detail says why"
    )
    outcome: Series[str] = pa.Field(isin=["pass", "fail", "not applicable"], description="pass, fail or not applicable: what a reader is shown")
    promoted: Series[bool] = pa.Field(description="the verdict: every criterion passed")


class ProductionModelSchema(pa.DataFrameModel):
    version: Series[str] = pa.Field(description="the champion's registry version")
    sha256: Series[str] = pa.Field(str_length=64, description="content hash of its artefact, verified before every load")
    champion_since: Series[pd.Timestamp] = pa.Field(description="when it became champion (UTC)")
    action: Series[str] = pa.Field(description="how: promote (the gate), rollback or override")
    actor: Series[str] = pa.Field(description="who: promotion_gate or the operator named")
    reason: Series[str] = pa.Field(description="why, as recorded")


class PredictionsSchema(pa.DataFrameModel):
    ticker: Series[str] = pa.Field(description="exchange ticker")
    date: Series[pd.Timestamp] = pa.Field(description="trading day predicted from (the horizon runs after it)")
    model_version: Series[str] = pa.Field(description="the champion that predicted")
    regime: Series[str] = pa.Field(description="market regime on the date")
    p_down: Series[float] = pa.Field(ge=0, le=1, description="probability of class down")
    p_flat: Series[float] = pa.Field(ge=0, le=1, description="probability of class flat")
    p_up: Series[float] = pa.Field(ge=0, le=1, description="probability of class up")
    signal: Series[str] = pa.Field(isin=SIGNALS, description="the most probable class")
    confidence: Series[float] = pa.Field(ge=0, le=1, description="probability of the signal")
    # The 3 features that moved the champion's XGBoost part's up-minus-down margin most, with their SHAP
    # values ("ret_5 -0.0410; volatility_60 +0.0220; ..."; explain.top_contributions)
    top_features: Series[str] = pa.Field(
        str_length={"min_value": 1},
        description="the 3 features that moved the champion's XGBoost part's up-minus-down margin most, with their SHAP values",
    )

    @pa.dataframe_check(error="class probabilities sum to 1")
    def probabilities_sum_to_one(cls, df: pd.DataFrame) -> Series[bool]:
        return pd.Series(~probabilities_off(df[[f"p_{name}" for name in CLASS_NAMES]].to_numpy()), index=df.index)

    class Config:
        unique = ["ticker", "date"]  # one prediction per ticker and trading day (a range run holds several days)


class FeatureDriftSchema(pa.DataFrameModel):
    """Per day and feature: ``stockml_core.decisions.drift.feature_drift`` (NaN statistics: not testable)."""

    date: Series[pd.Timestamp] = pa.Field(description="trading day measured")
    feature: Series[str] = pa.Field(description="feature")
    wasserstein: Series[float] = pa.Field(
        nullable=True, ge=0, description="Wasserstein-1 distance, current window vs reference, normalised by the reference's spread"
    )
    threshold: Series[float] = pa.Field(nullable=True, gt=0, description="the distance the reference's own windows reach at the calibration quantile")
    effect: Series[float] = pa.Field(nullable=True, ge=0, description="wasserstein / threshold: above 1 is unusual")
    ks_statistic: Series[float] = pa.Field(nullable=True, ge=0, le=1, description="two-sample Kolmogorov-Smirnov statistic")
    p_value: Series[float] = pa.Field(nullable=True, ge=0, le=1, description="KS p-value")
    p_value_bh: Series[float] = pa.Field(nullable=True, ge=0, le=1, description="KS p-value, Benjamini-Hochberg adjusted across features")
    psi: Series[float] = pa.Field(nullable=True, ge=0, description="population stability index")
    mean_shift: Series[float] = pa.Field(nullable=True, description="current mean minus reference mean, in reference standard deviations")
    n_reference: Series[int] = pa.Field(ge=0, description="rows in the reference window")
    n_current: Series[int] = pa.Field(ge=0, description="rows in the current window")
    drifted: Series[bool] = pa.Field(description="beyond its threshold and significant after BH")

    class Config:
        unique = ["date", "feature"]


class MixDriftSchema(pa.DataFrameModel):
    date: Series[pd.Timestamp] = pa.Field(description="trading day measured")
    category: Series[str] = pa.Field(description="a market state (regime_drift) or a predicted class (prediction_drift)")
    reference_share: Series[float] = pa.Field(ge=0, le=1, description="share in the reference window")
    current_share: Series[float] = pa.Field(ge=0, le=1, description="share in the current window")
    change: Series[float] = pa.Field(ge=-1, le=1, description="current share minus reference share")

    class Config:
        unique = ["date", "category"]


class RareEventWatchSchema(pa.DataFrameModel):
    date: Series[pd.Timestamp] = pa.Field(unique=True, description="trading day watched")
    candidate: Series[str] = pa.Field(  # the new event's name, or "" when the conditions do not hold
        description="the new event's name, or empty when the conditions do not hold"
    )
    start: Series[pd.Timestamp] = pa.Field(nullable=True, description="the candidate window's first day")
    end: Series[pd.Timestamp] = pa.Field(nullable=True, description="the candidate window's last day")
    drift_score: Series[float] = pa.Field(nullable=True, ge=0, le=1, description="the day's drift score")
    reason: Series[str] = pa.Field(description="why the conditions hold or not")


class DriftReportSchema(pa.DataFrameModel):
    """Per day: the feature, regime and prediction components and the overall score, all in [0, 1]."""

    date: Series[pd.Timestamp] = pa.Field(description="trading day measured")
    component: Series[str] = pa.Field(isin=["features", "regime", "predictions", "overall"], description="features, regime, predictions or overall")
    value: Series[float] = pa.Field(  # NaN: no champion, no prediction part
        nullable=True, ge=0, le=1 + 1e-9, description="the component's drift in [0, 1] (NaN: no champion, no prediction part)"
    )
    weight: Series[float] = pa.Field(ge=0, le=1, description="the component's weight in the overall score")
    detail: Series[str] = pa.Field(description="what the component measured, and for overall the retraining rule")

    class Config:
        unique = ["date", "component"]


class ErrorReplayBufferSchema(pa.DataFrameModel):
    ticker: Series[str] = pa.Field(description="exchange ticker")
    date: Series[pd.Timestamp] = pa.Field(description="trading day of the mistake")
    regime: Series[str] = pa.Field(description="market regime on the date")
    sector: Series[str] = pa.Field(description="GICS sector")
    label: Series[int] = pa.Field(isin=CLASS_LABELS, description="the true class")
    predicted: Series[int] = pa.Field(isin=CLASS_LABELS, description="the class the candidate predicted out-of-sample")
    confidence: Series[float] = pa.Field(ge=0, le=1, description="the candidate's probability of its wrong class")
    error_score: Series[float] = pa.Field(ge=0, le=1, description="how confidently wrong (ranks the buffer)")
    replay_count: Series[int] = pa.Field(ge=0, description="training cycles that replayed the row")

    class Config:
        unique = ["ticker", "date"]


class SectorPerformanceSchema(pa.DataFrameModel):
    scope: Series[str] = pa.Field(isin=["sector_regime", "sector", "symbol"], description="sector_regime, sector or symbol")
    sector: Series[str] = pa.Field(description="GICS sector")
    regime: Series[str] = pa.Field(description="market regime (all where the scope has none)")
    ticker: Series[str] = pa.Field(description="exchange ticker (all where the scope has none)")
    accuracy: Series[float] = pa.Field(ge=0, le=1, description="out-of-sample accuracy of the candidate")
    n: Series[int] = pa.Field(gt=0, description="rows scored")


class TrainingRunsSchema(pa.DataFrameModel):
    run_id: Series[str] = pa.Field(description="Dagster run id of the training cycle")
    recorded_at: Series[pd.Timestamp] = pa.Field(description="when the cycle was recorded (UTC)")
    trigger: Series[str] = pa.Field(
        isin=["scheduled", "drift", "new_event", "manual"], description="what started it: scheduled, drift, new_event or manual"
    )
    samples: Series[int] = pa.Field(ge=0, description="training rows")
    candidate_version: Series[str] = pa.Field(nullable=True, description="the registered candidate (empty if the cycle failed before)")
    accuracy: Series[float] = pa.Field(nullable=True, description="candidate's out-of-sample accuracy")
    balanced_accuracy: Series[float] = pa.Field(nullable=True, description="candidate's out-of-sample balanced accuracy")
    metrics: Series[str] = pa.Field(  # JSON: every out-of-sample metric of the candidate
        nullable=True, description="every out-of-sample metric of the candidate, as JSON"
    )
    promoted: Series[bool] = pa.Field(description="the gate promoted it")
    error: Series[str] = pa.Field(nullable=True, description="why the cycle failed, if it did")


def feature_matrix_schema(feature_names: list[str], definitions: dict[str, str] | None = None) -> type[pa.DataFrameModel]:
    """The feature_matrix model, generated from the feature registry (one float column each, described by
    its registry definition)."""
    definitions = definitions or {}
    annotations = {"ticker": Series[str], "date": Series[pd.Timestamp]}
    namespace: dict = {
        "__doc__": "One row per (ticker, date); one float32 column per registered feature.",
        "ticker": pa.Field(description="exchange ticker"),
        "date": pa.Field(description="trading day: every feature uses data up to it"),
    }
    for name in feature_names:
        annotations[name] = Series[np.float32]
        namespace[name] = pa.Field(nullable=True, description=definitions.get(name))
    namespace["__annotations__"] = annotations
    namespace["Config"] = type("Config", (), {"unique": ["ticker", "date"], "strict": True})
    return type("FeatureMatrixSchema", (pa.DataFrameModel,), namespace)


@dataclass(frozen=True)
class Validation:
    """The outcome of validating one table: failure cases with the offending rows named."""

    table: str
    n_rows: int
    failures: pd.DataFrame  # check, column, failure_case, ticker, date, row

    @property
    def passed(self) -> bool:
        return self.failures.empty

    def summary(self, limit: int = 5) -> str:
        if self.passed:
            return f"{self.table}: {self.n_rows} rows valid"
        parts = []
        for check, grp in self.failures.groupby("check", sort=False):
            where = ", ".join(_where(r) for r in grp.head(limit).itertuples())
            parts.append(f"{len(grp)} rows fail '{check}' ({where}{', ...' if len(grp) > limit else ''})")
        return f"{self.table}: " + "; ".join(parts)


def _where(r) -> str:
    bits = [
        str(r.ticker) if isinstance(r.ticker, str) and r.ticker else "",
        f"{pd.Timestamp(r.date):%Y-%m-%d}" if pd.notna(r.date) else "",
        "" if (isinstance(r.ticker, str) and r.ticker) or pd.notna(r.date) else f"row {r.row}",
    ]
    col = (
        f" {r.column}={r.failure_case}"
        if isinstance(r.column, str) and r.column not in ("", "None", "nan") and r.failure_case is not None and str(r.failure_case) != "nan"
        else ""
    )
    return " ".join(b for b in bits if b) + col


def columns(model: type[pa.DataFrameModel]) -> list[str]:
    """A Pandera model's column names in their order: the one list of a table's columns."""
    return list(model.to_schema().columns)


FAILURE_COLUMNS = ["check", "column", "failure_case", "ticker", "date", "row"]


def validate(table: str, df: pd.DataFrame, model: type[pa.DataFrameModel]) -> Validation:
    """Validate lazily and name each failing row by ticker and date where the table has them.

    A non-strict model without table-wide checks sees only its own columns: Pandera's validation copies
    what it is given, and a training set's 223 float32 feature columns (a gigabyte) are none of its business.
    """
    schema = model.to_schema()
    own = [c for c in schema.columns if c in df.columns]
    checked = (
        df[own] if not schema.strict and not schema.checks and not any(c.regex for c in schema.columns.values()) and len(own) < df.shape[1] else df
    )
    try:
        model.validate(checked, lazy=True)
        return Validation(table, len(df), pd.DataFrame(columns=FAILURE_COLUMNS))
    except (pa.errors.SchemaErrors, pa.errors.SchemaError) as err:
        fc = getattr(err, "failure_cases", None)
        if fc is None:
            fc = pd.DataFrame({"check": [str(err)], "column": [None], "failure_case": [None], "index": [None]})
        fc = fc.reset_index(drop=True)
        idx = pd.to_numeric(fc["index"], errors="coerce")
        valid = idx.notna() & idx.isin(df.index)
        tickers = pd.Series([None] * len(fc), dtype=object)
        dates = pd.Series([pd.NaT] * len(fc), dtype="datetime64[ns]")
        if "ticker" in df and valid.any():
            tickers[valid] = df.loc[idx[valid].astype(int), "ticker"].to_numpy()
        if "date" in df and valid.any():
            dates[valid] = pd.to_datetime(df.loc[idx[valid].astype(int), "date"]).to_numpy()
        out = pd.DataFrame(
            {
                "check": fc["check"].astype(str),
                "column": fc["column"].astype(str),
                "failure_case": fc["failure_case"].astype(str),
                "ticker": tickers,
                "date": dates,
                "row": idx,
            }
        )
        # A dataframe-level check reports one case per column of a failing row: keep one per row,
        # with no column named (the whole row fails).
        per_row = out.groupby(["check", "row"], dropna=False).column.transform("size")
        out.loc[per_row > 1, ["column", "failure_case"]] = ["", "row-wide check"]
        dup = out.check.str.contains("uniqueness")
        out.loc[dup, ["column", "failure_case"]] = ["", "duplicate (ticker, date)"]
        out = out.drop_duplicates(subset=["check", "row"]) if valid.any() else out
        return Validation(table, len(df), out.reset_index(drop=True))
