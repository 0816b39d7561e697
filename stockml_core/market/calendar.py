"""The NYSE trading calendar: weekdays less the exchange's holidays and special closures."""

from __future__ import annotations

from datetime import date, timedelta
from functools import cache

import numpy as np
import pandas as pd

# Unscheduled full-day closures (national mourning, 9/11, hurricane Sandy) inside 1990-2030.
SPECIAL_CLOSURES = (
    "1994-04-27",
    "2001-09-11",
    "2001-09-12",
    "2001-09-13",
    "2001-09-14",
    "2004-06-11",
    "2007-01-02",
    "2012-10-29",
    "2012-10-30",
    "2018-12-05",
    "2025-01-09",
)


def _easter(year: int) -> date:
    """Gregorian Easter Sunday (anonymous algorithm)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = b // 4, b % 4
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = c // 4, c % 4
    l_ = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * l_) // 451
    month = (h + l_ - 7 * m + 114) // 31
    day = (h + l_ - 7 * m + 114) % 31 + 1
    return date(year, month, day)


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))


def _last_weekday(year: int, month: int, weekday: int) -> date:
    last = (date(year, month + 1, 1) if month < 12 else date(year + 1, 1, 1)) - timedelta(days=1)
    return last - timedelta(days=(last.weekday() - weekday) % 7)


def _observed(d: date) -> date | None:
    """Saturday holidays move to Friday, Sunday ones to Monday."""
    if d.weekday() == 5:
        return d - timedelta(days=1)
    if d.weekday() == 6:
        return d + timedelta(days=1)
    return d


@cache
def nyse_holidays(year: int) -> frozenset[date]:
    """NYSE full-day holidays of one year (the rules in force that year)."""
    days: set[date | None] = set()
    new_year = date(year, 1, 1)
    # A Saturday New Year's Day is not observed on the Friday before (NYSE rule 7.2).
    days.add(new_year + timedelta(days=1) if new_year.weekday() == 6 else (None if new_year.weekday() == 5 else new_year))
    if year >= 1998:
        days.add(_nth_weekday(year, 1, 0, 3))  # Martin Luther King Jr. Day
    days.add(_nth_weekday(year, 2, 0, 3))  # Washington's Birthday
    days.add(_easter(year) - timedelta(days=2))  # Good Friday
    days.add(_last_weekday(year, 5, 0))  # Memorial Day
    if year >= 2022:
        days.add(_observed(date(year, 6, 19)))  # Juneteenth
    days.add(_observed(date(year, 7, 4)))
    days.add(_nth_weekday(year, 9, 0, 1))  # Labor Day
    days.add(_nth_weekday(year, 11, 3, 4))  # Thanksgiving
    days.add(_observed(date(year, 12, 25)))
    days.update(date.fromisoformat(s) for s in SPECIAL_CLOSURES if int(s[:4]) == year)
    return frozenset(d for d in days if d is not None)


def is_trading_day(d: date | pd.Timestamp) -> bool:
    """True on NYSE trading days."""
    d = pd.Timestamp(d).date()
    return d.weekday() < 5 and d not in nyse_holidays(d.year)


def trading_days(start: str | date, end: str | date) -> pd.DatetimeIndex:
    """All NYSE trading days in [start, end]."""
    days = pd.bdate_range(start, end)
    holidays = {h for y in range(days.min().year, days.max().year + 1) for h in nyse_holidays(y)} if len(days) else set()
    mask = np.array([d.date() not in holidays for d in days], dtype=bool)
    return days[mask]
