"""Monitoring: the champion's predictions, drift, the error replay buffer and per-sector accuracy."""

import functools

import numpy as np
import pandas as pd
from dagster import AssetDep, AssetExecutionContext, AssetIn, AssetKey, AssetOut, MetadataValue, asset, multi_asset

from stockml_assets.assets.modeling import TABLE
from stockml_assets.checks import gate_spec, partition_gate
from stockml_assets.inline import inline_md, line_chart
from stockml_assets.metadata import (
    add_metadata,
    column_schema,
    date_range,
    malformed_files_fail,
    md_plot,
    md_table,
    num,
)
from stockml_assets.partitions import DRIFT_HISTORY, PARTITION_EXPR, PARTITIONED, run_days
from stockml_assets.plots import mix_plot
from stockml_assets.resources import StockMLResource, previous_table
from stockml_assets.tags import DAILY_MONITORING, trigger_of
from stockml_core.decisions import drift as core_drift
from stockml_core.features import FEATURE_NAMES
from stockml_core.market.data import load_rare_events
from stockml_core.market.events import build_catalog, capture_candidate
from stockml_core.modeling.error_analysis import replay_error_rates, update_replay_buffer
from stockml_core.modeling.error_analysis import sector_performance as build_sector_performance
from stockml_core.modeling.evaluation import PROBA_COLUMNS
from stockml_core.modeling.explain import top_contributions
from stockml_core.modeling.labels import CLASS_NAMES
from stockml_core.modeling.training import Candidate, positions_of, trainable
from stockml_core.schemas import (
    DriftReportSchema,
    ErrorReplayBufferSchema,
    FeatureDriftSchema,
    MixDriftSchema,
    PredictionsSchema,
    RareEventWatchSchema,
    SectorPerformanceSchema,
    TrainingRunsSchema,
    columns,
    probabilities_off,
)
from stockml_core.settings import loaded_drift
from stockml_core.storage.registry import json_dumps

# Market-wide features: one value per date, the same for every ticker (drift tests them per date).
DATE_LEVEL = core_drift.date_level_features()
PREDICTION_COLUMNS = columns(PredictionsSchema)


def _with_regime(features: pd.DataFrame, regimes: pd.DataFrame) -> pd.DataFrame:
    return features.merge(regimes[["date", "regime"]], on="date", how="left").fillna({"regime": "normal"})


def _champion_proba(stockml: StockMLResource, rows: pd.DataFrame):
    """The current champion's version and probabilities for rows (its artefact's hash verified on load).

    The registry is the champion's source of truth (the production_model table mirrors it); reading
    it there means a deployment without any champion yet simply publishes nothing.
    """
    champ = stockml.registry().champion()
    if champ is None or rows.empty:
        return None, None, None
    model = stockml.registry().load(champ.version)
    return champ.version, CHAMPION_SCORES.predict_proba(f"{champ.version}:{champ.sha256}", model, rows), model


class ScoreCache:
    """Probabilities a model gave rows, by the model's identity and each row's content (a 64-bit hash of
    every column the model is given). ``prediction_drift`` scores the reference window's 250 days with
    the champion every day; with this, a daily run scores only the rows it has not seen, and any
    change to a row's values (or a new champion) is a miss, never a stale hit. Per process, bounded."""

    def __init__(self, max_rows: int = 200_000, max_models: int = 2) -> None:
        self.max_rows, self.max_models = max_rows, max_models
        self._by_model: dict[str, pd.DataFrame] = {}

    def predict_proba(self, model_key: str, model, rows: pd.DataFrame) -> np.ndarray:
        keys = pd.util.hash_pandas_object(rows, index=False).to_numpy()
        known = self._by_model.pop(model_key, None)  # re-inserted below: most recently used last
        found = known.reindex(keys).to_numpy() if known is not None else np.full((len(rows), 3), np.nan)
        missing = np.isnan(found).any(axis=1)
        if missing.any():
            found[missing] = model.predict_proba(rows[missing])
            fresh = pd.DataFrame(found[missing], index=keys[missing])
            known = fresh if known is None else pd.concat([known, fresh])
            known = known[~known.index.duplicated(keep="last")].iloc[-self.max_rows :]
        self._by_model[model_key] = known
        while len(self._by_model) > self.max_models:
            self._by_model.pop(next(iter(self._by_model)))
        return found


CHAMPION_SCORES = ScoreCache()


