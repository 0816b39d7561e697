"""Ingestion, regimes, the rare-event archive, features and labels."""

import json
import time

import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetDep,
    AssetExecutionContext,
    AssetIn,
    Backoff,
    Failure,
    Jitter,
    MaterializeResult,
    MetadataValue,
    RetryPolicy,
    asset,
)

from stockml_assets.checks import check_or_fail, gate_result, gate_spec, partition_gate
from stockml_assets.metadata import (
    add_metadata,
    column_schema,
    date_range,
    malformed_files_fail,
    md_table,
)
from stockml_assets.partitions import FEATURE_HISTORY, PARTITION_EXPR, PARTITIONED, run_days
from stockml_assets.resources import (
    DUCKDB_POOL,
    WAREHOUSE_IO,
    WAREHOUSE_SCHEMA,
    StockMLResource,
    feature_window_where,
    previous_table,
    replace_partition_rows,
)
from stockml_assets.tags import CAPTURE_TAG
from stockml_core.faults import failpoint
from stockml_core.features import (
    ENGINE_VERSION,
    FAMILIES,
    FEATURE_NAMES,
    FEATURE_REGISTRY,
    feature_blocks,
    registry_frame,
    row_positions,
    warmup_violations,
)
from stockml_core.market import data as core_data
from stockml_core.market import quality
from stockml_core.market.events import build_catalog, event_days
from stockml_core.market.regimes import compute_regimes
from stockml_core.modeling.labels import CLASS_NAMES, compute_labels
from stockml_core.schemas import (
    LabelsSchema,
    MarketContextSchema,
    MarketRegimesSchema,
    MarketUniverseSchema,
    QuarantinedPricesSchema,
    RareEventArchiveSchema,
    RareEventCatalogSchema,
    RawPricesSchema,
    feature_matrix_schema,
    validate,
)

TABLE = {"io_manager_key": WAREHOUSE_IO, "pool": DUCKDB_POOL}
FeatureMatrixSchema = feature_matrix_schema(FEATURE_NAMES, {f.name: f.definition for f in FEATURE_REGISTRY})
# The feed may deliver late or a read may hit a file being replaced: retry, with backoff.
FEED_RETRY = RetryPolicy(max_retries=3, delay=2, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)


@asset(group_name="ingestion", kinds={"pandas", "duckdb"}, metadata=column_schema(MarketUniverseSchema), **TABLE)
def market_universe(context: AssetExecutionContext, stockml: StockMLResource) -> pd.DataFrame:
    """Tickers with name and GICS sector, from the data folder's sectors.csv (a missing name is the ticker)."""
    s = stockml.settings()
    with malformed_files_fail("market_universe"):
        df, repairs = core_data.load_universe_checked(s.data_dir, s.tickers)
    for r in repairs:
        context.log.warning(f"market_universe: {r.rows} {r.quirk}: {r.action} ({r.examples})")
    add_metadata(
        context,
        {
            "dagster/row_count": len(df),
            "sectors": df.gics_sector.nunique(),
            "tickers by sector": md_table(df.groupby("gics_sector").ticker.apply(", ".join).reset_index()),
            "repairs": md_table(core_data.repairs_frame(repairs)),
        },
    )
    # Checked before anything is stored: a duplicated ticker, a sector outside GICS or a priced ticker the stored
    # universe had and this one drops fails the step, naming the rows; the stored universe stays the last good one.
    previous = previous_table(stockml, "market_universe")
    try:
        priced = core_data.priced_tickers(s.data_dir) if previous is not None else set()
    except core_data.DataFolderError:  # a malformed price file is raw_prices' failure, reported there
        priced = set()
    problems = core_data.universe_problems(df, previous, priced)
    return partition_gate(context, "market_universe", df, MarketUniverseSchema, *problems.items())


