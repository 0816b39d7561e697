"""Training, evaluation, explainability and promotion: the retraining subgraph."""

from dataclasses import replace
from datetime import timedelta

import numpy as np
import pandas as pd
from dagster import (
    AssetDep,
    AssetExecutionContext,
    FreshnessPolicy,
    MetadataValue,
    asset,
)

from stockml_assets.inline import bar_chart, inline_md, line_chart, small_table
from stockml_assets.metadata import column_schema, date_range, md_plot, md_table, num
from stockml_assets.plots import bar_plot, book_plot, equity_plot
from stockml_assets.resources import (
    DUCKDB_POOL,
    TRAINING_SET_IO,
    WAREHOUSE_IO,
    WAREHOUSE_SCHEMA,
    StockMLResource,
    StreamedTrainingSet,
    previous_table,
    read_feature_rows,
)
from stockml_assets.tags import trigger_of
from stockml_core.decisions.promotion import (
    MIN_SKILL_T,
    GateEvidence,
    ReplayEvidence,
    best_baseline,
    evaluate_gate,
    has_directional_skill,
    reading_table,
    recent_comparison,
    shown_value,
    switch_not_applied,
)
from stockml_core.faults import failpoint
from stockml_core.features import FEATURE_NAMES
from stockml_core.modeling import training
from stockml_core.modeling.backtest import decile_books, next_day_returns, run_backtest, summarize_backtest
from stockml_core.modeling.error_analysis import replay_error_rates
from stockml_core.modeling.evaluation import (
    ALL_BASELINES,
    classification_metrics,
    comparison_table,
    headline,
    ic_decay,
    information_coefficients,
    model_probabilities,
    model_score,
    reliability_table,
)
from stockml_core.modeling.evaluation import (
    validation_report as build_validation_report,
)
from stockml_core.modeling.explain import family_shares, importance, shap_long
from stockml_core.modeling.training import Candidate
from stockml_core.schemas import (
    BacktestReportSchema,
    ProductionModelSchema,
    PromotionDecisionSchema,
    ShapImportanceSchema,
    ShapValuesSchema,
    TrainingSetSchema,
    ValidationReportSchema,
)
from stockml_core.storage.registry import TRIGGERS

TABLE = {"io_manager_key": WAREHOUSE_IO, "pool": DUCKDB_POOL}
PROGRESS = "progress: "  # log lines the terminal shows as they come (stockml_assets.progress)


@asset(
    group_name="training",
    kinds={"pandas", "duckdb", "numpy"},
    metadata=column_schema(TrainingSetSchema),
    deps=[AssetDep("feature_matrix"), AssetDep("rare_event_archive")],
    io_manager_key=TRAINING_SET_IO,
    pool=DUCKDB_POOL,
)
def training_set(
    context: AssetExecutionContext, stockml: StockMLResource, labels: pd.DataFrame, market_regimes: pd.DataFrame, market_universe: pd.DataFrame
) -> StreamedTrainingSet:
    """Recent window + the whole rare-event archive + error-replay samples (weighted).

    Reads only the feature rows the set can hold (the recent window, with a margin, and the archive's
    rows) from the warehouse, not the whole matrix. Stored as its keys (a warehouse table) and one float32
    feature matrix that every training step memory-maps (``stockml_core.storage.matrix_store``).
    The replay samples are the previous cycle's ``error_replay_buffer``, read from the warehouse: that asset
    is downstream of this one (it scores the champion's predictions), a feedback edge a DAG cannot draw.
    """
    s = stockml.settings()
    # The archive's keys and events only: its stored rows also carry every feature (a third of a gigabyte at 375
    # names), which the set reads from feature_matrix with the rest.
    rare_event_archive = stockml.warehouse().read(f'select ticker, date, event from "{WAREHOUSE_SCHEMA}"."rare_event_archive"')
    rare_event_archive["date"] = pd.to_datetime(rare_event_archive.date).astype("datetime64[ns]")
    replay = previous_table(stockml, "error_replay_buffer")

    def keys_after(after: pd.Timestamp) -> pd.DataFrame:  # which rows: decided on keys and a finiteness flag
        found = read_feature_rows(stockml, after=after, keys=rare_event_archive, finite_only=FEATURE_NAMES)
        samples = training.model_samples(found[["ticker", "date"]], labels, market_regimes, market_universe)
        return training.build_training_set(samples, rare_event_archive, replay, [], s, all_finite=found.all_finite.to_numpy())

    after = training.recent_cutoff(labels, s)
    ts = keys_after(after)
    if ts.date[ts.source != "archive"].min() - pd.Timedelta(days=7) <= after:  # the window may reach past the margin
        ts = keys_after(pd.Timestamp(0))
    comp = training.composition(ts)
    context.add_output_metadata(
        {
            "dagster/row_count": len(ts),
            **date_range(ts),
            "composition": MetadataValue.json(comp),
            "rows by source": md_table(pd.DataFrame(list(comp["source"].items()), columns=["source", "rows"])),
            "rows by regime": md_table(pd.DataFrame(list(comp["regime"].items()), columns=["regime", "rows"])),
            "replayed_rows": comp["source"].get("replay", 0),
            "recent_years": s.training.recent_years,
        }
    )
    return StreamedTrainingSet(stockml, ts, FEATURE_NAMES)  # the IO manager streams the features to the matrix