@asset(
    group_name="monitoring",
    tags=DAILY_MONITORING,
    kinds={"pandas", "duckdb"},
    metadata={**column_schema(PredictionsSchema), **PARTITION_EXPR},
    deps=[AssetDep("production_model")],
    **PARTITIONED,
    **TABLE,
    check_specs=[gate_spec("predictions", PredictionsSchema, "predictions_probabilities_sum_to_one")],
)
def predictions(context: AssetExecutionContext, stockml: StockMLResource, feature_matrix: pd.DataFrame, market_regimes: pd.DataFrame):
    """The champion's signal and confidence per ticker for the run's trading days; none without a champion."""
    rows = _with_regime(feature_matrix, market_regimes)
    rows = trainable(rows.assign(label=0.0), FEATURE_NAMES)
    version, proba, model = _champion_proba(stockml, rows)
    if proba is None:
        add_metadata(
            context,
            {
                "published": False,
                "dagster/row_count": 0,
                "reason": "no rows with complete features" if version else "no champion: no model has passed the promotion gate",
            },
        )
        empty = pd.DataFrame(
            {
                c: pd.Series(dtype=t)
                for c, t in zip(PREDICTION_COLUMNS, [str, "datetime64[ns]", str, str, float, float, float, str, float, str], strict=True)
            }
        )
        return partition_gate(context, "predictions", empty, PredictionsSchema, probabilities_check(empty))
    out = rows[["ticker", "date", "regime"]].reset_index(drop=True).assign(model_version=version)
    out[PROBA_COLUMNS] = proba
    out["signal"] = np.array(CLASS_NAMES)[proba.argmax(axis=1)]
    out["confidence"] = proba.max(axis=1)
    out["top_features"] = top_contributions(model, rows.reset_index(drop=True))  # why: the champion's own SHAP
    out = out[PREDICTION_COLUMNS]
    latest = out[out.date == out.date.max()]
    add_metadata(
        context,
        {
            "published": True,
            "dagster/row_count": len(out),
            "model_version": version,
            **date_range(out),
            "signals (latest day)": MetadataValue.json(latest.signal.value_counts().to_dict()),
            "mean_confidence (latest day)": num(latest.confidence.mean()),
            "predictions (latest day)": md_table(latest.sort_values("confidence", ascending=False), limit=50),
        },
    )
    return partition_gate(context, "predictions", out, PredictionsSchema, probabilities_check(out))


def probabilities_check(predictions: pd.DataFrame) -> tuple[str, pd.DataFrame]:
    """Rows whose class probabilities do not sum to 1."""
    off = probabilities_off(predictions[PROBA_COLUMNS].to_numpy())
    return "predictions_probabilities_sum_to_one", predictions.loc[off, ["ticker", "date"]]


def _feature_meta(df: pd.DataFrame) -> dict:
    last = df[df.date == df.date.max()]
    return {
        "dagster/row_count": len(df),
        **date_range(df),
        "drifted_features (latest day)": int(last.drifted.sum()),
        "share_drifted (latest day)": num(last.drifted.mean()) if len(last) else 0.0,
        "top drifted (latest day)": md_table(last.head(15)),
    }


def _regime_meta(df: pd.DataFrame, transitions: dict) -> dict:
    last = df[df.date == df.date.max()]
    return {
        "total_variation (latest day)": num(0.5 * last.change.abs().sum()),
        "transition (latest day)": next(reversed(transitions.values()), "none"),
        "transitions": MetadataValue.json(transitions),
        "mix (latest day)": md_table(last),
        **({"plot": _mix_plot_md(last, "market state mix")} if len(last) else {}),
    }


def _mix_plot_md(table: pd.DataFrame, title: str) -> MetadataValue:
    """``mix_plot`` as markdown metadata; the same mix (to 4 decimals) reuses the PNG drawn last time
    (drawing one takes ~0.1 s, and the mix of most days equals the day before's)."""
    return _mix_plot_cached(title, tuple(table.category), tuple(table.reference_share.round(4)), tuple(table.current_share.round(4)))


@functools.lru_cache(maxsize=32)
def _mix_plot_cached(title: str, categories: tuple, reference: tuple, current: tuple) -> MetadataValue:
    return md_plot(mix_plot(pd.DataFrame({"category": categories, "reference_share": reference, "current_share": current}), title))


def _prediction_meta(df: pd.DataFrame, stats: dict, version: str | None) -> dict:
    if version is None:
        return {"measured": False, "reason": "no champion, no predictions"}
    last_stats = next(reversed(stats.values()), {})
    return {
        "measured": True,
        "model_version": version,
        **{f"{k} (latest day)": num(v) for k, v in last_stats.items()},
        "by day": MetadataValue.json(stats),
        "mix (latest day)": md_table(df[df.date == df.date.max()]),
    }


