"""Row-level quality of a price file: quarantine of bad rows, corporate-action suspects, feed limits.

A real price file has bad rows. Each row that fails a row rule is *quarantined*: kept out of every
model and stored with its rule, its values and the fix (``QuarantineStore``), while the good rows go
on. What still refuses the whole run is a broken feed: a share of bad rows above
``QualitySettings`` limits (of the run, or of one day's tickers). A malformed file (missing columns,
unparseable dates) is refused earlier, by ``stockml_core.market.data``.

Nothing is repaired: a quarantined (ticker, trading day) is a *hole* in the ticker's history. The
feature engine and the labels treat a hole as a break (``segment_starts``): every window that would
span it is NaN, as during a warm-up, so no model sees a flat day or a jump where a print was bad.

Corporate-action suspects are found on the rows that pass the row rules, from prices up to a few
days after the move (the flag itself is data hygiene, not a feature: it changes which rows exist, as
any row rule does, and never a feature value through the future):

* ``suspected_reversal``: a move of at least ``reversal_move`` (log) undone within
  ``reversal_days`` days (a bad print: the real LNT 2016-05-19, -49% then +101%); the rows of the
  excursion are quarantined.
* ``suspected_split``: close / previous close and open / previous close both within
  ``split_tolerance`` of 1/k or k (k in ``SPLIT_RATIOS``: the jump is overnight) with the volume
  moving the other way by about the same ratio (an unadjusted split); the day of the jump is
  quarantined, which breaks the series there.
* ``suspected_spinoff``: an overnight gap down of at least ``spinoff_gap`` on a quiet day (the
  session itself moves less than ``spinoff_max_intraday`` and trades less than
  ``spinoff_max_volume_ratio`` x its usual volume: news collapses trade many times normal volume,
  an ex-date does not), not a split, not reversed: an unadjusted spin-off; the day is quarantined.

A ``corporate_actions.csv`` (ticker, date, split_ratio) in the data folder adjusts the prices before
each listed date instead (``apply_corporate_actions``), recorded as a repair.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from stockml_core.market.calendar import trading_days
from stockml_core.schemas import QuarantinedPricesSchema, columns
from stockml_core.settings import QualitySettings
from stockml_core.storage.warehouse import Warehouse

PRICE_FIELDS = ["open", "high", "low", "close", "volume"]


@dataclass(frozen=True)
class Rule:
    """One row rule: its name, what it means and how to fix a row that fails it."""

    name: str
    meaning: str
    fix: str
    hole: bool = True  # the row was a real trading day of a known ticker: its absence breaks the series


RULES: dict[str, Rule] = {
    r.name: r
    for r in (
        Rule(
            "not_a_number",
            "a price or volume field holds text that is not a number",
            "write the number with a dot as decimal separator and no thousands separator",
        ),
        Rule("missing_value", "a price or the volume is empty", "fill the field from the source, or delete the row"),
        Rule("non_positive_price", "a price is zero or negative", "correct the price from the source"),
        Rule("negative_volume", "the volume is negative", "correct the volume from the source"),
        Rule("high_below_low", "high < low", "correct high/low from the source (often a decimal slip)"),
        Rule(
            "open_close_outside_range", "open or close outside [low, high]", "correct the field from the source (often a decimal slip in one field)"
        ),
        Rule("duplicate", "more than one row for the (ticker, date)", "keep one row per ticker and date"),
        Rule("future_date", "dated after today", "fix the date", hole=False),
        Rule("non_trading_day", "a weekend day or an NYSE holiday", "fix the date or delete the row", hole=False),
        Rule("unknown_ticker", "the ticker is not in sectors.csv", "add the ticker to sectors.csv", hole=False),
        Rule("suspected_reversal", "a large move undone within days (a bad print)", "correct the prints from the source"),
        Rule(
            "suspected_split",
            "a jump at a split ratio with volume moving the other way (unadjusted split)",
            "adjust the history, or list the split in corporate_actions.csv (ticker, date, split_ratio)",
        ),
        Rule(
            "suspected_spinoff",
            "a large overnight gap down on a quiet day (unadjusted spin-off)",
            "adjust the history for the distribution from the source",
        ),
    )
}
CORPORATE_ACTION_RULES = ("suspected_reversal", "suspected_split", "suspected_spinoff")
SPLIT_RATIOS = (2.0, 3.0, 4.0, 5.0, 10.0)

QUARANTINE_COLUMNS = columns(QuarantinedPricesSchema)


class FeedRefused(ValueError):
    """The share of bad rows says the feed is broken: nothing of the run is used."""


@dataclass(frozen=True)
class Screening:
    """A price frame split into the rows models may use and the quarantined ones (one row per rule failed)."""

    good: pd.DataFrame
    quarantined: pd.DataFrame  # QUARANTINE_COLUMNS
    rows_checked: int

    @property
    def bad_rows(self) -> int:
        """Distinct input rows quarantined by a row rule (corporate-action suspects not counted)."""
        q = self.quarantined[~self.quarantined.rule.isin(CORPORATE_ACTION_RULES)]
        return int(q.source_row.nunique())

    def counts(self) -> pd.DataFrame:
        """Quarantined rows per rule and ticker."""
        q = self.quarantined
        return (
            q.groupby(["rule", "ticker"])
            .size()
            .rename("rows")
            .reset_index()
            .sort_values(["rows", "rule", "ticker"], ascending=[False, True, True])
            .reset_index(drop=True)
        )


def _fmt(v) -> str:
    return "empty" if pd.isna(v) else f"{v:g}"


def _values(df: pd.DataFrame) -> pd.Series:
    return (
        "open "
        + df.open.map(_fmt)
        + ", high "
        + df.high.map(_fmt)
        + ", low "
        + df.low.map(_fmt)
        + ", close "
        + df.close.map(_fmt)
        + ", volume "
        + df.volume.map(_fmt)
    )


def row_rule_failures(df: pd.DataFrame, raw_text: pd.DataFrame | None, known_tickers, today: pd.Timestamp) -> pd.DataFrame:
    """One row per (input row, rule failed): ``source_row`` (the frame's index), ``rule``, ``detail``.

    ``raw_text``: the price fields as read (strings), to tell a field that is empty from one holding
    text that is not a number ("12,34"); without it an unparseable field counts as missing.
    """
    parts: list[pd.DataFrame] = []

    def add(mask: pd.Series, rule: str, detail) -> None:
        """``detail``: a string, or a function of the failing rows giving one string each (built for those rows only)."""
        if mask.any():
            rows = df.loc[mask]
            d = detail(rows) if callable(detail) else pd.Series(detail, index=rows.index)
            parts.append(pd.DataFrame({"source_row": rows.index, "rule": rule, "detail": np.asarray(d, dtype=object)}))

    prices = df[["open", "high", "low", "close"]]
    text_bad = pd.Series(False, index=df.index)
    if raw_text is not None:
        for col in PRICE_FIELDS:
            raw = raw_text[col]
            bad = df[col].isna() & raw.notna() & (raw.astype(str).str.strip() != "")
            if bad.any():
                add(bad, "not_a_number", lambda r, col=col: f"{col}: not a number: '" + raw_text.loc[r.index, col].astype(str) + "'")
                text_bad |= bad
    for col in PRICE_FIELDS:
        add(df[col].isna() & ~text_bad, "missing_value", lambda r, col=col: f"{col} is empty; " + _values(r))
    add((prices <= 0).any(axis=1), "non_positive_price", _values)
    add(df.volume < 0, "negative_volume", _values)
    add(df.high < df.low, "high_below_low", _values)
    hi, lo = df[["open", "close"]].max(axis=1), df[["open", "close"]].min(axis=1)
    add((df.high >= df.low) & ((hi > df.high) | (lo < df.low)), "open_close_outside_range", _values)
    add(df.duplicated(["ticker", "date"], keep=False), "duplicate", "(ticker, date) appears more than once")
    add(df.date > today, "future_date", lambda r: "dated " + r.date.dt.strftime("%Y-%m-%d") + f", after today {today:%Y-%m-%d}")
    weekend = df.date.dt.weekday >= 5
    open_days = trading_days(df.date.min(), df.date.max()) if len(df) else pd.DatetimeIndex([])  # the one calendar
    add(weekend, "non_trading_day", lambda r: r.date.dt.day_name() + " " + r.date.dt.strftime("%Y-%m-%d"))
    add(~weekend & ~df.date.isin(open_days), "non_trading_day", lambda r: "NYSE holiday " + r.date.dt.strftime("%Y-%m-%d"))
    if known_tickers is not None:
        add(~df.ticker.isin(set(known_tickers)), "unknown_ticker", lambda r: "ticker " + r.ticker.astype(str) + " has no row in sectors.csv")
    if not parts:
        return pd.DataFrame({"source_row": pd.Series(dtype="int64"), "rule": pd.Series(dtype=object), "detail": pd.Series(dtype=object)})
    return pd.concat(parts, ignore_index=True)


def corporate_action_suspects(df: pd.DataFrame, s: QualitySettings) -> pd.DataFrame:
    """Rows of likely unadjusted corporate actions or bad prints (``source_row``, ``rule``, ``detail``).

    ``df``: rows that pass the row rules, sorted by (ticker, date). Vectorized over the panel.
    """
    empty = pd.DataFrame({"source_row": pd.Series(dtype="int64"), "rule": pd.Series(dtype=object), "detail": pd.Series(dtype=object)})
    if len(df) < 3:
        return empty
    t = df.ticker.to_numpy()
    close, opn, vol = (df[c].to_numpy(dtype="float64") for c in ("close", "open", "volume"))
    same_prev = np.r_[False, t[1:] == t[:-1]]
    prev_close = np.where(same_prev, np.r_[np.nan, close[:-1]], np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        move = np.log(close / prev_close)
        by = df.groupby("ticker", sort=False)
        usual_vol = by.volume.transform(lambda v: v.shift(1).rolling(20, min_periods=10).median()).to_numpy(dtype="float64")
        after_vol = by.volume.transform(lambda v: v[::-1].rolling(5, min_periods=3).median()[::-1]).to_numpy(dtype="float64")
    n = len(df)
    flags = np.zeros(n, dtype=np.int8)  # 1 reversal start, 2 split, 3 spin-off
    detail = np.empty(n, dtype=object)
    quarantine_until = np.full(n, -1)

    # Reversal: |move| >= threshold at i, and some close within reversal_days after it is back
    # within reversal_back (log) of the close before the move.
    smallest = min(s.reversal_move, -np.log1p(-s.spinoff_gap), np.log(min(SPLIT_RATIOS)) - 2 * s.split_tolerance)
    big = np.flatnonzero(np.abs(move) >= smallest)
    for i in big:  # the big moves are few (a few hundred in a million rows)
        for j in range(1, s.reversal_days + 1 if abs(move[i]) >= s.reversal_move else 1):
            k = i + j
            if k >= n or t[k] != t[i]:
                break
            if abs(np.log(close[k] / prev_close[i])) <= s.reversal_back:
                flags[i] = 1
                quarantine_until[i] = k - 1
                detail[i] = f"close {prev_close[i]:g} -> {close[i]:g} ({np.expm1(move[i]):+.0%}), back to {close[k]:g} after {j} day(s)"
                break
        if flags[i]:
            continue
        ratio = close[i] / prev_close[i]
        vol_ratio = after_vol[i] / usual_vol[i] if usual_vol[i] > 0 else np.nan
        for k_ in SPLIT_RATIOS:
            for r in (1.0 / k_, k_):
                gap_ratio = opn[i] / prev_close[i]  # a split happens overnight: the open jumps by the ratio too
                if (
                    abs(ratio / r - 1.0) <= s.split_tolerance
                    and abs(gap_ratio / r - 1.0) <= s.split_tolerance
                    and np.isfinite(vol_ratio)
                    and 1.0 / s.split_volume_band <= vol_ratio * r <= s.split_volume_band
                ):
                    flags[i] = 2
                    detail[i] = (
                        f"close {prev_close[i]:g} -> {close[i]:g} (x{ratio:.3f}, near {'1/' if r < 1 else ''}"
                        f"{k_:g}) with volume x{vol_ratio:.2f} against its 20-day median"
                    )
                    break
            if flags[i]:
                break
        if flags[i]:
            continue
        gap = opn[i] / prev_close[i] - 1.0
        intraday = abs(close[i] / opn[i] - 1.0)
        v_day = vol[i] / usual_vol[i] if usual_vol[i] > 0 else np.nan
        if gap <= -s.spinoff_gap and intraday <= s.spinoff_max_intraday and np.isfinite(v_day) and v_day <= s.spinoff_max_volume_ratio:
            flags[i] = 3
            detail[i] = (
                f"open {opn[i]:g} after close {prev_close[i]:g} (gap {gap:+.0%}), session {intraday:.0%}, volume x{v_day:.2f} its 20-day median"
            )
    parts = []
    for code, rule in ((1, "suspected_reversal"), (2, "suspected_split"), (3, "suspected_spinoff")):
        for i in np.flatnonzero(flags == code):
            last = quarantine_until[i] if code == 1 else i
            rows = df.index[i : last + 1]
            parts.append(pd.DataFrame({"source_row": rows, "rule": rule, "detail": detail[i]}))
    return pd.concat(parts, ignore_index=True) if parts else empty


def screen_prices(df: pd.DataFrame, known_tickers, today: pd.Timestamp, s: QualitySettings, raw_text: pd.DataFrame | None = None) -> Screening:
    """Split ``df`` (PRICE_COLUMNS, any index: its labels become ``source_row``) into good and quarantined rows."""
    failures = row_rule_failures(df, raw_text, known_tickers, today)
    bad = df.index.isin(failures.source_row)
    passing = df.loc[~bad].sort_values(["ticker", "date"], kind="stable")
    suspects = corporate_action_suspects(passing, s) if s.detect_corporate_actions else failures.iloc[:0]
    allq = pd.concat([failures, suspects], ignore_index=True)
    good = passing.loc[~passing.index.isin(suspects.source_row)].reset_index(drop=True)
    rows = df.loc[allq.source_row, ["ticker", "date", "open", "high", "low", "close", "volume"]].reset_index(drop=True)
    q = pd.concat([rows, allq.reset_index(drop=True)], axis=1)
    q["fix"] = q.rule.map(lambda r: RULES[r].fix)
    q["source_row"] = q.source_row.astype("int64")
    q = q[QUARANTINE_COLUMNS].sort_values(["ticker", "date", "rule"], kind="stable").reset_index(drop=True)
    return Screening(good=good, quarantined=q, rows_checked=len(df))


def refusals(screening: Screening, s: QualitySettings) -> list[str]:
    """Why the run's share of bad rows says the feed is broken (empty: within the limits).

    Limits: more than ``max_bad_share_run`` of the run's rows (at least ``min_bad_rows`` allowed), or
    on one day more than ``max_bad_share_day`` of that day's tickers (at least one row allowed).
    """
    q = screening.quarantined[~screening.quarantined.rule.isin(CORPORATE_ACTION_RULES)]
    out = []
    n_bad, n = screening.bad_rows, screening.rows_checked
    allowed = max(s.min_bad_rows, s.max_bad_share_run * n)
    if n_bad > allowed:
        rules = q.drop_duplicates("source_row").rule.value_counts()
        out.append(
            f"{n_bad} of {n} rows ({n_bad / max(n, 1):.2%}) fail a row rule, above the limit of "
            f"{s.max_bad_share_run:.2%} of a run's rows (at least {s.min_bad_rows} allowed); by rule: "
            + ", ".join(f"{r} {c}" for r, c in rules.items())
        )
    if len(q):
        per_day = q.groupby("date").ticker.nunique()  # tickers with a bad row that day
        day_rows = pd.concat([screening.good[["date", "ticker"]], q[["date", "ticker"]]])
        tickers = day_rows[day_rows.date.isin(per_day.index)].groupby("date").ticker.nunique().reindex(per_day.index)
        limit = np.maximum(1.0, s.max_bad_share_day * tickers)
        over = per_day[per_day > limit]
        if len(over):
            days = ", ".join(f"{d:%Y-%m-%d} ({int(over[d])} of {int(tickers[d])} tickers)" for d in over.index[:5])
            out.append(f"on {len(over)} day(s) more than {s.max_bad_share_day:.1%} of the day's tickers fail a row rule: {days}")
    return out


def refusal_message(screening: Screening, reasons: list[str]) -> str:
    return (
        "raw_prices: the price feed looks broken, not a few bad prints: "
        + "; ".join(reasons)
        + ". Nothing was stored; the last good data and the champion are unchanged. Fix the file (first rows: "
        + first_rows(screening.quarantined)
        + '), or raise the limits (STOCKML_QUALITY=\'{"max_bad_share_run": ..., '
        '"max_bad_share_day": ...}\') if these rows really are isolated.'
    )


def first_rows(q: pd.DataFrame, n: int = 5) -> str:
    head = q.head(n)
    return "; ".join(f"{r.ticker} {pd.Timestamp(r.date):%Y-%m-%d} {r.rule} ({r.detail})" for r in head.itertuples()) + (", ..." if len(q) > n else "")


CONTEXT_DAYS = 40  # calendar days before a run's first day that corporate-action detection looks back on


def screen_run(rows, known_tickers, first: pd.Timestamp, last: pd.Timestamp, today: pd.Timestamp, s: QualitySettings) -> Screening:
    """Screen the rows of a run over the trading days [first, last] (``rows``: ``data.PriceRows``).

    The weeks before ``first`` are screened too, as context for the corporate-action rules (a
    daily run judges its day's jump against the previous closes and volumes); only the run's own
    days are returned and counted against the limits.
    """
    f = rows.frame
    ctx = f[(f.date >= first - pd.Timedelta(days=CONTEXT_DAYS)) & (f.date <= last)]
    sc = screen_prices(ctx, known_tickers, today, s, rows.text.loc[ctx.index] if rows.text is not None else None)

    def in_run(d: pd.DataFrame) -> pd.Series:
        return (d.date >= first) & (d.date <= last)

    return Screening(
        sc.good[in_run(sc.good)].reset_index(drop=True), sc.quarantined[in_run(sc.quarantined)].reset_index(drop=True), int(in_run(ctx).sum())
    )


def summary_line(q: pd.DataFrame) -> str:
    """One line: how many rows are quarantined, by rule, and the first of them."""
    if q.empty:
        return "no price row is quarantined"
    rows = q[["ticker", "date"]].drop_duplicates().shape[0]
    return (
        f"{rows} price rows quarantined ({', '.join(f'{r} {c}' for r, c in q.rule.value_counts().items())}) in "
        f"{q.ticker.nunique()} tickers: " + first_rows(q, 3)
    )


def holes(quarantined: pd.DataFrame) -> pd.DataFrame:
    """The (ticker, date) trading days a quarantine leaves without a usable price (breaks of the series)."""
    hole_rules = [name for name, rule in RULES.items() if rule.hole]
    q = quarantined.loc[quarantined.rule.isin(hole_rules).to_numpy(dtype=bool)]
    return q[["ticker", "date"]].drop_duplicates().reset_index(drop=True)


def segment_starts(tickers: np.ndarray, dates: np.ndarray, hole_rows: pd.DataFrame | None) -> np.ndarray:
    """Per row of a frame sorted by (ticker, date): True where a new segment starts.

    A segment starts at each ticker's first row and at the first row after a hole of that ticker
    (a quarantined trading day between the previous row and this one).
    """
    n = len(tickers)
    start = np.ones(n, dtype=bool)
    if n > 1:
        start[1:] = tickers[1:] != tickers[:-1]
    if hole_rows is None or hole_rows.empty or n == 0:
        return start
    dates = np.asarray(dates, dtype="datetime64[ns]")
    codes, uniques = pd.factorize(tickers)
    first = np.flatnonzero(start)
    bounds = dict(zip(uniques, zip(first, np.r_[first[1:], n], strict=True), strict=True))
    for ticker, grp in hole_rows.groupby("ticker", sort=False):  # holes are few
        if ticker not in bounds:
            continue
        a, b = bounds[ticker]
        pos = a + np.searchsorted(dates[a:b], grp.date.to_numpy(dtype="datetime64[ns]"), side="right")
        pos = pos[pos < b]
        start[pos] = True
    return start


def segment_ids(frame: pd.DataFrame, hole_rows: pd.DataFrame | None) -> np.ndarray:
    """A segment number per row of ``frame`` (sorted by (ticker, date)): ticker and breaks in one key."""
    starts = segment_starts(frame["ticker"].to_numpy(), frame["date"].to_numpy(), hole_rows)
    return np.cumsum(starts) - 1


def apply_corporate_actions(df: pd.DataFrame, actions: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Adjust prices before each (ticker, date, split_ratio): prices / ratio, volume x ratio. Returns (frame, rows adjusted)."""
    if actions.empty:
        return df, 0
    out = df.copy()
    adjusted = np.zeros(len(out), dtype=bool)
    for a in actions.itertuples():  # a user's list of actions: a handful
        m = (out.ticker == a.ticker) & (out.date < a.date)
        out.loc[m, ["open", "high", "low", "close"]] /= a.split_ratio
        out.loc[m, "volume"] *= a.split_ratio
        adjusted |= m.to_numpy()
    return out, int(adjusted.sum())


# ------------------------------------------------------------------------------------------ store


class QuarantineStore:
    """The warehouse's ``quarantined_prices`` table: every quarantined row with its rule, values and fix.

    Written by ``raw_prices`` for exactly the trading days a run ingests (the days' old rows are
    replaced in one transaction, as the IO manager replaces the days' partitions); read by the
    ``quarantined_prices`` asset, the features and labels (as holes) and ``stockml status``.
    """

    TABLE = "quarantined_prices"
    DDL = (
        "create table if not exists quarantined_prices (ticker varchar, date timestamp, rule varchar, detail varchar, "
        "fix varchar, open double, high double, low double, close double, volume double, source_row bigint, "
        "run_first date, run_last date)"
    )

    def __init__(self, warehouse: Warehouse) -> None:
        self.warehouse = warehouse

    def replace(self, first: pd.Timestamp, last: pd.Timestamp, quarantined: pd.DataFrame) -> None:
        """Store the quarantine of the run over [first, last], replacing what earlier runs stored for those days."""
        rows = quarantined[QUARANTINE_COLUMNS].assign(run_first=first.date(), run_last=last.date())  # noqa: F841 (read by DuckDB)
        with self.warehouse.connect() as con:
            con.execute(self.DDL)
            con.execute("begin transaction")
            try:
                con.execute(
                    "delete from quarantined_prices where date >= ? and date <= ?",
                    [first.to_pydatetime(), (last + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)).to_pydatetime()],
                )
                con.execute("insert into quarantined_prices select * from rows")
                con.execute("commit")
            except Exception:
                con.execute("rollback")
                raise

    def read(self, last: pd.Timestamp | None = None) -> pd.DataFrame:
        """Every quarantined row (dated up to ``last``), sorted by ticker and date."""
        if not self.warehouse.has_table(self.TABLE):
            return pd.DataFrame(
                {
                    c: pd.Series(
                        dtype="datetime64[ns]" if c == "date" else "float64" if c in PRICE_FIELDS else "int64" if c == "source_row" else object
                    )
                    for c in QUARANTINE_COLUMNS
                }
            )
        sql = "select * exclude (run_first, run_last) from quarantined_prices"
        params: list = []
        if last is not None:
            sql += " where date <= ?"
            params.append(last.to_pydatetime())
        df = self.warehouse.read(sql + " order by ticker, date, rule", params)
        return df.assign(date=pd.to_datetime(df.date).astype("datetime64[ns]"))

    def holes(self, last: pd.Timestamp | None = None) -> pd.DataFrame:
        return holes(self.read(last))

    def summary(self) -> dict:
        """Counts for ``stockml status --json``: rows quarantined by rule, tickers affected, suspected corporate actions."""
        q = self.read()
        ca = q[q.rule.isin(CORPORATE_ACTION_RULES)]
        return {
            "rows_quarantined": int(q[["ticker", "date"]].drop_duplicates().shape[0]),
            "by_rule": {str(k): int(v) for k, v in q.rule.value_counts().sort_index().items()},
            "tickers_affected": sorted(q.ticker.unique().tolist()),
            "suspected_corporate_actions": [
                {"ticker": r.ticker, "date": f"{pd.Timestamp(r.date):%Y-%m-%d}", "rule": r.rule, "evidence": r.detail}
                for r in ca.drop_duplicates(["ticker", "rule", "detail"]).itertuples()
            ],
        }