def _fold_table(result: training.BaseModelResult) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "fold": f.fold,
                "train_rows": len(f.train_idx),
                "train_end": f"{f.train_end:%Y-%m-%d}",
                "test_start": f"{f.test_start:%Y-%m-%d}",
                "test_end": f"{f.test_end:%Y-%m-%d}",
                "test_rows": len(f.test_idx),
            }
            for f in result.folds
        ]
    )


def _base_model(kind: str, context: AssetExecutionContext, stockml: StockMLResource, ts: pd.DataFrame):
    result = training.train_base_model(kind, ts, FEATURE_NAMES, stockml.settings(), progress=lambda m: context.log.info(PROGRESS + m))
    rows = np.isfinite(result.oof).all(axis=1)
    m = classification_metrics(ts.label.to_numpy()[rows], result.oof[rows])
    context.add_output_metadata({"walk-forward folds": md_table(_fold_table(result)), **{f"oof_{k}": num(v) for k, v in m.items()}})
    return result


@asset(group_name="training", kinds={"scikitlearn"})
def rf_model(context: AssetExecutionContext, stockml: StockMLResource, training_set: pd.DataFrame) -> training.BaseModelResult:
    """RandomForest on the training set, plus its purged walk-forward out-of-fold probabilities."""
    return _base_model("rf", context, stockml, training_set)


@asset(group_name="training", kinds={"xgboost"})
def xgb_model(context: AssetExecutionContext, stockml: StockMLResource, training_set: pd.DataFrame) -> training.BaseModelResult:
    """XGBoost on the training set, plus its purged walk-forward out-of-fold probabilities."""
    return _base_model("xgb", context, stockml, training_set)


STATUS_METRICS = ("n", "accuracy", "balanced_accuracy", "auc_ovr", "auc_direction", "ic", "rank_ic", "icir", "rank_icir", "ic_t", "rank_ic_t", "days")


def _oos_metrics(ev: pd.DataFrame, model: str, horizon: int) -> dict[str, float]:
    proba = model_probabilities(ev, model)
    m = classification_metrics(ev.label.to_numpy(), proba)
    m.update(information_coefficients(ev.date, proba[:, 2] - proba[:, 0], ev.fwd_return.to_numpy(), horizon))
    return m


def evaluation_closes(stockml: StockMLResource, ev: pd.DataFrame, days_after: int = 40) -> pd.DataFrame:
    """Closes over the evaluation span and ``days_after`` calendar days past it (for the forward returns),
    from the stored prices (only the rows it needs)."""
    prices = stockml.warehouse().read(
        f'select ticker, date, close from "{WAREHOUSE_SCHEMA}"."raw_prices" where date >= ? and date <= ?',
        [pd.Timestamp(ev.date.min()).to_pydatetime(), (pd.Timestamp(ev.date.max()) + pd.Timedelta(days=days_after)).to_pydatetime()],
    )
    return prices.assign(date=pd.to_datetime(prices.date).astype("datetime64[ns]"))


