"""Ingestion, regimes, the rare-event archive, features and labels."""


import json
import time
from datetime import timedelta

import pandas as pd
from dagster import (
    AssetDep,
    AssetExecutionContext,
    AssetIn,
    Backoff,
    Failure,
    FreshnessPolicy,
    Jitter,
    MetadataValue,
    RetryPolicy,
    asset,
)

from stockml_assets.metadata import add_metadata, column_schema, date_range, md_table, validated
from stockml_assets.partitions import FEATURE_HISTORY, NEW_YORK, PARTITION_EXPR, PARTITIONED, run_days
from stockml_assets.resources import (
    DUCKDB_POOL,
    WAREHOUSE_IO,
    StockMLResource,
    captured_events,
    previous_table,
    record_captured_event,
)
from stockml_core import data as core_data
from stockml_core.events import build_archive, build_catalog
from stockml_core.features import (
    ENGINE_VERSION,
    FAMILIES,
    FEATURE_NAMES,
    compute_features_since,
    registry_frame,
    warmup_violations,
)
from stockml_core.labels import compute_labels
from stockml_core.regimes import compute_regimes
from stockml_core.schemas import (
    LabelsSchema,
    MarketContextSchema,
    MarketRegimesSchema,
    MarketUniverseSchema,
    RareEventArchiveSchema,
    RareEventCatalogSchema,
    RawPricesSchema,
    feature_matrix_schema,
)

TABLE = {"io_manager_key": WAREHOUSE_IO, "pool": DUCKDB_POOL}
FeatureMatrixSchema = feature_matrix_schema(FEATURE_NAMES)
CAPTURE_TAG = "stockml/capture"  # JSON {name, start, end, description} set by the rare-event capture sensor
# The feed may deliver late or a read may hit a file being replaced: retry, with backoff.
FEED_RETRY = RetryPolicy(max_retries=3, delay=2, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)
# The daily assets are due by 20:00 New York on weekdays, from a run after the 16:00 close.
DAILY_FRESHNESS = FreshnessPolicy.cron(deadline_cron="0 20 * * 1-5", lower_bound_delta=timedelta(hours=4), timezone=NEW_YORK)


def warmup_check(features: pd.DataFrame, prior_rows: pd.Series) -> tuple[str, pd.DataFrame]:
    """Every feature is finite after its warm-up (lookback from the feature registry)."""
    return "features_finite_after_warmup", warmup_violations(features, prior_rows)


@asset(group_name="ingestion", kinds={"pandas", "duckdb"}, metadata=column_schema(MarketUniverseSchema), **TABLE)
def market_universe(context: AssetExecutionContext, stockml: StockMLResource) -> pd.DataFrame:
    """Tickers with name and GICS sector, from the data folder's sectors.csv."""
    s = stockml.settings()
    df = core_data.load_universe(s.data_dir, s.tickers)
    add_metadata(context, {
        "dagster/row_count": len(df), "sectors": df.gics_sector.nunique(),
        "tickers by sector": md_table(df.groupby("gics_sector").ticker.apply(", ".join).reset_index()),
    })
    return df


@asset(group_name="ingestion", kinds={"pandas", "duckdb"}, metadata={**column_schema(RawPricesSchema), **PARTITION_EXPR},
       **PARTITIONED, retry_policy=FEED_RETRY, freshness_policy=DAILY_FRESHNESS, **TABLE)
def raw_prices(context: AssetExecutionContext, stockml: StockMLResource, market_universe: pd.DataFrame) -> pd.DataFrame:
    """Daily OHLCV per (ticker, date) for the run's trading days, validated before it is stored.

    Blocking gates, evaluated on exactly the days the run writes: Pandera RawPricesSchema (positive
    prices, high >= low, open/close in range, no duplicates, no future dates) and every ticker in
    market_universe. Bad rows fail the step with the rows named, so the last good partitions stay and
    nothing downstream runs. A day the data folder does not have yet fails with a retry (the feed may
    be late).
    """
    s = stockml.settings()
    first, last = run_days(context)
    df, repairs = core_data.load_prices(s.data_dir, s.tickers, s.start, s.end)
    df = df[(df.date >= first) & (df.date <= last)].reset_index(drop=True)
    if df.empty:
        raise Failure(description=f"no prices for {first:%Y-%m-%d}..{last:%Y-%m-%d} in {s.data_dir}: the feed has "
                                  "not delivered these days yet. Nothing was stored; the run retries, and the next "
                                  "daily run picks the days up once they arrive.")
    orphans = df.loc[~df.ticker.isin(market_universe.ticker), ["ticker", "date"]]
    add_metadata(context, {"dagster/row_count": len(df), "tickers": df.ticker.nunique(), "days": df.date.nunique(),
                           **date_range(df), "repairs": md_table(core_data.repairs_frame(repairs))})
    return validated(context, "raw_prices", df, RawPricesSchema, ("every_ticker_has_sector (add them to sectors.csv)", orphans))


