"""Tests of stockml_core.market.calendar: the NYSE calendar against the real price history and known holidays."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from stockml_core.market.calendar import is_trading_day, nyse_holidays, trading_days

DATA = Path(__file__).resolve().parent.parent / "data" / "sample"


@pytest.fixture(scope="module")
def price_days() -> pd.DatetimeIndex:
    dates = pd.read_csv(DATA / "prices.csv.gz", usecols=["date"]).date.unique()
    return pd.DatetimeIndex(sorted(pd.to_datetime(dates)))


@pytest.fixture(scope="module")
def market_close_days() -> pd.DatetimeIndex:
    market = pd.read_csv(DATA / "market.csv.gz", usecols=["date", "spx_close"], parse_dates=["date"])
    return pd.DatetimeIndex(market.date[market.spx_close.notna()])


def test_trading_days_equal_the_distinct_dates_of_the_price_history(price_days) -> None:
    days = trading_days("1990-01-02", "2017-11-10")
    assert len(price_days) == 7023
    assert len(days) == 7023
    assert days.difference(price_days).empty, "calendar has days with no stock rows"
    assert price_days.difference(days).empty, "stock rows on days the calendar calls closed"
    assert days.equals(price_days)


def test_trading_days_equal_the_sp500_close_days_through_2026(market_close_days) -> None:
    # The index closes only on exchange days, so it checks the calendar after the stock rows end too.
    days = trading_days("1990-01-02", "2026-02-11")
    assert days.equals(market_close_days)


def test_holidays_of_2026() -> None:
    expected = {
        date(2026, 1, 1),
        date(2026, 1, 19),
        date(2026, 2, 16),
        date(2026, 4, 3),
        date(2026, 5, 25),
        date(2026, 6, 19),
        date(2026, 7, 3),
        date(2026, 9, 7),
        date(2026, 11, 26),
        date(2026, 12, 25),
    }
    assert nyse_holidays(2026) == expected  # Saturday 4 July observed on Friday 3 July


def test_trading_days_are_sorted_unique_weekdays() -> None:
    days = trading_days("2015-01-01", "2015-12-31")
    assert days.is_monotonic_increasing and days.is_unique
    assert (days.weekday < 5).all()
    assert len(days) == 252


def test_trading_days_of_an_empty_range_are_empty() -> None:
    assert len(trading_days("2015-01-03", "2015-01-04")) == 0  # a weekend
    assert len(trading_days("2015-01-10", "2015-01-01")) == 0  # end before start


def test_good_friday_is_closed() -> None:
    assert not is_trading_day(date(2015, 4, 3))
    assert is_trading_day(date(2015, 4, 2)) and is_trading_day(date(2015, 4, 6))  # Easter Monday trades


def test_thanksgiving_is_closed_and_the_day_after_trades() -> None:
    assert not is_trading_day(date(2015, 11, 26))
    assert not is_trading_day(date(2016, 11, 24))
    assert is_trading_day(date(2015, 11, 27))


def test_juneteenth_closed_from_2022_only() -> None:
    assert not is_trading_day(date(2023, 6, 19))
    assert not is_trading_day(date(2022, 6, 20))  # Sunday 2022-06-19 observed on the Monday
    assert is_trading_day(date(2021, 6, 18))  # before NYSE observed it, the Friday traded


def test_september_11_closures() -> None:
    for day in range(11, 15):
        assert not is_trading_day(date(2001, 9, day)), f"2001-09-{day}"
    assert is_trading_day(date(2001, 9, 10)) and is_trading_day(date(2001, 9, 17))


def test_saturday_new_year_is_not_observed_on_the_friday_before() -> None:
    assert date(2022, 1, 1).weekday() == 5
    assert is_trading_day(date(2021, 12, 31))
    assert date(2021, 12, 31) not in nyse_holidays(2021)
    assert date(2022, 1, 1) not in nyse_holidays(2022)


def test_sunday_new_year_is_observed_on_monday() -> None:
    assert date(2017, 1, 1).weekday() == 6
    assert not is_trading_day(date(2017, 1, 2))


def test_saturday_christmas_and_independence_day_move_to_friday() -> None:
    assert not is_trading_day(date(2021, 12, 24))
    assert not is_trading_day(date(2015, 7, 3))


def test_martin_luther_king_day_closed_from_1998() -> None:
    assert not is_trading_day(date(1998, 1, 19))
    assert is_trading_day(date(1997, 1, 20))


def test_weekends_are_not_trading_days() -> None:
    assert not is_trading_day(date(2015, 4, 4))  # Saturday
    assert not is_trading_day(date(2015, 4, 5))  # Sunday
    assert not is_trading_day(pd.Timestamp("2017-11-11"))


def test_is_trading_day_accepts_timestamps_and_strings() -> None:
    assert is_trading_day(pd.Timestamp("2017-11-10"))
    assert is_trading_day("2017-11-10")