def _report_meta(s, df: pd.DataFrame, feature_drift: pd.DataFrame) -> dict:
    overall = df[df.component == "overall"]
    scores = {f"{pd.Timestamp(d):%Y-%m-%d}": float(v) for d, v in zip(overall.date, overall.value, strict=True)}
    last_day = max(scores) if scores else None
    score = scores[last_day] if last_day else float("nan")
    last_fd = feature_drift[feature_drift.date == feature_drift.date.max()] if len(feature_drift) else feature_drift
    return {
        "drift_score": num(score),
        "day": last_day or "",
        "daily_scores": MetadataValue.json(scores),
        "threshold": s.score_threshold,
        "above_threshold": bool(score >= s.score_threshold),
        "components": md_table(df[df.date == df.date.max()]),
        "top drifted features": md_table(last_fd[last_fd.drifted].head(10)),
    }


def measure_drift(
    context: AssetExecutionContext, stockml: StockMLResource, s, feature_matrix: pd.DataFrame, market_regimes: pd.DataFrame
) -> tuple[core_drift.DriftTables, str | None]:
    """The run's days' drift (``stockml_core.decisions.drift.drift_tables``, what the drift benchmark calibrates),
    with the champion's predictions on the same rows when there is a champion; and its version."""
    first, last = run_days(context)
    rows = trainable(_with_regime(feature_matrix, market_regimes).assign(label=0.0), FEATURE_NAMES).reset_index(drop=True)
    version, proba, _ = _champion_proba(stockml, rows)
    days = pd.DatetimeIndex(feature_matrix.date.unique())
    tables = core_drift.drift_tables(
        feature_matrix,
        market_regimes,
        FEATURE_NAMES,
        s,
        DATE_LEVEL,
        days[(days >= first) & (days <= last)],
        predictions=None if proba is None else (rows.date, proba),
        class_names=CLASS_NAMES,
    )
    return tables, (version if proba is not None else None)


def _score_chart(stockml: StockMLResource, s, report: pd.DataFrame, version: str | None) -> MetadataValue:
    """The overall drift score of the last 250 trading days (the stored ones before this run's and
    this run's), with the retraining threshold and the days at or above it marked."""
    new = report[report.component == "overall"][["date", "value"]]
    old = stockml.asset_tables().drift_before(new.date.min() if len(new) else None, "overall", limit=250)
    series = pd.concat([old.iloc[::-1], new], ignore_index=True).tail(250)
    if series.empty:
        return inline_md("_(no drift score yet)_")
    last = f"{pd.Timestamp(series.date.iloc[-1]):%Y-%m-%d}"
    above = np.flatnonzero(series.value.to_numpy() >= s.score_threshold)
    return line_chart(
        f"drift score to {last}" + (f", champion {version}" if version else ""),
        series.date,
        {"score": series.value.to_numpy()},
        hline=s.score_threshold,
        hline_label=f"threshold {s.score_threshold:g} (ticks: days above)",
        marks=above,
        peaks=True,
    )


# The drift step's assets, in the order the step returns them, with the schema that gates each.
DRIFT_SCHEMAS = {
    "feature_drift": FeatureDriftSchema,
    "regime_drift": MixDriftSchema,
    "prediction_drift": MixDriftSchema,
    "drift_report": DriftReportSchema,
}


_D = loaded_drift()
_DRIFT_REPORT_DESCRIPTION = (
    f"Per trading day, one drift score in [0, 1]: the weighted mean of the share of features drifted (weight "
    f"{_D.weight_features:g}), the total variation of the mix of market states in the current {_D.current_window} days "
    f"against the {_D.reference_window}-day reference ({_D.weight_regime:g}), and the shift of the champion's predicted "
    f"class mix and confidence ({_D.weight_predictions:g}; without a champion the other two are renormalized). A retrain "
    f"is triggered when the score is at or above {_D.score_threshold:g} for {_D.persistence_days} trading days in a row, "
    f"then not again for {_D.cooldown_days} trading days (DriftSettings, STOCKML_DRIFT applied). The page shows the last 250 days' "
    "scores with the threshold."
)


def _drift_out(name: str, description: str, **kwargs) -> AssetOut:
    return AssetOut(
        kinds=kwargs.pop("kinds", {"pandas", "duckdb"}),
        description=description,
        metadata={**column_schema(DRIFT_SCHEMAS[name]), **PARTITION_EXPR},
        io_manager_key=TABLE["io_manager_key"],
        tags=DAILY_MONITORING,
        **kwargs,
    )