def published_predictions(stockml: StockMLResource, since) -> pd.DataFrame | None:
    """The predictions the platform published from ``since`` on (the champion's live record), or None."""
    wh = stockml.warehouse()
    if not wh.has_table("predictions", WAREHOUSE_SCHEMA):
        return None
    return wh.read(
        f'select ticker, date, model_version, p_down, p_up from "{WAREHOUSE_SCHEMA}"."predictions" where date >= ?',
        [pd.Timestamp(since).to_pydatetime()],
    )


def pending_switch(stockml: StockMLResource) -> tuple[str, pd.DataFrame] | None:
    """The version the last stored decision promoted but the registry never made champion (a run killed between
    ``promotion_decision`` and ``production_model``), with that decision; or None."""
    last = previous_table(stockml, "promotion_decision")
    version = switch_not_applied(last, stockml.registry().history()) if last is not None else None
    return None if version is None else (version, last)


def complete_interrupted_switch(stockml: StockMLResource, trigger: str) -> str | None:
    """Apply a promotion that was decided but not applied, before a new decision is made (what it says, or None)."""
    pending = pending_switch(stockml)
    if pending is None:
        return None
    version, last = pending
    stockml.registry().promote(
        version,
        reason="passed every promotion criterion (switch completed by the next run: the deciding run stopped before it applied it)",
        actor="promotion_gate",
        decision={"criteria": last[["name", "value", "threshold", "passed"]].to_dict("records")},
        trigger=trigger if trigger in TRIGGERS else "manual",
    )
    return f"{version} had passed the gate but the run stopped before the switch: it is champion now"


def stack_versus_parts(metrics: dict[str, dict[str, float]]) -> str:
    """Whether the stacked candidate ranks better than the better of its base models on the same rows."""
    best = max(("rf", "xgb"), key=lambda m: metrics[m]["rank_ic"] if np.isfinite(metrics[m]["rank_ic"]) else -np.inf)
    c, b = metrics["candidate"], metrics[best]
    verdict = "beats" if c["rank_ic"] > b["rank_ic"] else "does not beat"
    return (
        f"the stacked candidate (rank IC {c['rank_ic']:.4f}, t {c['rank_ic_t']:.2f}) {verdict} its better base model, "
        f"{best} (rank IC {b['rank_ic']:.4f}, t {b['rank_ic_t']:.2f}), on the same {int(c['n']):,} out-of-sample rows"
    )


