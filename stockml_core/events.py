"""The rare-event catalog and the archive of samples drawn from its windows."""

from __future__ import annotations

import pandas as pd


def build_catalog(historical: pd.DataFrame, captured: pd.DataFrame | None = None) -> pd.DataFrame:
    """Historical events plus dynamically captured ones, one row per event name."""
    frames = [historical.assign(source="historical")]
    if captured is not None and len(captured):
        frames.append(captured.assign(source="captured"))
    cat = pd.concat(frames, ignore_index=True)
    cat = cat.drop_duplicates("name", keep="first").sort_values("start").reset_index(drop=True)
    cat["trading_days"] = 0
    return cat[["name", "start", "end", "description", "source", "trading_days"]]


def assign_events(dates: pd.Series, catalog: pd.DataFrame) -> pd.Series:
    """The first catalogued event whose window holds each date, else None."""
    out = pd.Series([None] * len(dates), index=dates.index, dtype=object)
    for ev in catalog.sort_values("start", ascending=False).itertuples():  # loop over events, not rows
        out[(dates >= ev.start) & (dates <= ev.end)] = ev.name
    return out


def build_archive(samples: pd.DataFrame, catalog: pd.DataFrame) -> pd.DataFrame:
    """Every sample (ticker, date, ...) inside an event window, tagged with the event, deduplicated."""
    event = assign_events(samples.date, catalog)
    archive = samples.loc[event.notna()].assign(event=event[event.notna()])
    archive = archive.drop_duplicates(["ticker", "date"], keep="first")
    return archive.sort_values(["date", "ticker"]).reset_index(drop=True)
