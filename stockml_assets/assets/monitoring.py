"""Monitoring: the champion's predictions, drift, the error replay buffer and per-sector accuracy."""


from datetime import UTC, datetime

import numpy as np
import pandas as pd
from dagster import AssetExecutionContext, MetadataValue, asset

from stockml_assets.assets.modeling import TABLE
from stockml_assets.metadata import column_schema, md_plot, md_table
from stockml_assets.plots import mix_plot
from stockml_assets.resources import StockMLResource, previous_table
from stockml_core import drift as core_drift
from stockml_core.evaluation import PROBA_COLUMNS
from stockml_core.features import FEATURE_NAMES
from stockml_core.labels import CLASS_NAMES
from stockml_core.monitoring import replay_error_rates, update_replay_buffer
from stockml_core.monitoring import sector_performance as build_sector_performance
from stockml_core.regimes import REGIMES
from stockml_core.registry import json_dumps
from stockml_core.schemas import (
    DriftReportSchema,
    ErrorReplayBufferSchema,
    FeatureDriftSchema,
    MixDriftSchema,
    PredictionsSchema,
    SectorPerformanceSchema,
    TrainingRunsSchema,
)
from stockml_core.training import trainable

PREDICTION_COLUMNS = ["ticker", "date", "model_version", "regime", *PROBA_COLUMNS, "signal", "confidence"]


def _with_regime(features: pd.DataFrame, regimes: pd.DataFrame) -> pd.DataFrame:
    return features.merge(regimes[["date", "regime"]], on="date", how="left").fillna({"regime": "normal"})


def _champion_proba(stockml: StockMLResource, production_model: pd.DataFrame, rows: pd.DataFrame):
    """The champion's probabilities for rows (the artefact's hash is verified before loading)."""
    if production_model.empty or rows.empty:
        return None, None
    version = str(production_model.version.iloc[0])
    return version, stockml.registry().load(version).predict_proba(rows)


@asset(group_name="monitoring", kinds={"pandas", "duckdb"}, metadata=column_schema(PredictionsSchema), **TABLE)
def predictions(context: AssetExecutionContext, stockml: StockMLResource, production_model: pd.DataFrame,
                feature_matrix: pd.DataFrame, market_regimes: pd.DataFrame) -> pd.DataFrame:
    """The champion's signal and confidence per ticker for the latest date; none without a champion."""
    latest = _with_regime(feature_matrix[feature_matrix.date == feature_matrix.date.max()], market_regimes)
    latest = trainable(latest.assign(label=0.0), FEATURE_NAMES)
    version, proba = _champion_proba(stockml, production_model, latest)
    if proba is None:
        context.add_output_metadata({"published": False, "dagster/row_count": 0,
                                     "reason": "no champion: no model has passed the promotion gate"})
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(
            PREDICTION_COLUMNS, [str, "datetime64[ns]", str, str, float, float, float, str, float], strict=True)})
    out = latest[["ticker", "date", "regime"]].reset_index(drop=True).assign(model_version=version)
    out[PROBA_COLUMNS] = proba
    out["signal"] = np.array(CLASS_NAMES)[proba.argmax(axis=1)]
    out["confidence"] = proba.max(axis=1)
    out = out[PREDICTION_COLUMNS]
    context.add_output_metadata({
        "published": True, "dagster/row_count": len(out), "model_version": version,
        "date": f"{out.date.max():%Y-%m-%d}", "signals": MetadataValue.json(out.signal.value_counts().to_dict()),
        "predictions": md_table(out.sort_values("confidence", ascending=False), limit=50),
    })
    return out


@asset(group_name="monitoring", kinds={"scipy", "duckdb"}, metadata=column_schema(FeatureDriftSchema), **TABLE)
def feature_drift(context: AssetExecutionContext, stockml: StockMLResource, feature_matrix: pd.DataFrame) -> pd.DataFrame:
    """Per-feature KS (Benjamini-Hochberg corrected) and PSI of the latest window against the reference."""
    s = stockml.settings().drift
    df = core_drift.feature_drift(feature_matrix, FEATURE_NAMES, s)
    context.add_output_metadata({"dagster/row_count": len(df), "drifted_features": int(df.drifted.sum()),
                                 "share_drifted": float(df.drifted.mean()) if len(df) else 0.0,
                                 "top drifted": md_table(df.head(15))})
    return df