@asset(
    group_name="ingestion",
    kinds={"pandas", "duckdb"},
    metadata={**column_schema(RawPricesSchema), **PARTITION_EXPR},
    **PARTITIONED,
    retry_policy=FEED_RETRY,
    **TABLE,
    check_specs=[gate_spec("raw_prices", RawPricesSchema, "the row rules (failures quarantined, a broken feed refused)")],
)
def raw_prices(context: AssetExecutionContext, stockml: StockMLResource, market_universe: pd.DataFrame):
    """Daily OHLCV per (ticker, date) for the run's trading days: the rows that pass every row rule.

    Rows failing a row rule (impossible OHLC, missing or non-numeric fields, duplicates, future or
    non-trading dates, unknown tickers) and likely corporate-action errors are quarantined into the
    warehouse's ``quarantined_prices`` table with their rule, values and fix; the good rows go on.
    A broken feed (bad rows above the QualitySettings limits) or a malformed file fails the step:
    nothing is stored, the last good partitions and the champion stay. A day the data folder does not
    have yet fails with a retry (the feed may be late).
    """
    s = stockml.settings()
    first, last = run_days(context)
    with malformed_files_fail("raw_prices"):  # a malformed file is no late feed: no retry
        rows = core_data.read_price_rows(s.data_dir, s.tickers, s.start, s.end)
    screening = quality.screen_run(rows, market_universe.ticker, first, last, pd.Timestamp.now().normalize(), s.quality)
    if screening.rows_checked == 0:
        raise Failure(
            description=f"no prices for {first:%Y-%m-%d}..{last:%Y-%m-%d} in {s.data_dir}: the feed has "
            "not delivered these days yet. Nothing was stored; the run retries, and the next "
            "daily run picks the days up once they arrive."
        )
    reasons = quality.refusals(screening, s.quality)
    if reasons:
        raise Failure(
            description=quality.refusal_message(screening, reasons),
            allow_retries=False,
            metadata={
                "quarantine_would_be": md_table(screening.quarantined, limit=50),
                "bad rows by rule and ticker": md_table(screening.counts(), limit=50),
            },
        )
    df = screening.good
    failpoint("ingestion")
    add_metadata(
        context,
        {
            "dagster/row_count": len(df),
            "tickers": df.ticker.nunique(),
            "days": df.date.nunique(),
            **date_range(df),
            "repairs": md_table(core_data.repairs_frame(rows.repairs)),
            "rows_quarantined": int(screening.quarantined[["ticker", "date"]].drop_duplicates().shape[0]),
            "quarantined (first rows)": md_table(screening.quarantined.drop(columns="fix"), limit=20),
        },
    )
    df = partition_gate(context, "raw_prices", df, RawPricesSchema)
    quality.QuarantineStore(stockml.warehouse()).replace(first, last, screening.quarantined)
    return df


@asset(
    group_name="ingestion",
    kinds={"duckdb"},
    deps=[AssetDep("raw_prices")],
    pool=DUCKDB_POOL,
    metadata=column_schema(QuarantinedPricesSchema),
    check_specs=[
        AssetCheckSpec(
            "no_quarantined_prices",
            asset="quarantined_prices",
            blocking=False,
            description="WARN when price rows are quarantined: counts per rule and ticker, the first rows",
        ),
        AssetCheckSpec(
            "quarantined_prices_schema",
            asset="quarantined_prices",
            blocking=True,
            description="Pandera QuarantinedPricesSchema: every row names its rule, values and fix",
        ),
    ],
)
def quarantined_prices(context: AssetExecutionContext, stockml: StockMLResource) -> MaterializeResult:
    """Every price row kept out of the models, with its rule, values and fix (the warehouse's quarantined_prices).

    Written by raw_prices for the days it ingests; the features and labels treat each quarantined
    trading day as a break in the ticker's history (windows spanning it are NaN).
    """
    store = quality.QuarantineStore(stockml.warehouse())
    q = store.read()
    by_rule = q.groupby("rule").agg(rows=("ticker", "size"), tickers=("ticker", "nunique")).reset_index()
    counts = quality.Screening(q.iloc[:0], q, 0).counts()
    meta = {
        "dagster/row_count": len(q),
        "rows quarantined by rule": md_table(by_rule),
        "by rule and ticker": md_table(counts, limit=50),
        "first rows": md_table(q.drop(columns="fix"), limit=20),
        "summary": MetadataValue.json(store.summary()),
    }
    check = AssetCheckResult(
        check_name="no_quarantined_prices",
        passed=q.empty,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "summary": quality.summary_line(q),
            "rows": len(q),
            "by rule": md_table(by_rule),
            "by rule and ticker": md_table(counts, limit=50),
            "first rows": md_table(q.drop(columns="fix"), limit=20),
        },
    )
    v = validate("quarantined_prices", q, QuarantinedPricesSchema)
    schema = AssetCheckResult(
        check_name="quarantined_prices_schema",
        passed=v.passed,
        metadata={"summary": v.summary(), "rows": len(q), "failure_cases": md_table(v.failures, limit=50)},
    )
    return MaterializeResult(metadata=meta, check_results=[check, schema])


