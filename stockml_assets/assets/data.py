"""Ingestion, regimes, the rare-event archive, features and labels."""


import time

import pandas as pd
from dagster import AssetCheckResult, AssetCheckSpec, AssetExecutionContext, Failure, MetadataValue, Output, asset

from stockml_assets.metadata import column_schema, date_range, md_table
from stockml_assets.resources import DUCKDB_POOL, WAREHOUSE_IO, StockMLResource, previous_table
from stockml_core import data as core_data
from stockml_core.events import build_archive, build_catalog
from stockml_core.features import ENGINE_VERSION, FAMILIES, FEATURE_NAMES, compute_features, history_fingerprint, registry_frame, update_features
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
    validate,
)

TABLE = {"io_manager_key": WAREHOUSE_IO, "pool": DUCKDB_POOL}
FeatureMatrixSchema = feature_matrix_schema(FEATURE_NAMES)


@asset(group_name="ingestion", kinds={"pandas", "duckdb"}, metadata=column_schema(MarketUniverseSchema), **TABLE)
def market_universe(context: AssetExecutionContext, stockml: StockMLResource) -> pd.DataFrame:
    """Tickers with name and GICS sector, from the data folder's sectors.csv."""
    s = stockml.settings()
    df = core_data.load_universe(s.data_dir, s.tickers)
    context.add_output_metadata({
        "dagster/row_count": len(df), "sectors": df.gics_sector.nunique(),
        "tickers by sector": md_table(df.groupby("gics_sector").ticker.apply(", ".join).reset_index()),
    })
    return df


@asset(
    group_name="ingestion", kinds={"pandas", "duckdb"}, metadata=column_schema(RawPricesSchema),
    check_specs=[AssetCheckSpec("raw_prices_valid", asset="raw_prices", blocking=True,
                                description="Pandera RawPricesSchema: positive prices, high >= low, open/close in range, "
                                            "no (ticker, date) duplicates, no future dates"),
                 AssetCheckSpec("every_ticker_has_sector", asset="raw_prices", blocking=True,
                                description="every priced ticker is in market_universe with a GICS sector")],
    **TABLE,
)
def raw_prices(context: AssetExecutionContext, stockml: StockMLResource, market_universe: pd.DataFrame):
    """Daily OHLCV per (ticker, date), validated before it is stored.

    Bad rows fail the asset after the checks report them, so the last good table stays in the
    warehouse and nothing downstream runs.
    """
    s = stockml.settings()
    df, repairs = core_data.load_prices(s.data_dir, s.tickers, s.start, s.end)
    v = validate("raw_prices", df, RawPricesSchema)
    yield AssetCheckResult(check_name="raw_prices_valid", passed=v.passed, metadata={
        "summary": v.summary(), "failures": len(v.failures), "failure_cases": md_table(v.failures, limit=50)})
    orphans = sorted(set(df.ticker) - set(market_universe.ticker))
    yield AssetCheckResult(check_name="every_ticker_has_sector", passed=not orphans, metadata={
        "tickers_without_sector": ", ".join(orphans) or "none"})
    if not v.passed or orphans:
        fix = "fix or remove these rows in prices.csv"
        if orphans:
            fix += f"; add {', '.join(orphans[:10])} to sectors.csv"
        raise Failure(description=f"{v.summary()}{'; tickers without sector: ' + ', '.join(orphans) if orphans else ''}. "
                                  f"Nothing was stored: the previous raw_prices and the champion are unchanged. Fix: {fix}.")
    yield Output(df, metadata={
        "dagster/row_count": len(df), "tickers": df.ticker.nunique(), **date_range(df),
        "repairs": md_table(core_data.repairs_frame(repairs)),
    })


@asset(group_name="ingestion", kinds={"pandas", "duckdb"}, metadata=column_schema(MarketContextSchema), **TABLE)
def market_context(context: AssetExecutionContext, stockml: StockMLResource, raw_prices: pd.DataFrame) -> pd.DataFrame:
    """S&P 500, VIX and 10-year yield per NYSE trading day, with every repair recorded."""
    s = stockml.settings()
    df, repairs = core_data.load_market(s.data_dir, s.start, s.end)
    df, extra = core_data.align_market_to_prices(df, raw_prices)
    context.add_output_metadata({
        "dagster/row_count": len(df), **date_range(df),
        "repairs": md_table(core_data.repairs_frame(repairs + extra)),
    })
    return df