@asset(group_name="training", kinds={"scikitlearn", "duckdb"}, pool=DUCKDB_POOL)
def meta_learner(
    context: AssetExecutionContext,
    stockml: StockMLResource,
    training_set: pd.DataFrame,
    rf_model: training.BaseModelResult,
    xgb_model: training.BaseModelResult,
) -> Candidate:
    """Stacking meta-learner on both models' OOF probabilities and the regime; registers the candidate in the
    model registry and hands it on as a ``Candidate`` (the version, the bundle, its out-of-sample record)."""
    s = stockml.settings()
    bundle, ev = training.stack(training_set, rf_model, xgb_model, FEATURE_NAMES, s)
    h = s.labels.horizon
    metrics = _oos_metrics(ev, "candidate", h)
    # The baselines' and the base models' metrics on the same rows travel with the version (``stockml status --json``).
    metrics["baselines"] = {b: {k: v for k, v in _oos_metrics(ev, b, h).items() if k in STATUS_METRICS} for b in ALL_BASELINES}
    metrics["base_models"] = {m: {k: v for k, v in _oos_metrics(ev, m, h).items() if k in STATUS_METRICS} for m in ("rf", "xgb")}
    stack_note = stack_versus_parts({"candidate": metrics, **metrics["base_models"]})
    closes = evaluation_closes(stockml, ev)
    models = ["candidate", "rf", "xgb", *ALL_BASELINES]
    books, book_table = decile_books(ev, next_day_returns(closes), models, h, s.cost_bps)
    decay = ic_decay(ev, closes, models)
    for row in book_table.itertuples(index=False):  # the decile book's net Sharpe and turnover travel with the version
        target = metrics if row.model == "candidate" else metrics["base_models"].get(row.model, metrics["baselines"].get(row.model))
        target.update(net_sharpe=float(row.net_sharpe), turnover=float(row.avg_daily_turnover))
    context.log.info(f"meta_learner: {stack_note}")
    lineage = {
        "dagster_run_id": context.run_id,
        "data_first_date": training_set.date.min(),
        "data_last_date": training_set.date.max(),
        "features": FEATURE_NAMES,
        "settings": s.as_dict(),
        "evaluated_from": ev.date.min(),
    }
    replay = training.replay_correction(bundle, training_set)
    version = stockml.registry().register(bundle, {**metrics, **replay}, lineage, training.composition(training_set))
    context.add_output_metadata(
        {
            "candidate_version": version.version,
            "sha256": version.sha256,
            **{f"oos_{k}": num(v) for k, v in metrics.items() if k not in ("baselines", "base_models")},
            "stack vs its parts": stack_note,
            "replayed_mistakes": replay["replay_n"],
            "repeat_error_rate_after_replay (in-sample)": replay["repeat_error_rate"],
        }
    )
    return Candidate(
        version=version.version, model=bundle, evaluation=ev, replay=replay, books=books, book_table=book_table, stack_note=stack_note, decay=decay
    )


@asset(group_name="evaluation", kinds={"pandas", "duckdb"}, metadata=column_schema(ValidationReportSchema), **TABLE)
def validation_report(context: AssetExecutionContext, stockml: StockMLResource, meta_learner: Candidate) -> pd.DataFrame:
    """Purged walk-forward metrics overall, per regime, sector, symbol and fold, against baselines.

    IC t-statistics are corrected for the overlap of the h-day returns (``evaluation.overlap_t``)."""
    ev = meta_learner.evaluation
    report = build_validation_report(ev, stockml.settings().labels.horizon)
    h = headline(report)
    replay = replay_error_rates(ev)
    reliability = reliability_table(ev.label.to_numpy(), model_probabilities(ev, "candidate"))
    regime = (
        report[(report.scope == "regime") & (report.metric == "accuracy")].pivot_table(index="group", columns="model", values="value").reset_index()
    )
    sector = (
        report[(report.scope == "sector") & (report.metric == "accuracy")].pivot_table(index="group", columns="model", values="value").reset_index()
    )
    best_rank_baseline = best_baseline({b: h[f"{b}_rank_ic"] for b in ALL_BASELINES})[0]
    shown_models = ["candidate", "rf", "xgb", best_rank_baseline]

    def rank_ic_by(scope: str) -> pd.DataFrame:
        part = report[(report.scope == scope) & (report.metric.isin(["rank_ic", "rank_ic_t"])) & report.model.isin(shown_models)]
        return part.pivot_table(index="group", columns=["model", "metric"], values="value").reset_index()

    decay = meta_learner.decay
    decay = decay[decay.model.isin(shown_models)].pivot_table(index="horizon", columns="model", values=["rank_ic", "rank_ic_t"]).reset_index()
    context.add_output_metadata(
        {
            "dagster/row_count": len(report),
            "candidate_version": meta_learner.version,
            **{k: num(v) for k, v in h.items() if isinstance(v, float)},
            "worst_sector": str(h["worst_sector"]),
            "models vs baselines (out-of-sample)": md_table(comparison_table(report)),
            f"rank IC and t by year (candidate, parts, best baseline {best_rank_baseline})": md_table(_flat(rank_ic_by("year"))),
            "rank IC and t by regime": md_table(_flat(rank_ic_by("regime"))),
            "rank IC and t by sector": md_table(_flat(rank_ic_by("sector"))),
            "rank IC and t by fold": md_table(_flat(rank_ic_by("fold"))),
            "rank IC decay (forward return over 1, 5, 10, 20 days)": md_table(_flat(decay)),
            "accuracy by regime": md_table(regime),
            "accuracy by sector": md_table(sector),
            f"reliability ({meta_learner.version}, out-of-sample, class up)": _reliability_chart(
                meta_learner.version, reliability, f"{ev.date.max():%Y-%m-%d}"
            ),
            "calibration (candidate reliability, rows >= 50)": md_table(reliability[reliability.rows >= 50]),
            "repeat-error rate of replayed mistakes in the evaluation (out-of-sample)": replay["repeat_error_after"],
            "replayed mistakes in the evaluation": replay["replayed_evaluated"],
        }
    )
    return report