@asset(
    group_name="ingestion",
    kinds={"pandas", "duckdb"},
    metadata={**column_schema(MarketContextSchema), **PARTITION_EXPR},
    **PARTITIONED,
    retry_policy=FEED_RETRY,
    **TABLE,
    check_specs=[gate_spec("market_context", MarketContextSchema)],
)
def market_context(context: AssetExecutionContext, stockml: StockMLResource, raw_prices: pd.DataFrame):
    """S&P 500, VIX and 10-year yield per NYSE trading day, with every repair recorded.

    Repairs (forward fills) read the file up to the run's last day only, never later rows.
    """
    s = stockml.settings()
    first, last = run_days(context)
    end = min(last, pd.Timestamp(s.end)) if s.end else last
    with malformed_files_fail("market_context"):
        df, repairs = core_data.load_market(s.data_dir, s.start, end.strftime("%Y-%m-%d"))
    df, extra = core_data.align_market_to_prices(df, raw_prices)
    df = df[(df.date >= first) & (df.date <= last)].reset_index(drop=True)
    add_metadata(
        context,
        {
            "dagster/row_count": len(df),
            **date_range(df),
            "repairs": md_table(core_data.repairs_frame(repairs + extra)),
        },
    )
    return partition_gate(context, "market_context", df, MarketContextSchema)


@asset(group_name="regimes", kinds={"pandas", "duckdb"}, metadata=column_schema(MarketRegimesSchema), deps=[AssetDep("market_context")], **TABLE)
def market_regimes(context: AssetExecutionContext, stockml: StockMLResource) -> pd.DataFrame:
    """Regime per date (crash, high_volatility, recovery, normal) from VIX and drawdown, no look-ahead.

    Reads every stored market_context partition straight from the warehouse. As an IO-managed input
    Dagster would enumerate all of the calendar's partition keys (some 7,000) three times a run to
    load and version it: half a second of every daily run.
    """
    market_context = previous_table(stockml, "market_context")
    if market_context is None:
        raise Failure(description="market_context has no stored partition yet: run the history job (`stockml run` or `stockml backfill`) first.")
    df = compute_regimes(market_context.sort_values("date").reset_index(drop=True), stockml.settings().regimes)
    mix = df.regime.value_counts().rename_axis("regime").reset_index(name="days")
    add_metadata(
        context,
        {"dagster/row_count": len(df), **date_range(df), "regime mix": md_table(mix), "latest_regime": str(df.regime.iloc[-1]) if len(df) else ""},
    )
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
    with malformed_files_fail("rare_event_catalog"):
        historical = core_data.load_rare_events(s.data_dir)
    days = pd.DatetimeIndex(market_context.date)
    as_of = days.max() if len(days) else None
    note = "no capture in this run"
    capture = context.run.tags.get(CAPTURE_TAG)
    if capture:
        event = json.loads(capture)
        added, note = stockml.captured_events().record(event, historical)
        context.log.info(f"rare event capture: {note}")
    captured = stockml.captured_events().read()
    cat = build_catalog(historical, captured)
    if as_of is not None:
        cat = cat[cat.start <= as_of].reset_index(drop=True)
    cat["trading_days"] = [int(((days >= ev.start) & (days <= ev.end)).sum()) for ev in cat.itertuples()]
    add_metadata(
        context,
        {
            "dagster/row_count": len(cat),
            "events": md_table(cat.drop(columns="description")),
            "event_names": MetadataValue.json(sorted(cat.name)),
            "historical_event_names": MetadataValue.json(sorted(cat.name[cat.source == "historical"])),
            "captured_event_names": MetadataValue.json(sorted(cat.name[cat.source == "captured"])),
            "capture": note,
        },
    )
    return cat


