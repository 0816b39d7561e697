"""Reading a market data folder and repairing its known quirks, each with a recorded reason.

A data folder holds ``prices.csv[.gz]`` (ticker, date, open, high, low, close, volume),
``sectors.csv`` (ticker, name, gics_sector), ``market.csv[.gz]`` (date, spx_*, vix_*, dgs10) and
optionally ``rare_events.csv`` (name, start, end, description).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass
from functools import update_wrapper
from pathlib import Path

import numpy as np
import pandas as pd

from stockml_core.market.calendar import nyse_holidays
from stockml_core.settings import BUNDLED_RARE_EVENTS

PRICE_COLUMNS = ["ticker", "date", "open", "high", "low", "close", "volume"]
MAX_FILL_DAYS = 5  # longer gaps are not carried forward: a stale value would pose as news

MARKET_COLUMNS = [
    "date",
    "spx_open",
    "spx_high",
    "spx_low",
    "spx_close",
    "spx_volume",
    "vix_open",
    "vix_high",
    "vix_low",
    "vix_close",
    "dgs10",
]


class DataFolderError(ValueError):
    """A data folder is missing a file or a column."""


@dataclass(frozen=True)
class Repair:
    """One deliberate repair (or accepted quirk) of the input data and why."""

    table: str
    quirk: str
    rows: int
    action: str
    reason: str
    examples: str = ""


def _find(data_dir: Path, stem: str) -> Path:
    found = [data_dir / name for name in (f"{stem}.csv", f"{stem}.csv.gz") if (data_dir / name).exists()]
    if len(found) == 2:
        raise DataFolderError(
            f"{data_dir}: both {stem}.csv and {stem}.csv.gz exist, and they may differ; keep the one the feed writes and remove the other"
        )
    if found:
        return found[0]
    raise DataFolderError(
        f"{data_dir}: no {stem}.csv or {stem}.csv.gz; point STOCKML_DATA_DIR at a folder with prices.csv[.gz], sectors.csv and market.csv[.gz]"
    )


@contextmanager
def _readable(path: str, size: int, kind: str):
    """Reading ``path`` inside this block: a file that cannot be read as CSV raises DataFolderError saying why."""
    import gzip
    import zlib

    if size == 0:
        raise DataFolderError(f"{path}: the file is empty (0 bytes); write the {kind} rows with their header")
    try:
        yield
    except pd.errors.EmptyDataError:
        raise DataFolderError(f"{path}: the file holds no header and no rows; write the {kind} rows with their header") from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataFolderError(f"{path}: the compressed file is cut off or corrupt ({exc}); write it again") from None
    except pd.errors.ParserError as exc:
        raise DataFolderError(f"{path}: not a readable CSV ({str(exc).strip()[:200]})") from None
    except UnicodeDecodeError as exc:
        raise DataFolderError(
            f"{path}: not a text CSV (byte {exc.start} is not UTF-8 text: a binary file, or another encoding); write it as UTF-8 CSV"
        ) from None


class per_file:
    """A file's parse kept while the file stays as it was: ``fn(path, mtime_ns, size, *args)`` is computed once
    per file version, and a changed file (new mtime or size) *replaces* its entry, so a feed that rewrites its
    prices file every day holds one parse, never a week of stale ones (a parse of ``us-broad``'s prices holds
    113 MiB). At most ``max_files`` files, the least recently used evicted. Errors are not cached.
    ``benchmarks/caches.py`` measures what it saves."""

    def __init__(self, fn, max_files: int = 8):
        update_wrapper(self, fn)
        self.fn, self.max_files = fn, max_files
        self.entries: dict[tuple, tuple[tuple[int, int], object]] = {}
        self.hits = self.misses = 0
        self._lock = threading.Lock()  # the code server runs sensor and schedule ticks on threads

    def __call__(self, path: str, mtime_ns: int, size: int, *args):
        key, version = (path, *args), (mtime_ns, size)
        with self._lock:
            held = self.entries.get(key)
            if held is not None and held[0] == version:
                self.hits += 1
                self.entries[key] = self.entries.pop(key)  # most recently used last
                return held[1]
            self.misses += 1
        value = self.fn(path, mtime_ns, size, *args)  # outside the lock: two threads may both parse, never wrongly
        with self._lock:
            self.entries.pop(key, None)
            self.entries[key] = (version, value)
            while len(self.entries) > self.max_files:
                self.entries.pop(next(iter(self.entries)), None)
        return value

    def cache_clear(self) -> None:
        with self._lock:
            self.entries.clear()
            self.hits = self.misses = 0

    def cache_info(self) -> dict[str, int]:
        with self._lock:
            return {"hits": self.hits, "misses": self.misses, "files": len(self.entries), "max_files": self.max_files}


@per_file
def _parsed_csv(path: str, mtime_ns: int, size: int, kind: str) -> pd.DataFrame:
    """A malformed file (empty, a header and no rows, cut off mid-line or mid-stream) raises DataFolderError:
    it is no late feed, and retrying it cannot help."""
    with _readable(path, size, kind):
        df = pd.read_csv(path, dtype={"ticker": str} if kind == "prices" else None)
    if len(df.columns) == 1 and (sep := next((c for c in ";\t|" if c in str(df.columns[0])), None)):
        raise DataFolderError(
            f"{path}: the header is one column, {str(df.columns[0])[:80]!r}: the file looks separated by {sep!r}; write it with commas"
        )
    twice = sorted({c.rsplit(".", 1)[0] for c in df.columns if "." in str(c) and c.rsplit(".", 1)[0] in df.columns and c.rsplit(".", 1)[1].isdigit()})
    if twice:
        raise DataFolderError(f"{path}: duplicated column names {twice} in the header; keep one column each")
    if df.empty:
        raise DataFolderError(f"{path}: a header and no rows; the {kind} file must hold at least one row")
    if not path.endswith(".gz"):
        with open(path, "rb") as fh:
            fh.seek(-1, 2)
            last_byte = fh.read(1)
        if last_byte not in (b"\n", b"\r") and df.iloc[-1].isna().any():
            raise DataFolderError(
                f"{path}: the last line (data line {len(df)}) is cut off mid-row and the file does not "
                "end with a newline: it looks truncated; write it again"
            )
    if "date" in df.columns:  # dates parsed once per file version too; a malformed one is left for the loaders to report
        try:
            df["date"] = pd.to_datetime(df["date"], format="ISO8601")
        except (ValueError, TypeError):
            pass
    return df


def _read_csv(path: Path, kind: str) -> pd.DataFrame:
    """The file's rows, parsed once per file version (path, modification time, size).

    A daily run reads one day out of the whole file; a replay reads it once per day. Caching the
    parse keyed on the file's version keeps that cheap and still sees every change the feed makes.
    """
    st = path.stat()
    return _parsed_csv(str(path), st.st_mtime_ns, st.st_size, kind).copy()


def latest_price_date(data_dir: Path) -> pd.Timestamp | None:
    """The last date the data folder's prices file has (what the feed has delivered so far).

    Read from the date column alone (0.5 s on the 1.1-million-row ``us-broad`` file, against several
    seconds for the whole parse), once per file version: code locations call it when they load (the
    partitions end at the data's last day) and the daily schedule on every tick. A date that does
    not parse is left to ingestion to quarantine; None when no date parses.
    """
    path = prices_file(data_dir)
    st = path.stat()
    return _latest_date(str(path), st.st_mtime_ns, st.st_size)


def prices_file(data_dir: Path) -> Path:
    """The data folder's prices file (prices.csv or prices.csv.gz); DataFolderError when there is none or both."""
    return _find(data_dir, "prices")


@per_file
def _latest_date(path: str, mtime_ns: int, size: int) -> pd.Timestamp | None:
    with _readable(path, size, "prices"):
        try:
            dates = pd.read_csv(path, usecols=["date"], dtype={"date": str})["date"]
        except ValueError as exc:
            if isinstance(exc, pd.errors.ParserError | pd.errors.EmptyDataError | UnicodeDecodeError):
                raise
            raise DataFolderError(f"{path}: no date column ({str(exc)[:120]}); expected {PRICE_COLUMNS}") from None
    if dates.empty:
        raise DataFolderError(f"{path}: a header and no rows; the prices file must hold at least one row")
    parsed = pd.to_datetime(dates, format="ISO8601", errors="coerce")
    last = parsed.max()
    return None if pd.isna(last) else pd.Timestamp(last)


def _require(df: pd.DataFrame, columns: list[str], path: Path) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing == list(columns):  # not one expected column: likely not this file at all (an error page, another table)
        raise DataFolderError(
            f"{path}: missing columns {missing}: the header holds none of them (it reads "
            f"{','.join(map(str, df.columns))[:80]!r}); is this the right file? expected {columns}"
        )
    if missing:
        raise DataFolderError(f"{path}: missing columns {missing}; expected {columns}")


def _numbers(df: pd.DataFrame, columns: list[str], path: Path) -> pd.DataFrame:
    """``columns`` as float64; a field holding text that is not a number (not an empty field) raises
    DataFolderError naming the column, the text and the data line (for files read whole, not row-screened)."""
    out = {}
    for col in columns:
        values = pd.to_numeric(df[col], errors="coerce").astype("float64")
        if df[col].dtype == object:
            text = df[col].astype("string").str.strip()
            bad = values.isna() & df[col].notna() & (text != "")
            if bad.any():
                lines = ", ".join(str(i + 1) for i in bad[bad].index[:3])
                raise DataFolderError(
                    f"{path}: {col}: not a number: {', '.join(repr(str(v)) for v in df[col][bad].head(3))} "
                    f"at data line(s) {lines}; write numbers with a dot as decimal separator"
                )
        out[col] = values
    return df.assign(**out)


def _examples(dates: pd.Series, n: int = 5) -> str:
    return ", ".join(pd.to_datetime(dates).dt.strftime("%Y-%m-%d").head(n))


def load_universe(data_dir: Path, tickers: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Tickers with name and GICS sector."""
    return load_universe_checked(data_dir, tickers)[0]


# The 11 GICS sectors (2018 structure, with Communication Services): a sector name outside them is a typo
# that would make a sector of its own (its own sector-neutral target, sector floor and sector features).
GICS_SECTORS = (
    "Communication Services",
    "Consumer Discretionary",
    "Consumer Staples",
    "Energy",
    "Financials",
    "Health Care",
    "Industrials",
    "Information Technology",
    "Materials",
    "Real Estate",
    "Utilities",
)


def universe_problems(
    universe: pd.DataFrame, previous: pd.DataFrame | None = None, priced: set[str] | frozenset[str] = frozenset()
) -> dict[str, pd.DataFrame]:
    """Rows of a universe that cannot be stored, by check: duplicated tickers (every row of each), sectors
    outside the 11 GICS sectors, and tickers of the ``previous`` (stored) universe that the new one drops
    although the price file still prices them (a sectors.csv that lost a row: stored, it would replace a
    good universe and leave that ticker's prices unknown). Each frame names the ticker, the sector and the fix."""
    dup = universe[universe.ticker.duplicated(keep=False)]
    bad = universe[~universe.gics_sector.isin(GICS_SECTORS)]
    lost = pd.DataFrame(columns=["ticker", "gics_sector", "fix"])
    if previous is not None and len(previous):
        lost = previous[~previous.ticker.isin(universe.ticker) & previous.ticker.isin(priced)]
        lost = lost.assign(fix="it still has prices: restore its row in sectors.csv (or remove its prices)")[["ticker", "gics_sector", "fix"]]
    return {
        "market_universe_unique_tickers": dup.assign(fix="keep one row per ticker in sectors.csv")[["ticker", "gics_sector", "fix"]],
        "market_universe_gics_sectors": bad.assign(fix=f"use one of the 11 GICS sectors: {', '.join(GICS_SECTORS)}")[
            ["ticker", "gics_sector", "fix"]
        ],
        "market_universe_keeps_priced_tickers": lost,
    }


def priced_tickers(data_dir: Path) -> set[str]:
    """The tickers the data folder's price file has rows for (a malformed file raises DataFolderError)."""
    path = _find(data_dir, "prices")
    st = path.stat()
    df = _parsed_csv(str(path), st.st_mtime_ns, st.st_size, "prices")  # the cached parse raw_prices reads next
    _require(df, PRICE_COLUMNS, path)
    return set(df.ticker.dropna().unique())


def load_universe_checked(data_dir: Path, tickers: tuple[str, ...] | None = None) -> tuple[pd.DataFrame, list[Repair]]:
    """Tickers with name and GICS sector, plus the repairs: an empty company name (optional) becomes the ticker."""
    path = _find(data_dir, "sectors")
    if path.stat().st_size == 0:
        raise DataFolderError(f"{path}: the file is empty (0 bytes); write the sectors rows (ticker,name,gics_sector)")
    df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[])
    _require(df, ["ticker", "gics_sector"], path)
    if df.empty:
        raise DataFolderError(f"{path}: a header and no rows; the sectors file must hold one row per ticker")
    if "name" not in df.columns:
        df["name"] = ""
    df = df[["ticker", "name", "gics_sector"]].apply(lambda c: c.str.strip())
    if tickers:
        df = df[df.ticker.isin(tickers)]
    repairs: list[Repair] = []
    unnamed = df.name == ""
    if unnamed.any():
        repairs.append(
            Repair(
                "market_universe",
                "empty company name",
                int(unnamed.sum()),
                "filled with the ticker",
                "the name is optional (shown, never modelled); the ticker identifies the company",
                ", ".join(df.ticker[unnamed].head(5)),
            )
        )
        df.loc[unnamed, "name"] = df.ticker[unnamed]
    return df.sort_values("ticker").reset_index(drop=True), repairs


@dataclass(frozen=True)
class PriceRows:
    """The price file's rows as read: numbers parsed, the index is the row's position in the file."""

    frame: pd.DataFrame  # PRICE_COLUMNS, sorted by (ticker, date); index: row number in the file (0 = first data line)
    text: pd.DataFrame | None  # the raw text of price fields that did not parse as numbers (None: all did)
    repairs: list[Repair]


def _parse_dates(values: pd.Series, path: Path) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(values):
        return values.astype("datetime64[ns]")
    try:
        return pd.to_datetime(values, format="ISO8601").astype("datetime64[ns]")
    except (ValueError, TypeError):
        parsed = pd.to_datetime(values, format="ISO8601", errors="coerce")
        bad = values[parsed.isna()].head(3)
        raise DataFolderError(
            f"{path}: the {values.name} column is not ISO dates (YYYY-MM-DD): {', '.join(repr(str(v)) for v in bad)} at data line(s) "
            f"{', '.join(str(i + 1) for i in bad.index)}; write dates as YYYY-MM-DD. Nothing was read."
        ) from None


def load_corporate_actions(data_dir: Path) -> pd.DataFrame:
    """The data folder's optional ``corporate_actions.csv`` (ticker, date, split_ratio: new shares per old share)."""
    path = data_dir / "corporate_actions.csv"
    if not path.exists():
        return pd.DataFrame({"ticker": pd.Series(dtype=object), "date": pd.Series(dtype="datetime64[ns]"), "split_ratio": pd.Series(dtype="float64")})
    df = pd.read_csv(path, dtype={"ticker": str})
    _require(df, ["ticker", "date", "split_ratio"], path)
    df["date"] = _parse_dates(df["date"], path)
    df["split_ratio"] = pd.to_numeric(df["split_ratio"], errors="coerce")
    bad = df[~(df.split_ratio > 0)]
    if len(bad):
        raise DataFolderError(f"{path}: split_ratio must be a positive number (rows {list(bad.index + 1)}); e.g. 2 for a 2-for-1 split")
    return df[["ticker", "date", "split_ratio"]]


def read_price_rows(data_dir: Path, tickers: tuple[str, ...] | None = None, start: str | None = None, end: str | None = None) -> PriceRows:
    """The price file's rows in [start, end], parsed but not judged (``stockml_core.market.quality`` screens them).

    A malformed file (missing columns, dates that are not ISO dates) raises ``DataFolderError``. A
    field that is not a number becomes NaN here and its text is kept, so the screening can quarantine
    the row with what it said. Splits listed in ``corporate_actions.csv`` are applied (recorded).
    """
    from stockml_core.market.quality import apply_corporate_actions

    path = _find(data_dir, "prices")
    df = _read_csv(path, "prices")
    _require(df, PRICE_COLUMNS, path)
    df = df[PRICE_COLUMNS]
    if tickers:
        df = df[df.ticker.isin(tickers)]
    df = df.assign(date=_parse_dates(df["date"], path))
    text = {}
    numbers = {}
    for col in ["open", "high", "low", "close", "volume"]:
        if df[col].dtype == object:  # text somewhere in the column
            text[col] = df[col]
        numbers[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    df = df.assign(**numbers)
    if start:
        df = df[df.date >= pd.Timestamp(start)]
    if end:
        df = df[df.date <= pd.Timestamp(end)]
    df = df.sort_values(["ticker", "date"], kind="stable")
    raw = None
    if text:
        raw = pd.DataFrame(
            {c: (text[c] if c in text else pd.Series(np.nan, index=text[next(iter(text))].index)) for c in ["open", "high", "low", "close", "volume"]}
        ).reindex(df.index)
    repairs: list[Repair] = []
    actions = load_corporate_actions(data_dir)
    if len(actions):
        df, n = apply_corporate_actions(df, actions)
        repairs.append(
            Repair(
                "raw_prices",
                "corporate actions listed in corporate_actions.csv",
                n,
                "prices before each date / ratio, volume x ratio",
                "the user's own list of splits; the history before a split is brought to the current share count",
                ", ".join(f"{a.ticker} {a.date:%Y-%m-%d} x{a.split_ratio:g}" for a in actions.head(5).itertuples()),
            )
        )
    df, widened = widen_rounded_ohlc(df)
    if widened is not None:
        repairs.append(widened)
    return PriceRows(df, raw, repairs + _price_quirks(df))


# Adjusted prices (dividends, splits) are float64 products of each field and a factor, computed field by
# field by the download client, so a close equal to the low can come out 1e-15 below it. 1e-9 relative is
# far above that rounding (about 1e-16 per operation) and far below any price tick (a cent on $10,000 is
# 1e-6): a row off by more is a real bad print, and the row rules quarantine it.
OHLC_ROUNDING_TOLERANCE = 1e-9


def widen_rounded_ohlc(df: pd.DataFrame, tolerance: float = OHLC_ROUNDING_TOLERANCE) -> tuple[pd.DataFrame, Repair | None]:
    """Rows whose open, high, low and close break low <= open, close <= high by rounding only (at most
    ``tolerance`` of the high): the bound is widened to the value (the high raised to the largest field,
    the low lowered to the smallest), so every later computation finds the range it assumes, and the
    repair is recorded. Rows off by more, or with a field missing or not positive, are left as read for the
    row rules (``high_below_low``, ``open_close_outside_range``) to quarantine."""
    o, h, lo, c = (df[col].to_numpy(dtype="float64") for col in ("open", "high", "low", "close"))
    with np.errstate(invalid="ignore"):
        top = np.fmax(np.fmax(o, c), np.fmax(h, lo))
        bottom = np.fmin(np.fmin(o, c), np.fmin(h, lo))
        usable = np.isfinite(o) & np.isfinite(h) & np.isfinite(lo) & np.isfinite(c) & (bottom > 0)
        off = (top > h) | (bottom < lo)
        within = (top - h <= tolerance * top) & (lo - bottom <= tolerance * top)
    fix = usable & off & within
    if not fix.any():
        return df, None
    worst = float(np.max(np.maximum(top - h, lo - bottom)[fix] / top[fix]))
    rows = df.loc[fix, ["ticker", "date"]].head(5)
    repair = Repair(
        "raw_prices",
        "OHLC off by rounding",
        int(fix.sum()),
        f"high raised / low lowered to the field outside them (at most {tolerance:g} relative; largest here {worst:.1e})",
        "adjusted prices are float64 products computed field by field, so a close equal to the low can come out a few "
        "units of the last place below it; a real bad print is off by far more and is quarantined",
        ", ".join(f"{t} {d:%Y-%m-%d}" for t, d in rows.itertuples(index=False)),
    )
    return df.assign(high=np.where(fix, top, h), low=np.where(fix, bottom, lo)), repair


def load_prices(
    data_dir: Path,
    tickers: tuple[str, ...] | None = None,
    start: str | None = None,
    end: str | None = None,
) -> tuple[pd.DataFrame, list[Repair]]:
    """Daily OHLCV rows as read (index reset), plus the record of accepted quirks.

    Price rows are never silently changed; ``stockml_core.market.quality.screen_prices`` quarantines the
    rows that fail a row rule.
    """
    rows = read_price_rows(data_dir, tickers, start, end)
    return rows.frame.reset_index(drop=True), rows.repairs


def _price_quirks(df: pd.DataFrame) -> list[Repair]:
    repairs: list[Repair] = []
    zero_volume = df.volume == 0
    if zero_volume.any():
        sample = df.loc[zero_volume, ["ticker", "date"]].head(5)
        repairs.append(
            Repair(
                "raw_prices",
                "zero volume",
                int(zero_volume.sum()),
                "kept",
                "no trades reported that day; a real observation, so volume features guard log(0) and 0/0",
                ", ".join(f"{t} {d:%Y-%m-%d}" for t, d in sample.itertuples(index=False)),
            )
        )
    first = df.groupby("ticker").date.min()
    late = first[first > first.min()] if len(first) else first
    if len(late):
        repairs.append(
            Repair(
                "raw_prices",
                "short histories",
                len(late),
                "kept",
                "ticker starts after the panel (listing or source cut-off); features stay NaN during "
                "their warm-up and the ticker joins training once they are finite",
                ", ".join(f"{t} from {d:%Y-%m-%d}" for t, d in late.head(5).items()),
            )
        )
    repairs.append(
        Repair(
            "raw_prices",
            "survivorship",
            df.ticker.nunique(),
            "kept (documented bias)",
            "only companies listed at the end of the sample are present; backtest returns are "
            "biased upward and are reported next to buy-and-hold of the same universe",
        )
    )
    return repairs


def load_market(
    data_dir: Path,
    start: str | None = None,
    end: str | None = None,
) -> tuple[pd.DataFrame, list[Repair]]:
    """S&P 500, VIX and 10-year yield per NYSE trading day, repaired, with the repairs recorded.

    Every repair uses only data up to the repaired date (forward fills, never back fills).
    """
    path = _find(data_dir, "market")
    df = _read_csv(path, "market")
    _require(df, ["date", "spx_close", "vix_close", "dgs10"], path)
    for col in MARKET_COLUMNS:
        if col not in df.columns:
            df[col] = np.nan
    df = _numbers(df[MARKET_COLUMNS], MARKET_COLUMNS[1:], path)
    df["date"] = _parse_dates(df["date"], path)
    df = df.sort_values("date").drop_duplicates("date", keep="last").reset_index(drop=True)
    if start:
        df = df[df.date >= pd.Timestamp(start)]
    if end:
        df = df[df.date <= pd.Timestamp(end)]
    repairs: list[Repair] = []

    years = range(df.date.dt.year.min(), df.date.dt.year.max() + 1) if len(df) else range(0)
    holidays = pd.to_datetime(sorted({h for y in years for h in nyse_holidays(y)}))
    weekend_or_holiday = df.date.isin(holidays) | (df.date.dt.weekday >= 5)
    if weekend_or_holiday.any():
        repairs.append(
            Repair(
                "market_context",
                "rows on NYSE holidays",
                int(weekend_or_holiday.sum()),
                "dropped",
                "the VIX prints on some days the stock exchange is closed; no stock trades then",
                _examples(df.date[weekend_or_holiday]),
            )
        )
        df = df[~weekend_or_holiday]

    vix = ["vix_open", "vix_high", "vix_low", "vix_close"]
    flat = (df.vix_open == df.vix_close) & (df.vix_high == df.vix_close) & (df.vix_low == df.vix_close)
    if flat.any():
        repairs.append(
            Repair(
                "market_context",
                "VIX open/high/low equal the close",
                int(flat.sum()),
                "kept",
                "the source has only the close on these days; features use vix_close alone",
                f"{df.date[flat].min():%Y-%m-%d} .. {df.date[flat].max():%Y-%m-%d}",
            )
        )
    hi = df[["vix_open", "vix_high", "vix_close"]].max(axis=1)
    lo = df[["vix_open", "vix_low", "vix_close"]].min(axis=1)
    bad_range = df.vix_high.notna() & ((hi > df.vix_high) | (lo < df.vix_low))
    if bad_range.any():
        repairs.append(
            Repair(
                "market_context",
                "VIX open outside [low, high]",
                int(bad_range.sum()),
                "high/low widened to include open and close",
                "the source's intraday extremes are inconsistent; the widened range is the smallest one consistent with the prints",
                _examples(df.date[bad_range]),
            )
        )
        df.loc[bad_range, "vix_high"] = hi[bad_range]
        df.loc[bad_range, "vix_low"] = lo[bad_range]

    missing_vix = df.vix_close.isna()
    if missing_vix.any():
        repairs.append(
            Repair(
                "market_context",
                "VIX missing on trading days",
                int(missing_vix.sum()),
                "forward-filled from the previous trading day",
                "the index was not published; carrying the last close forward uses no future data",
                _examples(df.date[missing_vix]),
            )
        )
        df[vix] = df[vix].ffill(limit=MAX_FILL_DAYS)

    spx_ohlv = ["spx_open", "spx_high", "spx_low", "spx_volume"]
    close_only = df.spx_close.notna() & df[spx_ohlv].isna().all(axis=1)
    if close_only.any():
        repairs.append(
            Repair(
                "market_context",
                "S&P 500 close only",
                int(close_only.sum()),
                "kept (nullable)",
                "the source publishes only the close from 2024; features use spx_close alone",
                f"{df.date[close_only].min():%Y-%m-%d} .. {df.date[close_only].max():%Y-%m-%d}",
            )
        )
    missing_spx = df.spx_close.isna()
    if missing_spx.any():
        repairs.append(
            Repair(
                "market_context",
                "S&P 500 close missing",
                int(missing_spx.sum()),
                f"forward-filled from the previous trading day (at most {MAX_FILL_DAYS} days)",
                "no index close published that day; carrying the last close forward uses no future data",
                _examples(df.date[missing_spx]),
            )
        )
        df["spx_close"] = df.spx_close.ffill(limit=MAX_FILL_DAYS)

    missing_yield = df.dgs10.isna()
    if missing_yield.any():
        repairs.append(
            Repair(
                "market_context",
                "10-year yield missing",
                int(missing_yield.sum()),
                "forward-filled from the previous trading day",
                "bond markets close on some days stocks trade; the last yield is the one known",
                _examples(df.date[missing_yield]),
            )
        )
        df["dgs10"] = df.dgs10.ffill(limit=MAX_FILL_DAYS)
    # Rows a short forward fill cannot reach (leading rows, long outages) have no usable context.
    unusable = df[["spx_close", "vix_close", "dgs10"]].isna().any(axis=1)
    if unusable.any():
        repairs.append(
            Repair(
                "market_context",
                "rows without S&P 500, VIX or yield",
                int(unusable.sum()),
                "dropped",
                f"nothing within {MAX_FILL_DAYS} days to carry forward; a stale value would pose as news",
                f"{df.date[unusable].min():%Y-%m-%d} .. {df.date[unusable].max():%Y-%m-%d}",
            )
        )
        df = df[~unusable]
    return df.reset_index(drop=True), repairs


def align_market_to_prices(market: pd.DataFrame, prices: pd.DataFrame) -> tuple[pd.DataFrame, list[Repair]]:
    """Add forward-filled market rows for stock trading days the market file lacks."""
    price_days = pd.DatetimeIndex(prices.date.unique())
    missing = price_days.difference(pd.DatetimeIndex(market.date))
    missing = missing[missing >= market.date.min()] if len(market) else missing
    if not len(missing):
        return market, []
    extra = pd.DataFrame({"date": missing})
    out = pd.concat([market, extra]).sort_values("date").reset_index(drop=True)
    out[["spx_close", "vix_open", "vix_high", "vix_low", "vix_close", "dgs10"]] = out[
        ["spx_close", "vix_open", "vix_high", "vix_low", "vix_close", "dgs10"]
    ].ffill(limit=MAX_FILL_DAYS)
    return out, [
        Repair(
            "market_context",
            "market rows missing on stock trading days",
            len(missing),
            "added, forward-filled",
            "stocks traded but the market file has no row",
            _examples(pd.Series(missing)),
        )
    ]


def repairs_frame(repairs: list[Repair]) -> pd.DataFrame:
    """The repairs as a table, for asset metadata."""
    cols = ["table", "quirk", "rows", "action", "reason", "examples"]
    return pd.DataFrame([r.__dict__ for r in repairs], columns=cols)


def load_rare_events(data_dir: Path) -> pd.DataFrame:
    """The historical rare-event catalog of a data folder (``rare_events.csv``)."""
    path = data_dir / "rare_events.csv"
    if not path.exists():  # a user's folder without its own catalog uses the bundled one
        path = BUNDLED_RARE_EVENTS
    if path.stat().st_size == 0:
        raise DataFolderError(
            f"{path}: the file is empty (0 bytes); write the events (name,start,end,description) or delete the file to use the bundled catalog"
        )
    df = pd.read_csv(path, dtype=str)
    _require(df, ["name", "start", "end", "description"], path)
    df["start"] = _parse_dates(df["start"], path)
    df["end"] = _parse_dates(df["end"], path)
    bad = df[df.end < df.start]
    if len(bad):
        raise DataFolderError(f"{path}: events end before they start: {list(bad.name)}; fix the dates")
    return df[["name", "start", "end", "description"]].sort_values("start").reset_index(drop=True)
