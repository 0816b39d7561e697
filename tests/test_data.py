"""Tests of stockml_core.market.data on the real data folder: every documented quirk is repaired and recorded."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stockml_core.market.calendar import is_trading_day, trading_days
from stockml_core.market.data import (
    MAX_FILL_DAYS,
    DataFolderError,
    Repair,
    load_market,
    load_prices,
    load_rare_events,
    load_universe,
    read_price_rows,
    repairs_frame,
)
from stockml_core.settings import BROAD_DATA_DIR, DEFAULT_DATA_DIR, SAMPLE_DATA_DIR, data_dir_from_env

DATA = Path(__file__).resolve().parent.parent / "data" / "sample"
MISSING_VIX_DAYS = ["1991-03-01", "1997-01-31", "1997-11-26", "1999-12-31"]


@pytest.fixture(scope="module")
def raw_market() -> pd.DataFrame:
    return pd.read_csv(DATA / "market.csv.gz", parse_dates=["date"])


@pytest.fixture(scope="module")
def loaded_market() -> tuple[pd.DataFrame, list[Repair]]:
    return load_market(DATA)


def _repair(repairs: list[Repair], quirk: str) -> Repair:
    found = [r for r in repairs if r.quirk == quirk]
    assert len(found) == 1, f"expected one repair {quirk!r}, got {[r.quirk for r in repairs]}"
    return found[0]


def _write_market(folder: Path, frame: pd.DataFrame) -> None:
    frame.assign(date=frame.date.dt.strftime("%Y-%m-%d")).to_csv(folder / "market.csv", index=False)


# ------------------------------------------------------------------------------------ load_market


def test_market_keeps_only_nyse_trading_days(loaded_market) -> None:
    market, _ = loaded_market
    assert market.date.is_monotonic_increasing and market.date.is_unique
    days = trading_days(market.date.min(), market.date.max())
    assert pd.DatetimeIndex(market.date).difference(days).empty
    assert pd.Timestamp("2004-06-11") not in set(market.date)


def test_market_records_holiday_rows_dropped(loaded_market, raw_market) -> None:
    _, repairs = loaded_market
    rep = _repair(repairs, "rows on NYSE holidays")
    closed = ~raw_market.date.map(is_trading_day)
    assert rep.action == "dropped"
    assert rep.rows == int(closed.sum()) == 33
    assert "2004-06-11" in rep.examples
    assert "2022-05-30" in rep.examples  # the first of the post-2022 US holidays the VIX printed on


def test_market_widens_vix_range_to_include_open_and_close(loaded_market, raw_market) -> None:
    market, repairs = loaded_market
    outside = (raw_market.vix_open > raw_market.vix_high) | (raw_market.vix_open < raw_market.vix_low)
    assert int(outside.sum()) == 47
    rep = _repair(repairs, "VIX open outside [low, high]")
    assert rep.rows == 47 and "widened" in rep.action
    assert (market.vix_high >= market[["vix_open", "vix_close"]].max(axis=1)).all()
    assert (market.vix_low <= market[["vix_open", "vix_close"]].min(axis=1)).all()


def test_market_widening_changes_only_the_inconsistent_rows(loaded_market, raw_market) -> None:
    market, _ = loaded_market
    both = market.merge(raw_market, on="date", suffixes=("", "_raw"))
    changed = (both.vix_high != both.vix_high_raw) | (both.vix_low != both.vix_low_raw)
    changed &= both.vix_close_raw.notna()  # the four forward-filled VIX days are a different repair
    assert int(changed.sum()) == 47
    assert (both.vix_close[both.vix_close_raw.notna()] == both.vix_close_raw[both.vix_close_raw.notna()]).all()


def test_market_forward_fills_the_four_missing_vix_days(loaded_market, raw_market) -> None:
    market, repairs = loaded_market
    rep = _repair(repairs, "VIX missing on trading days")
    assert rep.rows == 4 and "forward-filled" in rep.action
    assert rep.examples.split(", ") == MISSING_VIX_DAYS
    indexed = market.set_index("date")
    for day in pd.to_datetime(MISSING_VIX_DAYS):
        prev = indexed.index[indexed.index.get_loc(day) - 1]
        assert raw_market.loc[raw_market.date == day, "vix_close"].isna().all()
        assert indexed.loc[day, "vix_close"] == indexed.loc[prev, "vix_close"]  # carried forward, not back


def test_market_forward_fills_yield_gaps(loaded_market, raw_market) -> None:
    market, repairs = loaded_market
    rep = _repair(repairs, "10-year yield missing")
    assert rep.rows > 100 and "forward-filled" in rep.action
    assert market.dgs10.notna().all()
    day = pd.Timestamp("1990-10-08")  # Columbus Day: stocks trade, bonds do not
    assert raw_market.loc[raw_market.date == day, "dgs10"].isna().all()
    indexed = market.set_index("date")
    assert indexed.loc[day, "dgs10"] == indexed.loc[pd.Timestamp("1990-10-05"), "dgs10"]


def test_market_drops_the_long_outage_at_the_end(loaded_market, raw_market) -> None:
    market, repairs = loaded_market
    rep = _repair(repairs, "rows without S&P 500, VIX or yield")
    assert rep.action == "dropped" and rep.rows > 100
    assert rep.examples.endswith("2026-07-23")
    assert market[["spx_close", "vix_close", "dgs10"]].notna().all().all()
    last_spx = raw_market.loc[raw_market.spx_close.notna(), "date"].max()
    reachable = trading_days(last_spx, "2026-12-31")[: MAX_FILL_DAYS + 1]
    assert market.date.max() <= reachable[-1], "a value was carried forward more than 5 days"
    assert market.date.max() < raw_market.date.max()


def test_market_records_close_only_sp500_rows(loaded_market) -> None:
    market, repairs = loaded_market
    rep = _repair(repairs, "S&P 500 close only")
    assert rep.examples.startswith("2023-12-29")
    late = market[market.date > "2023-12-28"]
    assert late.spx_open.isna().all() and late.spx_close.notna().all()


def test_market_fill_stops_after_five_days(tmp_path, raw_market) -> None:
    window = raw_market[(raw_market.date >= "2015-03-02") & (raw_market.date <= "2015-03-31")].reset_index(drop=True)
    window.loc[10:17, "spx_close"] = np.nan  # an 8-day outage
    _write_market(tmp_path, window)
    market, repairs = load_market(tmp_path)
    gap_days = window.date[10:18].reset_index(drop=True)
    kept = market[market.date.isin(gap_days)]
    assert list(kept.date) == list(gap_days[:MAX_FILL_DAYS])
    assert (kept.spx_close == window.spx_close[9]).all()
    assert _repair(repairs, "rows without S&P 500, VIX or yield").rows == 8 - MAX_FILL_DAYS
    assert len(market) == len(window) - (8 - MAX_FILL_DAYS)


def test_market_start_end_filters(loaded_market) -> None:
    market, _ = load_market(DATA, start="2010-01-01", end="2010-12-31")
    assert market.date.min() == pd.Timestamp("2010-01-04")
    assert market.date.max() == pd.Timestamp("2010-12-31")
    assert len(market) == len(trading_days("2010-01-01", "2010-12-31"))


def test_repairs_frame_has_one_row_per_repair(loaded_market) -> None:
    _, repairs = loaded_market
    frame = repairs_frame(repairs)
    assert list(frame.columns) == ["table", "quirk", "rows", "action", "reason", "examples"]
    assert len(frame) == len(repairs)
    assert frame.reason.str.len().gt(0).all()


# ------------------------------------------------------------------------------------ load_prices


def test_load_prices_filters_tickers_and_dates() -> None:
    prices, _ = load_prices(DATA, tickers=("KO", "XOM"), start="2010-01-01", end="2010-06-30")
    assert set(prices.ticker) == {"KO", "XOM"}
    assert prices.date.min() >= pd.Timestamp("2010-01-01")
    assert prices.date.max() <= pd.Timestamp("2010-06-30")
    assert len(prices) == 2 * len(trading_days("2010-01-01", "2010-06-30"))
    assert list(prices.columns) == ["ticker", "date", "open", "high", "low", "close", "volume"]
    assert prices[["ticker", "date"]].equals(prices.sort_values(["ticker", "date"])[["ticker", "date"]])


def test_load_prices_records_short_histories_and_survivorship() -> None:
    prices, repairs = load_prices(DATA, tickers=("KO", "PSA"), start="2004-01-01", end="2006-12-31")
    short = _repair(repairs, "short histories")
    assert short.rows == 1 and "PSA from 2005-02-25" in short.examples
    assert _repair(repairs, "survivorship").rows == 2
    assert prices[prices.ticker == "PSA"].date.min() == pd.Timestamp("2005-02-25")


def test_load_universe_filters_tickers() -> None:
    universe = load_universe(DATA, tickers=("KO", "XOM"))
    assert list(universe.ticker) == ["KO", "XOM"]
    assert load_universe(DATA).gics_sector.nunique() == 11


def test_plain_csv_data_folder_works(tmp_path) -> None:
    prices, _ = load_prices(DATA, tickers=("KO", "XOM"), start="2012-01-01", end="2012-03-31")
    prices.assign(date=prices.date.dt.strftime("%Y-%m-%d")).to_csv(tmp_path / "prices.csv", index=False)
    shutil.copy(DATA / "sectors.csv", tmp_path / "sectors.csv")
    shutil.copy(DATA / "market.csv.gz", tmp_path / "market.csv.gz")
    again, _ = load_prices(tmp_path)
    pd.testing.assert_frame_equal(again, prices)
    market, _ = load_market(tmp_path, start="2012-01-01", end="2012-03-31")
    assert len(market) == len(trading_days("2012-01-01", "2012-03-31"))
    assert len(load_universe(tmp_path)) == 33


def test_missing_market_file_names_the_file_and_the_env_var(tmp_path) -> None:
    shutil.copy(DATA / "sectors.csv", tmp_path / "sectors.csv")
    with pytest.raises(DataFolderError, match=r"market\.csv") as err:
        load_market(tmp_path)
    assert "STOCKML_DATA_DIR" in str(err.value)


def test_missing_column_is_named(tmp_path, raw_market) -> None:
    _write_market(tmp_path, raw_market.head(30).drop(columns=["vix_close"]))
    with pytest.raises(DataFolderError, match="vix_close"):
        load_market(tmp_path)


# ------------------------------------------------------------------------------------ rare events


def test_rare_events_reject_end_before_start(tmp_path) -> None:
    pd.DataFrame(
        {"name": ["ok", "backwards"], "start": ["2001-01-02", "2008-10-10"], "end": ["2001-02-01", "2008-09-01"], "description": ["x", "y"]}
    ).to_csv(tmp_path / "rare_events.csv", index=False)
    with pytest.raises(DataFolderError, match="backwards"):
        load_rare_events(tmp_path)


def test_rare_events_hold_at_least_eight_events_inside_the_price_history() -> None:
    events = load_rare_events(DATA)
    assert list(events.columns) == ["name", "start", "end", "description"]
    assert events.start.is_monotonic_increasing
    assert (events.end >= events.start).all()
    inside = events[(events.start >= "1990-01-02") & (events.end <= "2017-11-10")]
    assert len(inside) >= 8


def test_rare_events_fall_back_to_the_embedded_catalog(tmp_path) -> None:
    pd.testing.assert_frame_equal(load_rare_events(tmp_path), load_rare_events(DATA))


# ------------------------------------------------------------------------------------ settings


def test_data_dir_comes_from_the_env_var(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("STOCKML_DATA_DIR", str(tmp_path))
    assert data_dir_from_env() == tmp_path.resolve()
    monkeypatch.delenv("STOCKML_DATA_DIR")
    assert data_dir_from_env() == DEFAULT_DATA_DIR.resolve() == BROAD_DATA_DIR.resolve()


def _bad_folder(root: Path, name: str, prices_text: str | None = None, prices_bytes: bytes | None = None, market: pd.DataFrame | None = None) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    shutil.copy(SAMPLE_DATA_DIR / "sectors.csv", folder / "sectors.csv")
    raw = pd.read_csv(SAMPLE_DATA_DIR / "market.csv.gz")
    (market if market is not None else raw[raw.date >= "2016-01-01"]).to_csv(folder / "market.csv", index=False)
    if prices_bytes is not None:
        (folder / "prices.csv.gz").write_bytes(prices_bytes)
    elif prices_text is not None:
        (folder / "prices.csv").write_text(prices_text)
    return folder


def test_every_malformed_file_kind_is_refused_with_its_own_message(tmp_path) -> None:
    """Issue 15: each of these was retried as a late feed, then reported as `Exceeded max_retries of 3`."""
    import gzip

    prices = pd.read_csv(SAMPLE_DATA_DIR / "prices.csv.gz")
    prices = prices[prices.ticker.isin(["XOM", "KO"]) & (prices.date >= "2017-01-01")]
    full = prices.to_csv(index=False)
    market = pd.read_csv(SAMPLE_DATA_DIR / "market.csv.gz")
    cases = {
        "missing_column": (dict(prices_text=prices.drop(columns="volume").to_csv(index=False)), "missing columns \\['volume'\\]"),
        "empty_file": (dict(prices_text=""), "the file is empty"),
        "header_only": (dict(prices_text=full.splitlines()[0] + "\n"), "a header and no rows"),
        "truncated": (dict(prices_text=full[: len(full) // 2]), "looks truncated"),
        "truncated_gzip": (dict(prices_bytes=gzip.compress(full.encode())[:400]), "cut off or corrupt"),
        "dd_mm_yyyy": (
            dict(prices_text=prices.assign(date=pd.to_datetime(prices.date).dt.strftime("%d-%m-%Y")).to_csv(index=False)),
            "not ISO dates",
        ),
        "missing_prices": (dict(), "no prices.csv or prices.csv.gz"),
    }
    for name, (kwargs, message) in cases.items():
        folder = _bad_folder(tmp_path, name, **kwargs)
        with pytest.raises(DataFolderError, match=message):
            read_price_rows(folder)
    no_vix = _bad_folder(tmp_path, "no_vix", prices_text=full, market=market.drop(columns="vix_close"))
    with pytest.raises(DataFolderError, match="missing columns \\['vix_close'\\]"):
        load_market(no_vix)
    # A file that ends without a newline but whose last row is whole is fine.
    whole = _bad_folder(tmp_path, "no_final_newline", prices_text=full.rstrip("\n"))
    assert len(read_price_rows(whole).frame) == len(prices)


def test_a_changed_file_replaces_its_cached_parse_instead_of_adding_one(tmp_path) -> None:
    """The parse cache keys on the file's path and keeps one version: a feed rewriting its prices file daily
    holds one parse (us-broad's is 113 MiB), not one per day; a bad file is not cached; few files are kept."""
    import os

    from stockml_core.market.data import _parsed_csv, latest_price_date, load_prices, per_file
    from tests.conftest import write_slice_folder

    folder = tmp_path / "data"
    prices = write_slice_folder(folder, tickers=["XOM", "KO"], start="2017-06-01")
    _parsed_csv.cache_clear()
    first = load_prices(folder, None, None)[0]
    for day in range(3):  # the feed appends a day: a new version of the same file
        grown = pd.concat([prices, prices.tail(1).assign(date=f"2017-12-0{day + 4}")])
        grown.to_csv(folder / "prices.csv", index=False)
        os.utime(folder / "prices.csv", ns=(10**18 + day, 10**18 + day))
        assert latest_price_date(folder) == pd.Timestamp(f"2017-12-0{day + 4}")
        assert load_prices(folder, None, None)[0].date.max() > first.date.max()
    info = _parsed_csv.cache_info()
    assert info["files"] == 1 and info["misses"] == 4  # one parse per version, one held

    calls = []
    cached = per_file(lambda path, mtime, size: calls.append(path) or len(calls), max_files=2)
    assert [cached("a", 1, 1), cached("a", 1, 1), cached("b", 1, 1), cached("c", 1, 1), cached("a", 1, 1)] == [1, 1, 2, 3, 4]
    assert cached.cache_info() == {"hits": 1, "misses": 4, "files": 2, "max_files": 2}  # "a" was evicted, parsed again

    def failing(path, mtime, size):
        calls.append(path)
        raise ValueError("bad file")

    bad = per_file(failing)
    for _ in range(2):
        with pytest.raises(ValueError):
            bad("x", 1, 1)
    assert calls[-2:] == ["x", "x"] and bad.cache_info()["files"] == 0  # an error is met again, never served from the cache


def test_the_parse_cache_is_safe_under_the_code_servers_threads() -> None:
    """Sensor and schedule ticks run on threads of one code server: concurrent calls over more files than the
    cache holds (every call evicting) raise nothing and keep at most ``max_files``."""
    import sys
    from concurrent.futures import ThreadPoolExecutor

    from stockml_core.market.data import per_file

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch often: unguarded, the eviction failed 12 trials in 20 like this
    try:
        for _ in range(5):
            cached = per_file(lambda path, mtime, size: (path, mtime), max_files=2)
            with ThreadPoolExecutor(8) as pool:
                got = list(pool.map(lambda i, c=cached: c(f"p{i % 5}", i % 3, 1), range(4000)))
            assert got == [(f"p{i % 5}", i % 3) for i in range(4000)]
            info = cached.cache_info()
            assert info["files"] <= 2 and info["misses"] + info["hits"] == 4000
    finally:
        sys.setswitchinterval(interval)