@asset(group_name="ingestion", kinds={"pandas", "duckdb"}, metadata={**column_schema(MarketContextSchema), **PARTITION_EXPR},
       **PARTITIONED, retry_policy=FEED_RETRY, freshness_policy=DAILY_FRESHNESS, **TABLE)
def market_context(context: AssetExecutionContext, stockml: StockMLResource, raw_prices: pd.DataFrame):
    """S&P 500, VIX and 10-year yield per NYSE trading day, with every repair recorded.

    Repairs (forward fills) read the file up to the run's last day only, never later rows.
    """
    s = stockml.settings()
    first, last = run_days(context)
    end = min(last, pd.Timestamp(s.end)) if s.end else last
    df, repairs = core_data.load_market(s.data_dir, s.start, end.strftime("%Y-%m-%d"))
    df, extra = core_data.align_market_to_prices(df, raw_prices)
    df = df[(df.date >= first) & (df.date <= last)].reset_index(drop=True)
    add_metadata(context, {
        "dagster/row_count": len(df), **date_range(df),
        "repairs": md_table(core_data.repairs_frame(repairs + extra)),
    })
    return validated(context, "market_context", df, MarketContextSchema)


@asset(group_name="regimes", kinds={"pandas", "duckdb"}, metadata=column_schema(MarketRegimesSchema),
       deps=[AssetDep("market_context")], **TABLE)
def market_regimes(context: AssetExecutionContext, stockml: StockMLResource) -> pd.DataFrame:
    """Regime per date (crash, high_volatility, recovery, normal) from VIX and drawdown, no look-ahead.

    Reads every stored market_context partition straight from the warehouse. As an IO-managed input
    Dagster would enumerate all of the calendar's partition keys (some 7,000) three times a run to
    load and version it: half a second of every daily run.
    """
    market_context = previous_table(stockml, "market_context")
    if market_context is None:
        raise Failure(description="market_context has no stored partition yet: run the history job "
                                  "(`stockml run` or `stockml backfill`) first.")
    df = compute_regimes(market_context.sort_values("date").reset_index(drop=True), stockml.settings().regimes)
    mix = df.regime.value_counts().rename_axis("regime").reset_index(name="days")
    add_metadata(context, {"dagster/row_count": len(df), **date_range(df), "regime mix": md_table(mix),
                                 "latest_regime": str(df.regime.iloc[-1]) if len(df) else ""})
    return df


@asset(group_name="archive", kinds={"pandas", "duckdb"}, metadata=column_schema(RareEventCatalogSchema), **TABLE)
def rare_event_catalog(context: AssetExecutionContext, stockml: StockMLResource, market_context: pd.DataFrame) -> pd.DataFrame:
    """Named crash events with date windows: the data folder's rare_events.csv plus captured ones.

    A run launched by the rare-event capture sensor carries the event in its ``stockml/capture`` tag;
    it is recorded in the warehouse's ``captured_events`` table first (never twice, never
    overlapping a catalogued event). Events that start after the last market day are not known yet
    and are left out, so a replay of history does not see the future.
    """
    s = stockml.settings()
    historical = core_data.load_rare_events(s.data_dir)
    days = pd.DatetimeIndex(market_context.date)
    as_of = days.max() if len(days) else None
    note = "no capture in this run"
    capture = context.run.tags.get(CAPTURE_TAG)
    if capture:
        event = json.loads(capture)
        added, note = record_captured_event(stockml, event, historical)
        context.log.info(f"rare event capture: {note}")
    captured = captured_events(stockml)
    cat = build_catalog(historical, captured)
    if as_of is not None:
        cat = cat[cat.start <= as_of].reset_index(drop=True)
    cat["trading_days"] = [int(((days >= ev.start) & (days <= ev.end)).sum()) for ev in cat.itertuples()]
    add_metadata(context, {"dagster/row_count": len(cat), "events": md_table(cat.drop(columns="description")),
                                 "event_names": MetadataValue.json(sorted(cat.name)),
                                 "historical_event_names": MetadataValue.json(sorted(cat.name[cat.source == "historical"])),
                                 "captured_event_names": MetadataValue.json(sorted(cat.name[cat.source == "captured"])),
                                 "capture": note})
    return cat