def _reliability_chart(version: str, reliability: pd.DataFrame, last: str) -> MetadataValue:
    """Observed frequency of "up" against the mean predicted probability, per probability bin with 50+ rows:
    a calibrated model's two lines coincide."""
    up = reliability[(reliability["class"] == "up") & (reliability.rows >= 50)]
    return line_chart(
        f"{version} reliability, class up, to {last}",
        up.predicted.round(2),
        {"observed frequency": up.observed.to_numpy(), "mean predicted": up.predicted.to_numpy()},
    )


def _flat(table: pd.DataFrame) -> pd.DataFrame:
    table = table.copy()
    table.columns = [" ".join(str(c) for c in col if c != "") if isinstance(col, tuple) else str(col) for col in table.columns]
    return table


@asset(group_name="evaluation", kinds={"pandas", "duckdb"}, metadata=column_schema(BacktestReportSchema), **TABLE)
def backtest_report(context: AssetExecutionContext, stockml: StockMLResource, meta_learner: Candidate, raw_prices: pd.DataFrame) -> pd.DataFrame:
    """Daily long top-k / short bottom-k on the out-of-sample signals, with costs, vs buy-and-hold; and
    at breadth, every model's and baseline's long top-decile / short bottom-decile book held for the
    label horizon (overlapping sub-books), gross and net of costs, on the same days."""
    s = stockml.settings()
    ev = meta_learner.evaluation
    signals = ev[["date", "ticker"]].assign(score=model_score(ev, "candidate"))
    curve = run_backtest(signals, next_day_returns(raw_prices), s.top_k, s.cost_bps)
    summary = summarize_backtest(curve)
    strat = summary.iloc[0]
    books, table = meta_learner.books, meta_learner.book_table  # computed once, with the version's metrics
    base = table[table.model.isin(ALL_BASELINES)]
    best = base.loc[base.net_sharpe.idxmax()] if base.net_sharpe.notna().any() else None
    cand = table.iloc[0]
    context.add_output_metadata(
        {
            "dagster/row_count": len(curve),
            **date_range(curve),
            "top_k": s.top_k,
            "cost_bps_per_side": s.cost_bps,
            **{f"strategy_{k}": num(strat[k]) for k in ["annual_return", "annual_volatility", "sharpe", "max_drawdown", "avg_daily_turnover"]},
            "buy_and_hold_sharpe": num(summary.iloc[1].sharpe),
            f"equity curve ({meta_learner.version}, net of costs)": line_chart(
                f"{meta_learner.version} long/short top-{s.top_k}, net of {s.cost_bps:g} bp",
                curve.date,
                {"strategy": curve.strategy_equity.to_numpy(), "buy-and-hold": curve.buy_and_hold_equity.to_numpy()},
            ),
            "strategy vs buy-and-hold": md_table(summary),
            "equity curve": md_plot(equity_plot(curve)),
            "decile book: net_sharpe (candidate)": num(cand.net_sharpe),
            "decile book: best baseline": "" if best is None else str(best.model),
            "decile book: best baseline net_sharpe": num("nan") if best is None else num(best.net_sharpe),
            f"decile books (top / bottom 10%, held {s.labels.horizon} days, {s.cost_bps:g} bp a side), every model": md_table(table),
            "decile book equity (candidate vs best baseline)": md_plot(
                book_plot(books, ["candidate"] + ([str(best.model)] if best is not None else []), meta_learner.version)
            ),
        }
    )
    return curve