# The registry is code, the same for every partition: shown once on the asset's definition, not copied
# into each of a backfill's thousands of per-day materialization events (90 KB each).
_REGISTRY = registry_frame()
FEATURE_REGISTRY_METADATA = {
    "families": md_table(_REGISTRY.groupby("family", sort=False).feature.count().reindex(FAMILIES).reset_index()),
    "feature registry": md_table(_REGISTRY, limit=500),
}


@asset(
    group_name="features",
    kinds={"pandas", "duckdb"},
    metadata={**column_schema(FeatureMatrixSchema), **PARTITION_EXPR, **FEATURE_REGISTRY_METADATA},
    ins={"raw_prices": AssetIn(partition_mapping=FEATURE_HISTORY), "market_context": AssetIn(partition_mapping=FEATURE_HISTORY)},
    deps=[AssetDep("quarantined_prices")],
    **PARTITIONED,
    **TABLE,
    check_specs=[gate_spec("feature_matrix", FeatureMatrixSchema, "features_finite_after_warmup")],
)
def feature_matrix(
    context: AssetExecutionContext, stockml: StockMLResource, raw_prices: pd.DataFrame, market_context: pd.DataFrame, market_universe: pd.DataFrame
) -> MaterializeResult:
    """One row per (ticker, date) with every registered feature, each using data up to its date.

    A run computes only its own trading days, reading each ticker's last MAX_LOOKBACK rows before
    the first of them from the stored price partitions: the daily run computes one day, a backfill
    of history is one vectorized run, computed, checked and stored in blocks of trading days of about
    ``Settings.feature_block_rows`` rows (one transaction: a failed block leaves the stored
    partitions as they were). Equal to a full recompute (tested). A quarantined trading day breaks
    its ticker's history: every window spanning it is NaN, as in a warm-up.
    """
    first, last = run_days(context)
    s = stockml.settings()
    sectors = market_universe[["ticker", "gics_sector"]]
    started = time.perf_counter()
    holes = quality.QuarantineStore(stockml.warehouse()).holes(last)
    prices = raw_prices[raw_prices.date <= last].sort_values(["ticker", "date"], kind="mergesort").reset_index(drop=True)
    del raw_prices
    positions = row_positions(prices, holes)
    market = market_context[market_context.date <= last]
    span = {"first": None, "last": None, "blocks": 0, "checks": []}

    def checked():
        for a, b, part, rows in feature_blocks(prices, first, market, sectors, holes=holes, max_rows=s.feature_block_rows):
            span["checks"] = check_or_fail(
                "feature_matrix", part, FeatureMatrixSchema, ("features_finite_after_warmup", warmup_violations(part, positions=positions[rows]))
            )
            if len(part):
                span["first"] = span["first"] or part.date.min()
                span["last"] = part.date.max()
            span["blocks"] += 1
            context.log.debug(f"feature_matrix: {a:%Y-%m-%d}..{b:%Y-%m-%d}: {len(part):,} rows checked")
            yield part
            failpoint("features")  # the block is written inside the storing transaction

    rows = replace_partition_rows(stockml, "feature_matrix", first, last, checked())
    elapsed = time.perf_counter() - started
    dates = pd.DataFrame({"date": [d for d in (span["first"], span["last"]) if d is not None]})
    return MaterializeResult(
        metadata={
            "dagster/row_count": rows,
            "features": len(FEATURE_NAMES),
            **date_range(dates),
            "history_rows_read": len(prices),
            "quarantine_breaks": len(holes),
            "compute_seconds": round(elapsed, 3),
            "blocks": span["blocks"],
            "engine_version": ENGINE_VERSION,
            "checks passed": ", ".join(span["checks"]),
            "rows checked": rows,
        },
        check_results=[gate_result("feature_matrix", span["checks"], rows, f"{first:%Y-%m-%d}..{last:%Y-%m-%d}")],
    )


