"""Every kind of bad input a real feed delivers, in one table (issue 15): what the platform does with each.

A malformed file is refused with its own message naming the file, the rows and the fix (no retry: it is
no late feed); a row that breaks a row rule is quarantined with its rule and the rest goes on (the
quarantine's own runs are tests/test_quality_gates.py and tests/test_quarantine_graph.py). The first test
runs the whole table through what ingestion runs; the second runs one kind per file and failure route
through real daily runs on a materialized home and checks that nothing stored changed.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
from pathlib import Path

import pandas as pd
import pytest

from stockml_assets.freshness import judge_freshness
from stockml_core.market import data as core_data
from stockml_core.market import quality
from stockml_core.settings import QualitySettings
from stockml_core.storage.warehouse import Warehouse
from tests.conftest import materialized_keys, run_daily_job, slice_config, write_slice_folder

TODAY = pd.Timestamp("2017-11-13")  # the Monday after the sample's last day


def _prices(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "prices.csv", dtype={"ticker": str})


def _write_prices(folder: Path, df: pd.DataFrame) -> None:
    df.to_csv(folder / "prices.csv", index=False)


def _set(folder: Path, row: int, **values) -> None:
    """Change fields of one data row of prices.csv (as text, exactly as a feed would write it)."""
    df = _prices(folder).astype({c: object for c in values})
    for col, v in values.items():
        df.loc[row, col] = v
    _write_prices(folder, df)


def _text(folder: Path, name: str, text: str | bytes) -> None:
    path = folder / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())


def _market(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "market.csv.gz")


def _write_market(folder: Path, df: pd.DataFrame) -> None:
    df.to_csv(folder / "market.csv.gz", index=False)


def _sectors(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "sectors.csv")


def _events(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "rare_events.csv")


def _header(folder: Path, name: str) -> str:
    return (folder / name).read_text().splitlines()[0] + "\n"


# kind -> (the file it breaks, how, expected: ("refused", message regex) or ("quarantined", rule))
CASES = {
    # prices.csv: the file itself
    "prices missing": ("prices", lambda f: (f / "prices.csv").unlink(), ("refused", "no prices.csv or prices.csv.gz")),
    "prices empty (0 bytes)": ("prices", lambda f: _text(f, "prices.csv", ""), ("refused", "the file is empty")),
    "prices header only": ("prices", lambda f: _text(f, "prices.csv", _header(f, "prices.csv")), ("refused", "a header and no rows")),
    "prices missing a column": (
        "prices",
        lambda f: _write_prices(f, _prices(f).drop(columns="volume")),
        ("refused", r"missing columns \['volume'\]"),
    ),
    "prices truncated mid-row": ("prices", lambda f: _text(f, "prices.csv", (f / "prices.csv").read_text()[:-25]), ("refused", "looks truncated")),
    "prices gzip cut off": (
        "prices",
        lambda f: (_text(f, "prices.csv.gz", gzip.compress((f / "prices.csv").read_bytes())[:400]), (f / "prices.csv").unlink()),
        ("refused", "cut off or corrupt"),
    ),
    "prices dates DD-MM-YYYY": (
        "prices",
        lambda f: _write_prices(f, _prices(f).assign(date=lambda d: pd.to_datetime(d.date).dt.strftime("%d-%m-%Y"))),
        ("refused", "not ISO dates"),
    ),
    "prices one unparseable date": (
        "prices",
        lambda f: _set(f, 3, date="yesterday"),
        ("refused", "not ISO dates.*'yesterday' at data line\\(s\\) 4"),
    ),
    "prices separated by semicolons": (
        "prices",
        lambda f: _prices(f).to_csv(f / "prices.csv", index=False, sep=";"),
        ("refused", "separated by ';'"),
    ),
    "prices a column twice": (
        "prices",
        lambda f: _text(f, "prices.csv", (f / "prices.csv").read_text().replace("volume\n", "close\n", 1)),
        ("refused", r"duplicated column names \['close'\]"),
    ),
    "prices not text (binary)": ("prices", lambda f: _text(f, "prices.csv", bytes(range(256)) * 40), ("refused", "not a text CSV")),
    "prices an HTML error page": (
        "prices",
        lambda f: _text(f, "prices.csv", "<html>\n<body>502 Bad Gateway</body>\n</html>\n"),
        ("refused", "missing columns"),
    ),
    "prices.csv and prices.csv.gz both": (
        "prices",
        lambda f: shutil.copy(f / "market.csv.gz", f / "prices.csv.gz"),
        ("refused", "both prices.csv and prices.csv.gz"),
    ),
    # prices.csv: one bad row among good ones
    "price with a decimal comma": ("prices", lambda f: _set(f, 5, close="12,34"), ("quarantined", "not_a_number")),
    "price empty": ("prices", lambda f: _set(f, 5, open=""), ("quarantined", "missing_value")),
    "price zero": ("prices", lambda f: _set(f, 5, low=0), ("quarantined", "non_positive_price")),
    "volume negative": ("prices", lambda f: _set(f, 5, volume=-100), ("quarantined", "negative_volume")),
    "high below low": ("prices", lambda f: _set(f, 5, high=1.0), ("quarantined", "high_below_low")),
    "close above high": ("prices", lambda f: _set(f, 5, close=10_000.0), ("quarantined", "open_close_outside_range")),
    "row repeated": ("prices", lambda f: _write_prices(f, pd.concat([_prices(f), _prices(f).iloc[[5]]])), ("quarantined", "duplicate")),
    "row on a Saturday": ("prices", lambda f: _set(f, 5, date="2017-01-07"), ("quarantined", "non_trading_day")),
    "row on an NYSE holiday": ("prices", lambda f: _set(f, 5, date="2017-07-04"), ("quarantined", "non_trading_day")),
    "row dated in the future": ("prices", lambda f: _set(f, len(_prices(f)) - 1, date="2017-11-20"), ("quarantined", "future_date")),
    "ticker not in sectors.csv": ("prices", lambda f: _set(f, 5, ticker="XOMM"), ("quarantined", "unknown_ticker")),
    # sectors.csv
    "sectors missing": ("sectors", lambda f: (f / "sectors.csv").unlink(), ("refused", "no sectors.csv")),
    "sectors empty (0 bytes)": ("sectors", lambda f: _text(f, "sectors.csv", ""), ("refused", "sectors.csv: the file is empty")),
    "sectors header only": (
        "sectors",
        lambda f: _text(f, "sectors.csv", _header(f, "sectors.csv")),
        ("refused", "sectors.csv: a header and no rows"),
    ),
    "sectors missing gics_sector": (
        "sectors",
        lambda f: _sectors(f).drop(columns="gics_sector").to_csv(f / "sectors.csv", index=False),
        ("refused", r"missing columns \['gics_sector'\]"),
    ),
    "sectors a ticker twice": (
        "sectors",
        lambda f: pd.concat([_sectors(f), _sectors(f).head(1)]).to_csv(f / "sectors.csv", index=False),
        ("refused", "market_universe_unique_tickers"),
    ),
    "sectors a sector outside GICS": (
        "sectors",
        lambda f: _sectors(f).assign(gics_sector="Energie").to_csv(f / "sectors.csv", index=False),
        ("refused", "market_universe_gics_sectors"),
    ),
    "sectors an empty ticker": (
        "sectors",
        lambda f: _sectors(f).assign(ticker=lambda d: d.ticker.where(d.index > 0, "")).to_csv(f / "sectors.csv", index=False),
        ("refused", "market_universe_schema"),
    ),
    # market.csv
    "market missing": ("market", lambda f: (f / "market.csv.gz").unlink(), ("refused", "no market.csv or market.csv.gz")),
    "market without vix_close": (
        "market",
        lambda f: _write_market(f, _market(f).drop(columns="vix_close")),
        ("refused", r"missing columns \['vix_close'\]"),
    ),
    "market dates DD-MM-YYYY": (
        "market",
        lambda f: _write_market(f, _market(f).assign(date=lambda d: pd.to_datetime(d.date).dt.strftime("%d-%m-%Y"))),
        ("refused", "not ISO dates"),
    ),
    "market text in vix_close": (
        "market",
        lambda f: _write_market(f, _market(f).astype({"vix_close": object}).assign(vix_close=lambda d: d.vix_close.where(d.index != 100, "12,34"))),
        ("refused", "vix_close: not a number: '12,34'"),
    ),
    "market gzip cut off": (
        "market",
        lambda f: _text(f, "market.csv.gz", (f / "market.csv.gz").read_bytes()[:300]),
        ("refused", "cut off or corrupt"),
    ),
    "market header only": ("market", lambda f: _write_market(f, _market(f).head(0)), ("refused", "a header and no rows")),
    # rare_events.csv
    "rare events missing a column": (
        "events",
        lambda f: _events(f).drop(columns="end").to_csv(f / "rare_events.csv", index=False),
        ("refused", r"missing columns \['end'\]"),
    ),
    "rare event ends before it starts": (
        "events",
        lambda f: _events(f).assign(end="1900-01-01").to_csv(f / "rare_events.csv", index=False),
        ("refused", "events end before they start"),
    ),
    "rare event date unparseable": (
        "events",
        lambda f: _events(f).assign(start=lambda d: d.start.where(d.index > 0, "soon")).to_csv(f / "rare_events.csv", index=False),
        ("refused", "not ISO dates.*'soon'"),
    ),
    "rare events empty (0 bytes)": ("events", lambda f: _text(f, "rare_events.csv", ""), ("refused", "rare_events.csv: the file is empty")),
    # corporate_actions.csv (optional)
    "corporate action ratio not positive": (
        "actions",
        lambda f: _text(f, "corporate_actions.csv", "ticker,date,split_ratio\nKO,2017-06-01,0\n"),
        ("refused", "split_ratio must be a positive number"),
    ),
    "corporate actions missing a column": (
        "actions",
        lambda f: _text(f, "corporate_actions.csv", "ticker,date\nKO,2017-06-01\n"),
        ("refused", r"missing columns \['split_ratio'\]"),
    ),
}


def _ingest(folder: Path):
    """What ingestion does with a data folder: ("refused", message) or ("quarantined", {rules}) or ("ok", set())."""
    try:
        universe, _ = core_data.load_universe_checked(folder)
        problems = {name: cases for name, cases in core_data.universe_problems(universe).items() if len(cases)}
        from stockml_core import schemas
        from stockml_core.schemas import MarketUniverseSchema

        v = schemas.validate("market_universe", universe, MarketUniverseSchema)
        if not v.passed:
            problems["market_universe_schema"] = v.failures
        if problems:
            return "refused", ", ".join(problems)
        core_data.load_market(folder)
        core_data.load_rare_events(folder)
        rows = core_data.read_price_rows(folder)
    except core_data.DataFolderError as exc:
        return "refused", str(exc)
    days = rows.frame.date
    sc = quality.screen_run(rows, universe.ticker, days.min(), days.max(), TODAY, QualitySettings())
    rules = set(sc.quarantined.rule)
    return ("quarantined", rules) if rules else ("ok", set())


@pytest.fixture(scope="module")
def good_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("good") / "data"
    write_slice_folder(folder, tickers=["XOM", "KO", "JPM"], start="2017-01-01")
    assert _ingest(folder) == ("ok", set())
    return folder


def test_the_table_holds_every_kind_the_issue_lists_and_more():
    assert len(CASES) >= 31
    assert {file for file, _, _ in CASES.values()} == {"prices", "sectors", "market", "events", "actions"}


@pytest.mark.parametrize("kind", list(CASES))
def test_each_bad_input_is_refused_or_quarantined_with_its_own_message(kind, good_folder, tmp_path):
    _, breaks, (outcome, expected) = CASES[kind]
    folder = tmp_path / "data"
    shutil.copytree(good_folder, folder)
    breaks(folder)
    got, detail = _ingest(folder)
    assert got == outcome, (kind, detail)
    if outcome == "refused":
        assert pd.Series([detail]).str.contains(expected).iloc[0], (kind, detail)
    else:
        assert detail == {expected}, (kind, detail)


def _digest(home: Path) -> dict:
    """A content hash of every table in the warehouse and of every model file."""
    wh = Warehouse(home / "warehouse.duckdb", read_only=True)
    tables = wh.read("select table_schema, table_name from information_schema.tables order by 1, 2")
    out = {}
    for schema, name in tables.itertuples(index=False):
        df = wh.read(f'select * from "{schema}"."{name}"')  # identifiers from the catalog, never data
        out[f"{schema}.{name}"] = hashlib.sha256(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes()).hexdigest()
    for path in sorted((home / "models").glob("*")):
        out[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


# One kind per file and failure route, through real daily runs: (kind, the step that fails, words of its message).
DAILY = [
    ("prices header only", "raw_prices", "a header and no rows"),
    ("prices gzip cut off", "raw_prices", "cut off or corrupt"),
    ("prices separated by semicolons", "raw_prices", "separated by ';'"),
    ("sectors empty (0 bytes)", "market_universe", "the file is empty"),
    ("sectors a ticker twice", "market_universe", "market_universe_unique_tickers"),
    ("market text in vix_close", "market_context", "not a number: '12,34'"),
    ("corporate action ratio not positive", "raw_prices", "split_ratio must be a positive number"),
]

# The prices files whose date column cannot be read: the freshness check says so, naming the failed run.
UNREADABLE = {"prices header only", "prices gzip cut off", "prices separated by semicolons"}


def test_bad_files_fail_the_daily_run_at_once_and_change_nothing_stored(materialized, home_copy, fresh_instance, tmp_path):
    folder = tmp_path / "data"
    write_slice_folder(folder)
    pristine = tmp_path / "pristine"
    shutil.copytree(folder, pristine)
    before = _digest(home_copy)
    config = slice_config(home_copy, data_dir=folder, tickers=None)
    for kind, step, words in DAILY:
        shutil.rmtree(folder)
        shutil.copytree(pristine, folder)
        CASES[kind][1](folder)
        result = run_daily_job(fresh_instance, materialized.last_day, **config)
        assert not result.success, kind
        assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"], kind  # no retry
        (failure,) = [e for e in result.all_events if e.is_step_failure]
        assert failure.step_key == step, (kind, failure.step_key)
        assert words in failure.event_specific_data.error.message, (kind, failure.event_specific_data.error.message)
        assert step not in materialized_keys(result) and "predictions" not in materialized_keys(result), kind
        fresh = judge_freshness(fresh_instance, folder, 6.0)  # freshness on the data's calendar fails, naming the run
        assert not fresh.passed and fresh.run_id == result.run_id, (kind, fresh)
        assert fresh.status == ("feed unreadable" if kind in UNREADABLE else "daily run failed"), (kind, fresh)
    assert _digest(home_copy) == before  # every table and model file as it was (upstream steps re-stored the same rows)
