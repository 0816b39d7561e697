"""The rare-event catalog and the archive of samples drawn from its windows."""

from __future__ import annotations

import numpy as np
import pandas as pd

from stockml_core.settings import CaptureSettings


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


def event_days(dates, catalog: pd.DataFrame) -> pd.DataFrame:
    """(date, event) for each distinct date inside a catalogued window, tagged with the first event whose
    window holds it (``assign_events``): what joins the feature rows into the archive."""
    days = pd.Series(pd.to_datetime(pd.Series(dates).drop_duplicates()).astype("datetime64[ns]").to_numpy())
    event = assign_events(days, catalog)
    return pd.DataFrame({"date": days[event.notna()].to_numpy(), "event": event[event.notna()].astype(str).to_numpy()})


def build_archive(samples: pd.DataFrame, catalog: pd.DataFrame) -> pd.DataFrame:
    """Every sample (ticker, date, ...) inside an event window, tagged with the event, deduplicated."""
    archive = samples.merge(event_days(samples.date, catalog), on="date")
    archive = archive.drop_duplicates(["ticker", "date"], keep="first")
    return archive.sort_values(["date", "ticker"]).reset_index(drop=True)


# ------------------------------------------------------------------------------------ dynamic capture

STRESS_REGIMES = ("crash", "high_volatility")


def overlapping(catalog: pd.DataFrame, start, end) -> list[str]:
    """Names of catalogued events whose window overlaps [start, end]."""
    if catalog is None or catalog.empty:
        return []
    hit = (pd.to_datetime(catalog.start) <= pd.Timestamp(end)) & (pd.to_datetime(catalog.end) >= pd.Timestamp(start))
    return list(catalog.name[hit])


def capture_candidate(day, regimes: pd.DataFrame, drift_score: float | None, catalog: pd.DataFrame, s: CaptureSettings) -> tuple[dict | None, str]:
    """The new rare event the data up to ``day`` shows, if every capture condition holds: (event, why).

    Conditions on ``day``: its regime is ``s.regime``; VIX closed above ``s.vix_above`` on the
    last ``s.vix_days`` consecutive trading days; the drift score is above ``s.min_drift_score``;
    and the event window overlaps no catalogued event. The window starts on the first day of the
    stress run (consecutive crash / high-volatility days) that holds ``day`` and ends on ``day``.
    Uses rows dated <= ``day`` only.
    """
    day = pd.Timestamp(day)
    r = regimes[pd.to_datetime(regimes.date) <= day].sort_values("date")
    if r.empty or pd.Timestamp(r.date.iloc[-1]) != day:
        return None, f"no regime for {day:%Y-%m-%d}"
    regime = str(r.regime.iloc[-1])
    vix = r.vix_close.to_numpy(dtype="float64")
    above = vix > s.vix_above
    streak = len(above) - (np.flatnonzero(~above)[-1] + 1) if (~above).any() else len(above)
    reasons = []
    if regime != s.regime:
        reasons.append(f"regime {regime} is not {s.regime}")
    if streak < s.vix_days:
        reasons.append(f"VIX above {s.vix_above:g} on {streak} consecutive day(s) < {s.vix_days}")
    if drift_score is None or not np.isfinite(drift_score) or drift_score <= s.min_drift_score:
        reasons.append(f"drift score {drift_score if drift_score is not None else 'n/a'} <= {s.min_drift_score}")
    if reasons:
        return None, "; ".join(reasons)
    stress = r.regime.isin(STRESS_REGIMES).to_numpy()
    start_idx = np.flatnonzero(~stress)[-1] + 1 if (~stress).any() else 0
    start = pd.Timestamp(r.date.iloc[start_idx])
    clash = overlapping(catalog, start, day)
    if clash:
        return None, f"window {start:%Y-%m-%d}..{day:%Y-%m-%d} overlaps catalogued {', '.join(clash)}"
    event = {
        "name": f"captured_{start:%Y_%m_%d}",
        "start": f"{start:%Y-%m-%d}",
        "end": f"{day:%Y-%m-%d}",
        "description": f"captured on {day:%Y-%m-%d}: {s.regime} regime, VIX above {s.vix_above:g} for {streak} days "
        f"(last {vix[-1]:.1f}), drift score {drift_score:.3f}",
    }
    return event, "all capture conditions hold"