@multi_asset(
    name="drift",
    group_name="monitoring",
    pool=TABLE["pool"],
    **PARTITIONED,
    check_specs=[gate_spec(name, schema) for name, schema in DRIFT_SCHEMAS.items()],
    outs={
        "feature_drift": _drift_out(
            "feature_drift",
            kinds={"scipy", "duckdb"},
            description="Per trading day and feature: normalized Wasserstein distance against a threshold calibrated "
            "on the reference window's own variability, KS p-value (Benjamini-Hochberg across features), PSI.",
        ),
        "regime_drift": _drift_out(
            "regime_drift",
            description="Per trading day: shift of the mix of market states in the current window against the reference, "
            "naming the transition. The states are the regimes, with a falling normal market (S&P 500 8%+ "
            "below its peak and 5%+ down over 20 days) as correction.",
        ),
        "prediction_drift": _drift_out(
            "prediction_drift",
            description="Per trading day: shift of the champion's predicted class mix and of its mean confidence, current "
            "vs reference. The champion scores both windows, so the shift is the data's, not a change of model.",
        ),
        "drift_report": _drift_out("drift_report", description=_DRIFT_REPORT_DESCRIPTION),
    },
    ins={"feature_matrix": AssetIn(partition_mapping=DRIFT_HISTORY)},
    deps=[AssetDep("production_model")],
    internal_asset_deps={
        "feature_drift": {AssetKey("feature_matrix")},
        "regime_drift": {AssetKey("market_regimes")},
        "prediction_drift": {AssetKey("feature_matrix"), AssetKey("market_regimes"), AssetKey("production_model")},
        "drift_report": {AssetKey("feature_drift"), AssetKey("regime_drift"), AssetKey("prediction_drift")},
    },
)
def drift(context: AssetExecutionContext, stockml: StockMLResource, feature_matrix: pd.DataFrame, market_regimes: pd.DataFrame):
    """Feature, regime and prediction drift and the day's drift report, one step for the four assets.

    They read the same windows (the run's days and the 254 trading days before each), so one step
    loads them once; each asset is still its own table, schema gate and node in the lineage. The
    windows are the trading days up to each day, so only days up to the one measured are read.
    """
    s = stockml.settings().drift
    t, version = measure_drift(context, stockml, s, feature_matrix, market_regimes)
    tables = {
        "feature_drift": (t.feature_drift, _feature_meta(t.feature_drift)),
        "regime_drift": (t.regime_drift, _regime_meta(t.regime_drift, t.transitions)),
        "prediction_drift": (t.prediction_drift, _prediction_meta(t.prediction_drift, t.prediction_stats, version)),
        "drift_report": (t.report, _report_meta(s, t.report, t.feature_drift)),
    }
    tables["drift_report"][1]["drift score, last 250 trading days"] = _score_chart(stockml, s, t.report, version)
    for name, (_, meta) in tables.items():
        add_metadata(context, meta, output_name=name)
    return tuple(partition_gate(context, name, tables[name][0], schema, output_name=name) for name, schema in DRIFT_SCHEMAS.items())


@asset(
    group_name="monitoring",
    tags=DAILY_MONITORING,
    kinds={"pandas", "duckdb"},
    metadata={**column_schema(RareEventWatchSchema), **PARTITION_EXPR},
    deps=[AssetDep("rare_event_catalog")],
    **PARTITIONED,
    **TABLE,
    check_specs=[gate_spec("rare_event_watch", RareEventWatchSchema)],
)
def rare_event_watch(context: AssetExecutionContext, stockml: StockMLResource, market_regimes: pd.DataFrame, drift_report: pd.DataFrame):
    """Per trading day: do the conditions for capturing a new rare event hold (crash regime, VIX above 40 for
    3+ days, drift score above 0.25, no overlap with a catalogued event)? The capture sensor reads the answer."""
    s = stockml.settings()
    with malformed_files_fail("rare_event_watch"):
        catalog = build_catalog(load_rare_events(s.data_dir), stockml.captured_events().read())
    rows, candidate = [], None
    overall = drift_report[drift_report.component == "overall"].set_index("date").value
    for day in sorted(overall.index):
        event, why = capture_candidate(day, market_regimes, float(overall[day]), catalog, s.capture)
        if event:
            catalog = pd.concat(
                [catalog, pd.DataFrame([event]).assign(start=lambda d: pd.to_datetime(d.start), end=lambda d: pd.to_datetime(d.end))],
                ignore_index=True,
            )
            candidate = event
        rows.append(
            {
                "date": pd.Timestamp(day),
                "candidate": event["name"] if event else "",
                "start": pd.Timestamp(event["start"]) if event else pd.NaT,
                "end": pd.Timestamp(event["end"]) if event else pd.NaT,
                "drift_score": float(overall[day]),
                "reason": why,
            }
        )
    df = pd.DataFrame(rows, columns=["date", "candidate", "start", "end", "drift_score", "reason"]).astype(
        {"date": "datetime64[ns]", "start": "datetime64[ns]", "end": "datetime64[ns]", "candidate": str, "reason": str, "drift_score": float}
    )
    add_metadata(context, {"dagster/row_count": len(df), "candidate_event": MetadataValue.json(candidate or {}), "latest": md_table(df.tail(5))})
    return partition_gate(context, "rare_event_watch", df, RareEventWatchSchema)