@asset(group_name="features", kinds={"pandas", "duckdb"}, metadata=column_schema(LabelsSchema), deps=[AssetDep("quarantined_prices")], **TABLE)
def labels(context: AssetExecutionContext, stockml: StockMLResource, raw_prices: pd.DataFrame, market_universe: pd.DataFrame) -> pd.DataFrame:
    """Forward-horizon classes (down / flat / up) with the forward return and the market-neutral excess return.

    The classes are LabelSettings.target: volatility-scaled triple barriers, or the per-date terciles
    of the market- or sector-neutral forward return. A label whose forward path or volatility window
    spans a quarantined trading day is NaN.
    """
    s = stockml.settings().labels
    holes = quality.QuarantineStore(stockml.warehouse()).holes()
    df = compute_labels(raw_prices, s, holes, market_universe[["ticker", "gics_sector"]])
    mix = df.label.value_counts(normalize=True).sort_index()
    add_metadata(
        context,
        {
            "dagster/row_count": len(df),
            "target": s.target,
            "horizon_days": s.horizon,
            "threshold_sigma": s.threshold,
            "class_mix": MetadataValue.json({n: round(float(mix.get(float(i), 0.0)), 4) for i, n in enumerate(CLASS_NAMES)}),
            "unlabelled_rows (horizon runs past data)": int(df.label.isna().sum()),
            "quarantine_breaks": len(holes),
        },
    )
    return df


def store_rare_event_archive(stockml: StockMLResource, rare_event_catalog: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """``rare_event_archive``'s work: build it in DuckDB, check its keys, swap it in; (keys, checks passed)."""
    wh = stockml.warehouse()
    table, staging = f'"{WAREHOUSE_SCHEMA}"."rare_event_archive"', f'"{WAREHOUSE_SCHEMA}"."rare_event_archive__staging"'
    where, params = feature_window_where(rare_event_catalog)
    cols = ", ".join(f'f."{n}"' for n in FEATURE_NAMES)  # the registry's names, quoted; never data
    with wh.connect() as con:
        dates = con.execute(f'select distinct f.date from "{WAREHOUSE_SCHEMA}"."feature_matrix" f where {where}', params).df()
        days = event_days(dates.date, rare_event_catalog)  # noqa: F841 (read by DuckDB)
        con.execute(f"drop table if exists {staging}")
        con.execute(
            f"create table {staging} as select f.ticker, f.date, d.event, l.label, l.fwd_return, {cols} "
            f'from "{WAREHOUSE_SCHEMA}"."feature_matrix" f join days d on f.date = d.date '
            f'join "{WAREHOUSE_SCHEMA}"."labels" l on l.ticker = f.ticker and l.date = f.date '
            "where l.label is not null order by f.date, f.ticker"
        )
        keys = con.execute(f"select ticker, date, event, label from {staging}").df()
        try:
            checks = check_or_fail("rare_event_archive", keys.assign(date=pd.to_datetime(keys.date).astype("datetime64[ns]")), RareEventArchiveSchema)
        except BaseException:
            con.execute(f"drop table if exists {staging}")
            raise
        con.execute("begin transaction")
        con.execute(f"drop table if exists {table}")
        con.execute(f'alter table {staging} rename to "rare_event_archive"')
        con.execute("commit")
    return keys, checks


@asset(
    group_name="archive",
    kinds={"duckdb"},
    metadata=column_schema(RareEventArchiveSchema),
    deps=[AssetDep("feature_matrix"), AssetDep("labels")],
    pool=DUCKDB_POOL,
    check_specs=[gate_spec("rare_event_archive", RareEventArchiveSchema)],
)
def rare_event_archive(context: AssetExecutionContext, stockml: StockMLResource, rare_event_catalog: pd.DataFrame) -> MaterializeResult:
    """Feature + label samples from every event window, deduplicated on (ticker, date).

    Built inside DuckDB from the stored feature_matrix and labels (the features never enter pandas: at
    3,000 names the windows hold two million rows, and the pandas build peaked at 20 GiB), into a
    staging table whose keys are checked against RareEventArchiveSchema before it replaces the stored
    archive in one transaction; a failing check stores nothing.
    """
    keys, checks = store_rare_event_archive(stockml, rare_event_catalog)
    by_event = keys.groupby("event").agg(rows=("ticker", "size"), tickers=("ticker", "nunique")).reset_index()
    return MaterializeResult(
        metadata={"dagster/row_count": len(keys), "rows by event": md_table(by_event), "checks passed": ", ".join(checks), "rows checked": len(keys)},
        check_results=[gate_result("rare_event_archive", checks, len(keys))],
    )