@asset(group_name="explainability", kinds={"shap", "duckdb"}, metadata=column_schema(ShapValuesSchema), deps=[AssetDep("feature_matrix")], **TABLE)
def shap_values(
    context: AssetExecutionContext,
    stockml: StockMLResource,
    meta_learner: Candidate,
    training_set: pd.DataFrame,
    market_regimes: pd.DataFrame,
) -> pd.DataFrame:
    """Per-prediction SHAP values of both base models: the latest date and a validation sample."""
    model = meta_learner.model
    latest = read_feature_rows(stockml, latest=True).merge(market_regimes[["date", "regime"]], on="date", how="left").fillna({"regime": "normal"})
    latest = latest[np.isfinite(latest[FEATURE_NAMES].to_numpy(dtype="float64")).all(axis=1)]
    ev_keys = meta_learner.evaluation[["ticker", "date"]]
    rows = pd.Series(training.positions_of(training_set, ev_keys))
    rows = rows.sample(min(400, len(rows)), random_state=stockml.settings().training.seed)
    val = training_set.iloc[rows.to_numpy()].reset_index(drop=True)  # only the sampled rows are copied
    sv = pd.concat([shap_long(model, latest, "latest"), shap_long(model, val, "validation")], ignore_index=True)
    sv.insert(0, "model_version", meta_learner.version)
    context.add_output_metadata(
        {"dagster/row_count": len(sv), "model_version": meta_learner.version, "latest_rows": len(latest), "validation_rows": len(val)}
    )
    return sv


@asset(group_name="explainability", kinds={"shap", "duckdb"}, metadata=column_schema(ShapImportanceSchema), **TABLE)
def shap_importance(context: AssetExecutionContext, stockml: StockMLResource, shap_values: pd.DataFrame) -> pd.DataFrame:
    """Global and per-regime mean |SHAP| importance, also stored in the shap_analysis table."""
    version = str(shap_values.model_version.iloc[0])
    imp = importance(shap_values)
    imp.insert(0, "model_version", version)
    stockml.shap_analysis().replace(version, imp)
    top = imp[imp.regime == "all"].head(10)
    families = family_shares(imp)
    market_share = float(families.share[families.market_wide].sum())
    per_regime = imp[imp["rank"] <= 5].pivot_table(index="rank", columns="regime", values="feature_name", aggfunc="first").reset_index()
    context.add_output_metadata(
        {
            "dagster/row_count": len(imp),
            "model_version": version,
            "top 10 features": md_table(top[["rank", "feature_name", "importance_score"]]),
            "top 5 by regime": md_table(per_regime),
            "importance by feature family": md_table(families),
            "market-wide share (one value per date: ranks no stock by itself)": market_share,
            "importance plot": md_plot(bar_plot(top.feature_name[::-1], top.importance_score[::-1], "mean |SHAP| (normalised)")),
        }
    )
    latest = shap_values.date[shap_values["sample"] == "latest"]
    on = f"{pd.Timestamp(latest.max()):%Y-%m-%d}" if len(latest) else "no latest rows"
    context.add_output_metadata(
        {
            f"top features ({version}, mean |SHAP| on {on} and a validation sample)": bar_chart(
                f"{version}: mean |SHAP|, latest {on}", top.feature_name, top.importance_score
            )
        }
    )
    return imp