# The registry is code, the same for every partition: shown once on the asset's definition, not copied
# into each of a backfill's thousands of per-day materialization events (90 KB each).
_REGISTRY = registry_frame()
FEATURE_REGISTRY_METADATA = {
    "families": md_table(_REGISTRY.groupby("family", sort=False).feature.count().reindex(FAMILIES).reset_index()),
    "feature registry": md_table(_REGISTRY, limit=500)}


@asset(group_name="features", kinds={"pandas", "duckdb"},
       metadata={**column_schema(FeatureMatrixSchema), **PARTITION_EXPR, **FEATURE_REGISTRY_METADATA},
       ins={"raw_prices": AssetIn(partition_mapping=FEATURE_HISTORY), "market_context": AssetIn(partition_mapping=FEATURE_HISTORY)},
       **PARTITIONED, freshness_policy=DAILY_FRESHNESS, **TABLE)
def feature_matrix(context: AssetExecutionContext, raw_prices: pd.DataFrame,
                   market_context: pd.DataFrame, market_universe: pd.DataFrame):
    """One row per (ticker, date) with every registered feature, each using data up to its date.

    A run computes only its own trading days, reading each ticker's last MAX_LOOKBACK rows before
    the first of them from the stored price partitions: the daily run computes one day, a backfill
    of history is one vectorized run. Equal to a full recompute (tested).
    """
    first, last = run_days(context)
    sectors = market_universe[["ticker", "gics_sector"]]
    started = time.perf_counter()
    prices = raw_prices[raw_prices.date <= last]
    prior = prices[prices.date < first].groupby("ticker").size()
    df = compute_features_since(prices, first, market_context[market_context.date <= last], sectors)
    elapsed = time.perf_counter() - started
    add_metadata(context, {
        "dagster/row_count": len(df), "features": len(FEATURE_NAMES), **date_range(df),
        "history_rows_read": len(prices), "compute_seconds": round(elapsed, 3), "engine_version": ENGINE_VERSION})
    return validated(context, "feature_matrix", df, FeatureMatrixSchema, warmup_check(df, prior))


@asset(group_name="features", kinds={"pandas", "duckdb"}, metadata=column_schema(LabelsSchema), **TABLE)
def labels(context: AssetExecutionContext, stockml: StockMLResource, raw_prices: pd.DataFrame) -> pd.DataFrame:
    """Forward-horizon classes (down / flat / up), scaled by trailing volatility, with the forward return."""
    s = stockml.settings().labels
    df = compute_labels(raw_prices, s)
    mix = df.label.value_counts(normalize=True).sort_index()
    add_metadata(context, {
        "dagster/row_count": len(df), "horizon_days": s.horizon, "threshold_sigma": s.threshold,
        "class_mix": MetadataValue.json({n: round(float(mix.get(float(i), 0.0)), 4) for i, n in enumerate(["down", "flat", "up"])}),
        "unlabelled_rows (horizon runs past data)": int(df.label.isna().sum()),
    })
    return df


@asset(group_name="archive", kinds={"pandas", "duckdb"}, metadata=column_schema(RareEventArchiveSchema), **TABLE)
def rare_event_archive(context: AssetExecutionContext, rare_event_catalog: pd.DataFrame, feature_matrix: pd.DataFrame,
                       labels: pd.DataFrame) -> pd.DataFrame:
    """Feature + label samples from every event window, deduplicated on (ticker, date)."""
    samples = feature_matrix.merge(labels[["ticker", "date", "label", "fwd_return"]], on=["ticker", "date"])
    samples = samples[samples.label.notna()]
    df = build_archive(samples, rare_event_catalog)
    cols = ["ticker", "date", "event", "label", "fwd_return"] + FEATURE_NAMES
    df = df[cols]
    by_event = df.groupby("event").agg(rows=("ticker", "size"), tickers=("ticker", "nunique")).reset_index()
    add_metadata(context, {"dagster/row_count": len(df), "rows by event": md_table(by_event)})
    return df