@asset(group_name="regimes", kinds={"pandas", "duckdb"}, metadata=column_schema(MarketRegimesSchema), **TABLE)
def market_regimes(context: AssetExecutionContext, stockml: StockMLResource, market_context: pd.DataFrame) -> pd.DataFrame:
    """Regime per date (crash, high_volatility, recovery, normal) from VIX and drawdown, no look-ahead."""
    df = compute_regimes(market_context, stockml.settings().regimes)
    mix = df.regime.value_counts().rename_axis("regime").reset_index(name="days")
    context.add_output_metadata({"dagster/row_count": len(df), **date_range(df), "regime mix": md_table(mix),
                                 "latest_regime": str(df.regime.iloc[-1]) if len(df) else ""})
    return df


@asset(group_name="archive", kinds={"pandas", "duckdb"}, metadata=column_schema(RareEventCatalogSchema), **TABLE)
def rare_event_catalog(context: AssetExecutionContext, stockml: StockMLResource, market_context: pd.DataFrame) -> pd.DataFrame:
    """Named crash events with date windows: the data folder's rare_events.csv plus captured ones."""
    cat = build_catalog(core_data.load_rare_events(stockml.settings().data_dir))
    days = pd.DatetimeIndex(market_context.date)
    cat["trading_days"] = [int(((days >= ev.start) & (days <= ev.end)).sum()) for ev in cat.itertuples()]
    context.add_output_metadata({"dagster/row_count": len(cat), "events": md_table(cat.drop(columns="description")),
                                 "event_names": MetadataValue.json(sorted(cat.name))})
    return cat


@asset(group_name="features", kinds={"pandas", "duckdb"}, metadata=column_schema(FeatureMatrixSchema), **TABLE)
def feature_matrix(context: AssetExecutionContext, stockml: StockMLResource, raw_prices: pd.DataFrame,
                   market_context: pd.DataFrame, market_universe: pd.DataFrame) -> pd.DataFrame:
    """One row per (ticker, date) with every registered feature, each using data up to its date.

    Incremental when it can be: if the stored matrix was built by this engine version from the same
    price and market history (fingerprint in the last materialization's metadata), only the new days
    are computed, from each ticker's last MAX_LOOKBACK rows; otherwise everything is recomputed.
    """
    sectors = market_universe[["ticker", "gics_sector"]]
    started = time.perf_counter()
    mode, reason = "full", "no stored feature matrix"
    df = None
    event = context.instance.get_latest_materialization_event(context.asset_key)
    meta = event.asset_materialization.metadata if event and event.asset_materialization else {}
    if "history_fingerprint" in meta and "history_until" in meta:
        # Compare fingerprints first: the stored table is read only when it can be extended.
        until = meta["history_until"].value
        if meta["history_fingerprint"].value != history_fingerprint(raw_prices, market_context, until):
            reason = "price/market history or engine version changed since the stored matrix"
        else:
            stored = previous_table(stockml, "feature_matrix")
            if stored is not None and not stored.empty:
                try:
                    df, added = update_features(stored, raw_prices, market_context, sectors)
                    mode, reason = "incremental", f"{added} new rows after {until}"
                except ValueError as exc:
                    reason = str(exc)
    if df is None:
        df = compute_features(raw_prices, market_context, sectors)
    elapsed = time.perf_counter() - started
    context.log.info(f"feature_matrix: {mode} ({reason}) in {elapsed:.2f} s")
    last_day = pd.Timestamp(df["date"].max()).date() if len(df) else None
    registry = registry_frame()
    families = registry.groupby("family", sort=False).feature.count().reindex(FAMILIES).reset_index()
    context.add_output_metadata({
        "dagster/row_count": len(df), "features": len(FEATURE_NAMES), **date_range(df),
        "computation": f"{mode}: {reason}", "compute_seconds": round(elapsed, 3),
        "engine_version": ENGINE_VERSION,
        **({"history_fingerprint": history_fingerprint(raw_prices, market_context, last_day),
            "history_until": str(last_day)} if len(df) else {}),
        "families": md_table(families), "feature registry": md_table(registry, limit=500)})
    return df


@asset(group_name="features", kinds={"pandas", "duckdb"}, metadata=column_schema(LabelsSchema), **TABLE)
def labels(context: AssetExecutionContext, stockml: StockMLResource, raw_prices: pd.DataFrame) -> pd.DataFrame:
    """Forward-horizon classes (down / flat / up), scaled by trailing volatility, with the forward return."""
    s = stockml.settings().labels
    df = compute_labels(raw_prices, s)
    mix = df.label.value_counts(normalize=True).sort_index()
    context.add_output_metadata({
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
    context.add_output_metadata({"dagster/row_count": len(df), "rows by event": md_table(by_event)})
    return df