@asset(group_name="monitoring", kinds={"pandas", "duckdb"}, metadata=column_schema(MixDriftSchema), **TABLE)
def regime_drift(context: AssetExecutionContext, stockml: StockMLResource, market_regimes: pd.DataFrame,
                 feature_matrix: pd.DataFrame) -> pd.DataFrame:
    """Shift of the regime mix in the latest window against the reference window."""
    s = stockml.settings().drift
    days = market_regimes[market_regimes.date.isin(feature_matrix.date.unique())]
    ref, cur = core_drift.reference_and_current(days.date, s)
    tv, table = core_drift.mix_shift(days.regime[ref], days.regime[cur], list(REGIMES))
    context.add_output_metadata({"total_variation": tv, "transition": core_drift.regime_transition(table),
                                 "mix": md_table(table), "plot": md_plot(mix_plot(table, "regime mix"))})
    return table


@asset(group_name="monitoring", kinds={"pandas", "duckdb"}, metadata=column_schema(MixDriftSchema), **TABLE)
def prediction_drift(context: AssetExecutionContext, stockml: StockMLResource, production_model: pd.DataFrame,
                     feature_matrix: pd.DataFrame, market_regimes: pd.DataFrame) -> pd.DataFrame:
    """Shift of the champion's predicted class mix and mean confidence, latest window vs reference."""
    s = stockml.settings().drift
    rows = trainable(_with_regime(feature_matrix, market_regimes).assign(label=0.0), FEATURE_NAMES)
    ref, cur = core_drift.reference_and_current(rows.date, s)
    rows = rows[ref | cur]
    ref, cur = core_drift.reference_and_current(rows.date, s)
    version, proba = _champion_proba(stockml, production_model, rows)
    if proba is None:
        context.add_output_metadata({"measured": False, "reason": "no champion, no predictions"})
        return pd.DataFrame(columns=["category", "reference_share", "current_share", "change"]).astype(
            {"category": str, "reference_share": float, "current_share": float, "change": float})
    cls = pd.Series(np.array(CLASS_NAMES)[proba.argmax(axis=1)])
    tv, table = core_drift.mix_shift(cls[ref], cls[cur], list(CLASS_NAMES))
    conf_ref, conf_cur = float(proba[ref].max(axis=1).mean()), float(proba[cur].max(axis=1).mean())
    context.add_output_metadata({"measured": True, "model_version": version, "total_variation": tv,
                                 "mean_confidence_reference": conf_ref, "mean_confidence_current": conf_cur,
                                 "mix": md_table(table)})
    return table


@asset(group_name="monitoring", kinds={"pandas", "duckdb"}, metadata=column_schema(DriftReportSchema), **TABLE)
def drift_report(context: AssetExecutionContext, stockml: StockMLResource, feature_drift: pd.DataFrame,
                 regime_drift: pd.DataFrame, prediction_drift: pd.DataFrame) -> pd.DataFrame:
    """One drift score in [0, 1]: weighted share of drifted features, regime shift and prediction shift."""
    s = stockml.settings().drift
    share = float(feature_drift.drifted.mean()) if len(feature_drift) else 0.0
    regime_tv = float(0.5 * regime_drift.change.abs().sum())
    pred_tv = float(0.5 * prediction_drift.change.abs().sum()) if len(prediction_drift) else None
    score = core_drift.drift_score(share, regime_tv, pred_tv, s)
    top = feature_drift[feature_drift.drifted].head(5).feature.tolist()
    rows = [
        {"component": "features", "value": share, "weight": s.weight_features,
         "detail": f"{int(feature_drift.drifted.sum())}/{len(feature_drift)} features drifted (BH KS p < {s.ks_alpha}): {', '.join(top) or 'none'}"},
        {"component": "regime", "value": regime_tv, "weight": s.weight_regime,
         "detail": f"transition {core_drift.regime_transition(regime_drift)}"},
        {"component": "predictions", "value": np.nan if pred_tv is None else pred_tv,
         "weight": s.weight_predictions if pred_tv is not None else 0.0,
         "detail": "no champion" if pred_tv is None else "total variation of the predicted class mix"},
        {"component": "overall", "value": score, "weight": 1.0,
         "detail": f"retraining threshold {s.score_threshold}: {'ABOVE' if score >= s.score_threshold else 'below'}"},
    ]
    df = pd.DataFrame(rows)
    context.add_output_metadata({"drift_score": score, "threshold": s.score_threshold,
                                 "above_threshold": score >= s.score_threshold, "components": md_table(df),
                                 "top drifted features": md_table(feature_drift.head(10))})
    return df


