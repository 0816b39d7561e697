"""Pandera models: the one source of every table's schema, and its validation with named rows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from stockml_core.regimes import REGIMES

CLASS_LABELS = [0, 1, 2]
SIGNALS = ["down", "flat", "up"]


class MarketUniverseSchema(pa.DataFrameModel):
    """Tickers with name and GICS sector."""

    ticker: Series[str] = pa.Field(unique=True, str_length={"min_value": 1})
    name: Series[str]
    gics_sector: Series[str] = pa.Field(str_length={"min_value": 1})


class RawPricesSchema(pa.DataFrameModel):
    """Daily OHLCV, one row per (ticker, date); impossible rows are rejected, never repaired."""

    ticker: Series[str]
    date: Series[pd.Timestamp]
    open: Series[float] = pa.Field(gt=0)
    high: Series[float] = pa.Field(gt=0)
    low: Series[float] = pa.Field(gt=0)
    close: Series[float] = pa.Field(gt=0)
    volume: Series[float] = pa.Field(ge=0)

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
    rule: Series[str] = pa.Field(description="the row rule failed (stockml_core.quality.RULES)")
    detail: Series[str] = pa.Field(description="the values or evidence that fail it")
    fix: Series[str] = pa.Field(description="how to fix the row at its source")
    open: Series[float] = pa.Field(nullable=True)
    high: Series[float] = pa.Field(nullable=True)
    low: Series[float] = pa.Field(nullable=True)
    close: Series[float] = pa.Field(nullable=True)
    volume: Series[float] = pa.Field(nullable=True)
    source_row: Series[int] = pa.Field(ge=0, description="data line of the price file (0 = first line after the header)")


class MarketContextSchema(pa.DataFrameModel):
    """S&P 500, VIX and 10-year yield per NYSE trading day (S&P OHLV may be empty, see repairs)."""

    date: Series[pd.Timestamp] = pa.Field(unique=True)
    spx_open: Series[float] = pa.Field(nullable=True, gt=0)
    spx_high: Series[float] = pa.Field(nullable=True, gt=0)
    spx_low: Series[float] = pa.Field(nullable=True, gt=0)
    spx_close: Series[float] = pa.Field(gt=0)
    spx_volume: Series[float] = pa.Field(nullable=True, ge=0)
    vix_open: Series[float] = pa.Field(gt=0)
    vix_high: Series[float] = pa.Field(gt=0)
    vix_low: Series[float] = pa.Field(gt=0)
    vix_close: Series[float] = pa.Field(gt=0)
    dgs10: Series[float]

    @pa.dataframe_check(error="VIX high >= low")
    def vix_range(cls, df: pd.DataFrame) -> Series[bool]:
        return df.vix_high >= df.vix_low

    @pa.dataframe_check(error="no future dates")
    def no_future_dates(cls, df: pd.DataFrame) -> Series[bool]:
        return df.date <= pd.Timestamp.now().normalize()


class MarketRegimesSchema(pa.DataFrameModel):
    date: Series[pd.Timestamp] = pa.Field(unique=True)
    regime: Series[str] = pa.Field(isin=list(REGIMES))
    vix_close: Series[float] = pa.Field(gt=0)
    spx_drawdown: Series[float] = pa.Field(le=0, ge=-1)
    spx_return_20d: Series[float]


class RareEventCatalogSchema(pa.DataFrameModel):
    name: Series[str] = pa.Field(unique=True)
    start: Series[pd.Timestamp]
    end: Series[pd.Timestamp]
    description: Series[str]
    source: Series[str] = pa.Field(isin=["historical", "captured"])
    trading_days: Series[int] = pa.Field(ge=0)

    @pa.dataframe_check(error="end >= start")
    def window_ordered(cls, df: pd.DataFrame) -> Series[bool]:
        return df.end >= df.start


class RareEventArchiveSchema(pa.DataFrameModel):
    ticker: Series[str]
    date: Series[pd.Timestamp]
    event: Series[str]
    label: Series[float] = pa.Field(isin=CLASS_LABELS)

    class Config:
        unique = ["ticker", "date"]


class LabelsSchema(pa.DataFrameModel):
    ticker: Series[str]
    date: Series[pd.Timestamp]
    past_return: Series[float] = pa.Field(nullable=True)
    fwd_return: Series[float] = pa.Field(nullable=True)
    excess_return: Series[float] = pa.Field(nullable=True)
    target_rank: Series[float] = pa.Field(nullable=True, gt=0, le=1)
    vol_scale: Series[float] = pa.Field(nullable=True, gt=0)
    label: Series[float] = pa.Field(nullable=True, isin=CLASS_LABELS)
    barrier_day: Series[float] = pa.Field(nullable=True, ge=1)

    class Config:
        unique = ["ticker", "date"]


class TrainingSetSchema(pa.DataFrameModel):
    ticker: Series[str]
    date: Series[pd.Timestamp]
    sector: Series[str]
    regime: Series[str] = pa.Field(isin=list(REGIMES))
    label: Series[int] = pa.Field(isin=CLASS_LABELS)
    source: Series[str] = pa.Field(isin=["recent", "archive", "replay"])
    weight: Series[float] = pa.Field(gt=0)

    class Config:
        unique = ["ticker", "date"]


class ValidationReportSchema(pa.DataFrameModel):
    scope: Series[str] = pa.Field(isin=["overall", "regime", "sector", "symbol", "fold", "year", "source"])
    group: Series[str]
    model: Series[str]
    metric: Series[str]
    value: Series[float] = pa.Field(nullable=True)


class BacktestReportSchema(pa.DataFrameModel):
    date: Series[pd.Timestamp] = pa.Field(unique=True)
    strategy_return: Series[float]
    buy_and_hold_return: Series[float]
    turnover: Series[float] = pa.Field(ge=0)
    strategy_equity: Series[float] = pa.Field(gt=0)
    buy_and_hold_equity: Series[float] = pa.Field(gt=0)


class ShapValuesSchema(pa.DataFrameModel):
    model_version: Series[str]
    sample: Series[str] = pa.Field(isin=["latest", "validation"])
    base_model: Series[str] = pa.Field(isin=["rf", "xgb"])
    ticker: Series[str]
    date: Series[pd.Timestamp]
    regime: Series[str]
    feature_name: Series[str]
    shap_value: Series[float]


class ShapImportanceSchema(pa.DataFrameModel):
    model_version: Series[str]
    regime: Series[str]
    feature_name: Series[str]
    importance_score: Series[float] = pa.Field(ge=0)
    rank: Series[int] = pa.Field(ge=1)


class PromotionDecisionSchema(pa.DataFrameModel):
    candidate_version: Series[str]
    name: Series[str]
    value: Series[float] = pa.Field(nullable=True)
    op: Series[str] = pa.Field(isin=[">=", "<="])
    threshold: Series[float] = pa.Field(nullable=True)
    passed: Series[bool]
    detail: Series[str]
    applicable: Series[bool]  # False: the evidence does not exist (passes; detail says why)
    outcome: Series[str] = pa.Field(isin=["pass", "fail", "not applicable"])
    promoted: Series[bool]


class ProductionModelSchema(pa.DataFrameModel):
    version: Series[str]
    sha256: Series[str] = pa.Field(str_length=64)
    champion_since: Series[pd.Timestamp]
    action: Series[str]
    actor: Series[str]
    reason: Series[str]


class PredictionsSchema(pa.DataFrameModel):
    ticker: Series[str]
    date: Series[pd.Timestamp]
    model_version: Series[str]
    regime: Series[str]
    p_down: Series[float] = pa.Field(ge=0, le=1)
    p_flat: Series[float] = pa.Field(ge=0, le=1)
    p_up: Series[float] = pa.Field(ge=0, le=1)
    signal: Series[str] = pa.Field(isin=SIGNALS)
    confidence: Series[float] = pa.Field(ge=0, le=1)
    # The 3 features that moved the champion's XGBoost part's up-minus-down margin most, with their SHAP
    # values ("ret_5 -0.0410; volatility_60 +0.0220; ..."; explain.top_contributions)
    top_features: Series[str] = pa.Field(str_length={"min_value": 1})

    @pa.dataframe_check(error="class probabilities sum to 1")
    def probabilities_sum_to_one(cls, df: pd.DataFrame) -> Series[bool]:
        return (df[["p_down", "p_flat", "p_up"]].sum(axis=1) - 1).abs() < 1e-6

    class Config:
        unique = ["ticker", "date"]  # one prediction per ticker and trading day (a range run holds several days)


class FeatureDriftSchema(pa.DataFrameModel):
    """Per day and feature: ``stockml_core.drift.feature_drift`` (NaN statistics: not testable)."""

    date: Series[pd.Timestamp]
    feature: Series[str]
    wasserstein: Series[float] = pa.Field(nullable=True, ge=0)
    threshold: Series[float] = pa.Field(nullable=True, gt=0)
    effect: Series[float] = pa.Field(nullable=True, ge=0)
    ks_statistic: Series[float] = pa.Field(nullable=True, ge=0, le=1)
    p_value: Series[float] = pa.Field(nullable=True, ge=0, le=1)
    p_value_bh: Series[float] = pa.Field(nullable=True, ge=0, le=1)
    psi: Series[float] = pa.Field(nullable=True, ge=0)
    mean_shift: Series[float] = pa.Field(nullable=True)
    n_reference: Series[int] = pa.Field(ge=0)
    n_current: Series[int] = pa.Field(ge=0)
    drifted: Series[bool]

    class Config:
        unique = ["date", "feature"]


class MixDriftSchema(pa.DataFrameModel):
    date: Series[pd.Timestamp]
    category: Series[str]
    reference_share: Series[float] = pa.Field(ge=0, le=1)
    current_share: Series[float] = pa.Field(ge=0, le=1)
    change: Series[float] = pa.Field(ge=-1, le=1)

    class Config:
        unique = ["date", "category"]


class RareEventWatchSchema(pa.DataFrameModel):
    date: Series[pd.Timestamp] = pa.Field(unique=True)
    candidate: Series[str]  # the new event's name, or "" when the conditions do not hold
    start: Series[pd.Timestamp] = pa.Field(nullable=True)
    end: Series[pd.Timestamp] = pa.Field(nullable=True)
    drift_score: Series[float] = pa.Field(nullable=True, ge=0, le=1)
    reason: Series[str]


class DriftReportSchema(pa.DataFrameModel):
    """Per day: the feature, regime and prediction components and the overall score, all in [0, 1]."""

    date: Series[pd.Timestamp]
    component: Series[str] = pa.Field(isin=["features", "regime", "predictions", "overall"])
    value: Series[float] = pa.Field(nullable=True, ge=0, le=1 + 1e-9)  # NaN: no champion, no prediction part
    weight: Series[float] = pa.Field(ge=0, le=1)
    detail: Series[str]

    class Config:
        unique = ["date", "component"]


class ErrorReplayBufferSchema(pa.DataFrameModel):
    ticker: Series[str]
    date: Series[pd.Timestamp]
    regime: Series[str]
    sector: Series[str]
    label: Series[int] = pa.Field(isin=CLASS_LABELS)
    predicted: Series[int] = pa.Field(isin=CLASS_LABELS)
    confidence: Series[float] = pa.Field(ge=0, le=1)
    error_score: Series[float] = pa.Field(ge=0, le=1)
    replay_count: Series[int] = pa.Field(ge=0)

    class Config:
        unique = ["ticker", "date"]


class SectorPerformanceSchema(pa.DataFrameModel):
    scope: Series[str] = pa.Field(isin=["sector_regime", "sector", "symbol"])
    sector: Series[str]
    regime: Series[str]
    ticker: Series[str]
    accuracy: Series[float] = pa.Field(ge=0, le=1)
    n: Series[int] = pa.Field(gt=0)


class TrainingRunsSchema(pa.DataFrameModel):
    run_id: Series[str]
    recorded_at: Series[pd.Timestamp]
    trigger: Series[str] = pa.Field(isin=["scheduled", "drift", "new_event", "manual"])
    samples: Series[int] = pa.Field(ge=0)
    candidate_version: Series[str] = pa.Field(nullable=True)
    accuracy: Series[float] = pa.Field(nullable=True)
    balanced_accuracy: Series[float] = pa.Field(nullable=True)
    metrics: Series[str] = pa.Field(nullable=True)  # JSON: every out-of-sample metric of the candidate
    promoted: Series[bool]
    error: Series[str] = pa.Field(nullable=True)


def feature_matrix_schema(feature_names: list[str]) -> type[pa.DataFrameModel]:
    """The feature_matrix model, generated from the feature registry (one float column each)."""
    annotations = {"ticker": Series[str], "date": Series[pd.Timestamp]}
    namespace: dict = {"__doc__": "One row per (ticker, date); one float32 column per registered feature."}
    for name in feature_names:
        annotations[name] = Series[np.float32]
        namespace[name] = pa.Field(nullable=True)
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
    bits = [str(r.ticker) if isinstance(r.ticker, str) and r.ticker else "",
            f"{pd.Timestamp(r.date):%Y-%m-%d}" if pd.notna(r.date) else "",
            "" if (isinstance(r.ticker, str) and r.ticker) or pd.notna(r.date) else f"row {r.row}"]
    col = f" {r.column}={r.failure_case}" if isinstance(r.column, str) and r.column not in ("", "None", "nan") \
        and r.failure_case is not None and str(r.failure_case) != "nan" else ""
    return " ".join(b for b in bits if b) + col


FAILURE_COLUMNS = ["check", "column", "failure_case", "ticker", "date", "row"]


def validate(table: str, df: pd.DataFrame, model: type[pa.DataFrameModel]) -> Validation:
    """Validate lazily and name each failing row by ticker and date where the table has them.

    A non-strict model without table-wide checks sees only its own columns: Pandera's validation copies
    what it is given, and a training set's 223 float32 feature columns (a gigabyte) are none of its business.
    """
    schema = model.to_schema()
    own = [c for c in schema.columns if c in df.columns]
    checked = df[own] if not schema.strict and not schema.checks and not any(c.regex for c in schema.columns.values()) \
        and len(own) < df.shape[1] else df
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
        out = pd.DataFrame({
            "check": fc["check"].astype(str), "column": fc["column"].astype(str),
            "failure_case": fc["failure_case"].astype(str), "ticker": tickers, "date": dates,
            "row": idx,
        })
        # A dataframe-level check reports one case per column of a failing row: keep one per row,
        # with no column named (the whole row fails).
        per_row = out.groupby(["check", "row"], dropna=False).column.transform("size")
        out.loc[per_row > 1, ["column", "failure_case"]] = ["", "row-wide check"]
        dup = out.check.str.contains("uniqueness")
        out.loc[dup, ["column", "failure_case"]] = ["", "duplicate (ticker, date)"]
        out = out.drop_duplicates(subset=["check", "row"]) if valid.any() else out
        return Validation(table, len(df), out.reset_index(drop=True))