@asset(group_name="promotion", kinds={"pandas", "duckdb"}, metadata=column_schema(PromotionDecisionSchema), **TABLE)
def promotion_decision(
    context: AssetExecutionContext,
    stockml: StockMLResource,
    meta_learner: Candidate,
    validation_report: pd.DataFrame,
    training_set: pd.DataFrame,
) -> pd.DataFrame:
    """Every gate criterion with value, threshold and pass/fail; the verdict and why.

    The recent-days criterion reads the published ``predictions`` (the champions' live record) from the
    warehouse: they are downstream of ``production_model``, a feedback edge a DAG cannot draw; how many
    days it met is in the metadata (``production_live_days``)."""
    s = stockml.settings()
    reg = stockml.registry()
    completed = complete_interrupted_switch(stockml, trigger_of(context.run.tags))
    if completed:
        context.log.warning(f"promotion_decision: {completed}")
    champ = reg.champion()
    replay = ReplayEvidence.of(meta_learner.replay)
    if champ is not None and replay.n:  # the champion on the same replayed mistakes (hash-verified load)
        champion_model = reg.load(champ.version)
        missing = sorted(set(champion_model.feature_names) - set(training_set.columns))
        if missing:  # trained on an earlier feature registry: it cannot score today's rows
            note = f"champion {champ.version} was trained on other features ({len(missing)} no longer computed, e.g. {missing[0]}): not comparable"
            replay = replace(replay, champion_note=note)
        else:
            replay = replace(replay, champion_repeat_error_rate=training.replay_correction(champion_model, training_set)["repeat_error_rate"])
    ev = meta_learner.evaluation
    recent = recent_comparison(ev, published_predictions(stockml, ev.date.min()), s.gate.recent_days, s.labels.horizon)
    evidence = GateEvidence.measure(validation_report, meta_learner.book_table, replay, recent)
    decision = evaluate_gate(evidence, s.gate, champ.metrics if champ else None)
    df = decision.frame()
    df.insert(0, "candidate_version", meta_learner.version)
    df["promoted"] = decision.promoted
    shown = df[["name", "outcome", "value", "op", "threshold", "detail"]].copy()
    for col in ("value", "threshold"):  # n/a criteria show "n/a", never "nan"
        shown[col] = [shown_value(n, v) for n, v in zip(shown.name, shown[col], strict=True)]
    bases = {"rank_ic": evidence.rank_ic, "rank_ic_t": evidence.rank_ic_t, "net_sharpe": evidence.net_sharpe}
    (ric_base, ric), (sharpe_base, sharpe) = evidence.best_baseline("rank_ic"), evidence.best_baseline("net_sharpe")
    version = meta_learner.version
    books = meta_learner.books
    first, last = f"{ev.date.min():%Y-%m-%d}", f"{ev.date.max():%Y-%m-%d}"
    book_lines = {f"candidate {version}": books["candidate"]}
    if sharpe_base in books:
        book_lines[sharpe_base] = books[sharpe_base]
    dates = books["candidate"].date
    context.add_output_metadata(
        {
            "decision": inline_md(decision_evidence(version, decision.promoted, decision, champ, evidence, (ric_base, ric), (sharpe_base, sharpe))),
            "criteria": small_table(reading_table(df)),
            f"decile book equity, net of costs ({version}, {first}..{last})": line_chart(
                f"{version} decile book, net of costs, to {last}",
                dates,
                {name: b.set_index("date").net_equity.reindex(dates).to_numpy() for name, b in book_lines.items()},
            ),
            "verdict": "PROMOTE" if decision.promoted else "REJECT",
            "reason": decision.reason,
            "candidate_version": version,
            "champion_before": champ.version if champ else "none",
            "criteria with their evidence": md_table(shown),
            **{f"candidate_{k}": num(v) for k, v in bases.items()},
            # the published predictions' rank IC on the last scored days (the champions' live record; NaN before any)
            "production_live_rank_ic": num(evidence.recent.production_rank_ic),
            "production_live_days": int(evidence.recent.days),
            "best_baseline_rank_ic": f"{ric_base} {ric:.4f}",
            "best_baseline_net_sharpe": f"{sharpe_base} {sharpe:.2f}",
            "stack vs its parts": meta_learner.stack_note,
            "gate settings": MetadataValue.json(s.as_dict()["gate"]),
            "gate evidence (what the gate judged)": MetadataValue.json(evidence.as_record()),
        }
    )
    return df