@asset(group_name="monitoring", kinds={"pandas", "duckdb"}, metadata=column_schema(ErrorReplayBufferSchema), **TABLE)
def error_replay_buffer(context: AssetExecutionContext, stockml: StockMLResource, meta_learner: dict,
                        promotion_decision: pd.DataFrame, training_set: pd.DataFrame) -> pd.DataFrame:
    """The worst confident out-of-sample mistakes, replayed (up-weighted) in the next training cycle.

    A sample leaves the buffer once a promoted model gets it right; a rejected candidate removes
    nothing. Each row carries the sample's features (as trained on), so a mistake can be inspected.
    """
    previous = previous_table(stockml, "error_replay_buffer")
    promoted = bool(promotion_decision.promoted.iloc[0])
    buf = update_replay_buffer(meta_learner["evaluation"], previous, stockml.settings().replay_buffer_size, promoted)
    feats = training_set[["ticker", "date", *FEATURE_NAMES]].assign(date=lambda d: pd.to_datetime(d.date))
    buf = buf.assign(date=pd.to_datetime(buf.date)).merge(feats, on=["ticker", "date"], how="left")
    rates = replay_error_rates(meta_learner["evaluation"])
    context.add_output_metadata({"dagster/row_count": len(buf), "previous_rows": 0 if previous is None else len(previous),
                                 "candidate_promoted": promoted,
                                 "replayed_mistakes_evaluated": rates["replayed_evaluated"],
                                 "repeat_error_rate_before_replay": rates["repeat_error_before"],
                                 "repeat_error_rate_after_replay": rates["repeat_error_after"],
                                 "by regime": md_table(buf.regime.value_counts().rename_axis("regime").reset_index(name="rows")),
                                 "worst": md_table(buf.head(10))})
    return buf


@asset(group_name="monitoring", kinds={"pandas", "duckdb"}, metadata=column_schema(SectorPerformanceSchema), **TABLE)
def sector_performance(context: AssetExecutionContext, meta_learner: dict) -> pd.DataFrame:
    """Out-of-sample accuracy by sector x regime, by sector and by symbol, weakest named."""
    df = build_sector_performance(meta_learner["evaluation"])
    sectors = df[df.scope == "sector"].sort_values("accuracy")
    context.add_output_metadata({"dagster/row_count": len(df), "weakest_sectors": ", ".join(sectors.sector.head(3)),
                                 "by sector": md_table(sectors[["sector", "accuracy", "n"]])})
    return df


TRAINING_RUN_COLUMNS = ["run_id", "recorded_at", "trigger", "samples", "candidate_version", "accuracy",
                        "balanced_accuracy", "metrics", "promoted", "error"]


def record_training_run(stockml: StockMLResource, row: dict) -> pd.DataFrame:
    """Append one cycle to the training_runs log (also called by the run-failure sensor)."""
    with stockml.warehouse().connect() as con:
        con.execute("create table if not exists training_runs_log (run_id varchar, recorded_at timestamp, "
                    "trigger varchar, samples bigint, candidate_version varchar, accuracy double, "
                    "balanced_accuracy double, promoted boolean, error varchar)")
        con.execute("alter table training_runs_log add column if not exists metrics varchar")  # older warehouses
        cols = ", ".join(TRAINING_RUN_COLUMNS)
        con.execute(f"insert into training_runs_log ({cols}) values ({', '.join('?' * len(TRAINING_RUN_COLUMNS))})",
                    [row.get(c) for c in TRAINING_RUN_COLUMNS])
        return con.execute(f"select {cols} from training_runs_log order by recorded_at").df()


@asset(group_name="monitoring", kinds={"duckdb"}, metadata=column_schema(TrainingRunsSchema), **TABLE)
def training_runs(context: AssetExecutionContext, stockml: StockMLResource, training_set: pd.DataFrame,
                  meta_learner: dict, promotion_decision: pd.DataFrame, production_model: pd.DataFrame) -> pd.DataFrame:
    """One row per training cycle: trigger, samples, metrics, promoted, error (failures via a sensor)."""
    v = stockml.registry().get(meta_learner["version"])
    trigger = context.run.tags.get("stockml/trigger", "manual")
    log = record_training_run(stockml, {
        "run_id": context.run_id, "recorded_at": datetime.now(UTC).replace(tzinfo=None),
        "trigger": trigger, "samples": len(training_set), "candidate_version": v.version,
        "accuracy": v.metrics.get("accuracy"), "balanced_accuracy": v.metrics.get("balanced_accuracy"),
        "metrics": json_dumps(v.metrics), "promoted": bool(promotion_decision.promoted.iloc[0]), "error": None})
    log["samples"] = log.samples.astype("int64")
    context.add_output_metadata({"dagster/row_count": len(log), "cycles": md_table(log.tail(10))})
    return log