@asset(group_name="monitoring", kinds={"pandas", "duckdb"}, metadata=column_schema(ErrorReplayBufferSchema), **TABLE)
def error_replay_buffer(
    context: AssetExecutionContext,
    stockml: StockMLResource,
    meta_learner: Candidate,
    promotion_decision: pd.DataFrame,
    training_set: pd.DataFrame,
) -> pd.DataFrame:
    """The worst confident out-of-sample mistakes, replayed (up-weighted) in the next training cycle.

    A sample leaves the buffer once a promoted model gets it right; a rejected candidate removes
    nothing. Each row carries the sample's features (as trained on), so a mistake can be inspected.
    """
    previous = previous_table(stockml, "error_replay_buffer")
    promoted = bool(promotion_decision.promoted.iloc[0])
    buf = update_replay_buffer(meta_learner.evaluation, previous, stockml.settings().replay_buffer_size, promoted)
    buf = buf.assign(date=pd.to_datetime(buf.date))
    feats = training_set.iloc[positions_of(training_set, buf)][["ticker", "date", *FEATURE_NAMES]]  # the buffer's rows only
    buf = buf.merge(feats, on=["ticker", "date"], how="left")
    rates = replay_error_rates(meta_learner.evaluation)
    add_metadata(
        context,
        {
            "dagster/row_count": len(buf),
            "previous_rows": 0 if previous is None else len(previous),
            "candidate_promoted": promoted,
            "replayed_mistakes_evaluated": rates["replayed_evaluated"],
            "repeat_error_rate_before_replay": rates["repeat_error_before"],
            "repeat_error_rate_after_replay": rates["repeat_error_after"],
            "by regime": md_table(buf.regime.value_counts().rename_axis("regime").reset_index(name="rows")),
            "worst": md_table(buf.head(10)),
        },
    )
    return buf


@asset(group_name="monitoring", kinds={"pandas", "duckdb"}, metadata=column_schema(SectorPerformanceSchema), **TABLE)
def sector_performance(context: AssetExecutionContext, meta_learner: Candidate) -> pd.DataFrame:
    """Out-of-sample accuracy by sector x regime, by sector and by symbol, weakest named."""
    df = build_sector_performance(meta_learner.evaluation)
    sectors = df[df.scope == "sector"].sort_values("accuracy")
    add_metadata(
        context,
        {
            "dagster/row_count": len(df),
            "weakest_sectors": ", ".join(sectors.sector.head(3)),
            "by sector": md_table(sectors[["sector", "accuracy", "n"]]),
        },
    )
    return df


@asset(group_name="monitoring", kinds={"duckdb"}, metadata=column_schema(TrainingRunsSchema), **TABLE)
def training_runs(
    context: AssetExecutionContext,
    stockml: StockMLResource,
    training_set: pd.DataFrame,
    meta_learner: Candidate,
    promotion_decision: pd.DataFrame,
    production_model: pd.DataFrame,
) -> pd.DataFrame:
    """One row per training cycle: trigger, samples, metrics, promoted, error (failures via a sensor)."""
    v = stockml.registry().get(meta_learner.version)
    trigger = trigger_of(context.run.tags)
    log = stockml.training_runs_log().append(
        {
            "run_id": context.run_id,
            "trigger": trigger,
            "samples": len(training_set),
            "candidate_version": v.version,
            "accuracy": v.metrics.get("accuracy"),
            "balanced_accuracy": v.metrics.get("balanced_accuracy"),
            "metrics": json_dumps(v.metrics),
            "promoted": bool(promotion_decision.promoted.iloc[0]),
            "error": None,
        },
    )
    log["samples"] = log.samples.astype("int64")
    add_metadata(context, {"dagster/row_count": len(log), "cycles": md_table(log.tail(10))})
    return log