def decision_evidence(
    version: str,
    promoted: bool,
    decision,
    champ,
    evidence: GateEvidence,
    rank_ic_base: tuple[str, float],
    sharpe_base: tuple[str, float],
) -> str:
    """The verdict and the evidence a reader weighs first, in a few short lines (shown inline)."""
    ric, t, sharpe = evidence.rank_ic, evidence.rank_ic_t, evidence.net_sharpe
    if promoted:
        head = f"**PROMOTE {version}**: {decision.reason}"
    else:
        head = (
            f"**REJECT {version}** ({'champion ' + champ.version + ' stays' if champ else 'no champion: nothing is published'}): "
            f"failed {', '.join(c.name for c in decision.failed)}"
        )
    lines = [
        head,
        "",
        f"- rank IC {shown_value('rank_ic', ric)} (t {shown_value('rank_ic_t', t)}) vs best baseline "
        f"{rank_ic_base[0] or 'none'} {shown_value('rank_ic', rank_ic_base[1])}",
        f"- decile book net Sharpe {shown_value('net_sharpe_vs_best_baseline', sharpe)} vs best baseline "
        f"{sharpe_base[0] or 'none'} {shown_value('net_sharpe_vs_best_baseline', sharpe_base[1])}",
    ]
    if champ is not None:
        theirs = float(champ.metrics.get("rank_ic", float("nan")))
        lines.append(f"- vs champion {champ.version}: rank IC {shown_value('rank_ic', ric)} against its recorded {shown_value('rank_ic', theirs)}")
    else:
        lines.append("- no champion yet: the first model is judged on the criteria alone")
    if not has_directional_skill(ric, t):
        lines.append(f"- **no evidence of directional skill** (rank IC t below {MIN_SKILL_T:g})")
    return "\n".join(lines)


# The weekly retrain re-materializes it (whatever the gate decides): overdue after 8 days.
@asset(
    group_name="promotion",
    kinds={"duckdb"},
    metadata=column_schema(ProductionModelSchema),
    freshness_policy=FreshnessPolicy.time_window(fail_window=timedelta(days=8), warn_window=timedelta(days=7)),
    **TABLE,
)
def production_model(context: AssetExecutionContext, stockml: StockMLResource, promotion_decision: pd.DataFrame) -> pd.DataFrame:
    """The champion in the model registry; it changes only when the gate promotes the candidate."""
    failpoint("gate")
    reg = stockml.registry()
    version = str(promotion_decision.candidate_version.iloc[0])
    promoted = bool(promotion_decision.promoted.iloc[0])
    if promoted:
        reasons = promotion_decision[["name", "value", "threshold", "passed"]].to_dict("records")
        trigger = trigger_of(context.run.tags)
        reg.promote(
            version,
            reason="passed every promotion criterion",
            actor="promotion_gate",
            decision={"criteria": reasons, "dagster_run_id": context.run_id},
            trigger=trigger if trigger in TRIGGERS else "manual",
        )
    champ = reg.champion_event()
    df = pd.DataFrame(columns=["version", "sha256", "champion_since", "action", "actor", "reason"])
    if champ is not None:
        mv = reg.get(champ.version)
        since = pd.Timestamp(champ.at).tz_convert(None)  # registry times are UTC; tables hold naive UTC
        df = pd.DataFrame(
            [
                {
                    "version": mv.version,
                    "sha256": mv.sha256,
                    "champion_since": since,
                    "action": champ.action,
                    "actor": champ.actor,
                    "reason": champ.reason,
                }
            ]
        )
    df["champion_since"] = pd.to_datetime(df["champion_since"])
    context.add_output_metadata(
        {
            "champion": df.version.iloc[0] if len(df) else "none",
            "changed_this_run": promoted,
            "candidate_version": version,
            "history": md_table(reg.history().drop(columns=["decision"], errors="ignore").tail(10)),
        }
    )
    return df
