"""`stockml replay` on real slices of the sample: the platform runs itself through history.

Each test plays trading days one by one through the real definitions (daily partitions, sensors
evaluated each day, the runs they request executed, the gate deciding) in a fresh instance and
warehouse, and reads the report.
"""

import json

import numpy as np
import pandas as pd
import pytest

from stockml_assets.resources import StockMLResource
from stockml_assets.simulation import replay
from stockml_core.market.data import load_rare_events
from stockml_core.settings import DriftSettings
from tests.conftest import LENIENT_GATE, SLICE_TICKERS, write_slice_folder

REPLAY_CONFIG = {"tickers": SLICE_TICKERS, "fast": True, "gate": LENIENT_GATE}
REPORT_KEYS = {"triggers", "retrains", "events_captured", "shifts"}


SHIFT_DAY = "2006-01-23"


def _replay(tmp_path, data_dir, start, end, **kw) -> dict:
    replay(start, end, tmp_path / "out", data_dir=data_dir, home=tmp_path / "state", log=lambda _: None, **{**REPLAY_CONFIG, **kw})
    on_disk = json.loads((tmp_path / "out" / "report.json").read_text())
    assert REPORT_KEYS <= set(on_disk) and (tmp_path / "out" / "report.md").exists()
    return on_disk


def plant_shift(folder, day: str, return_scale: float = 4.0, vix_scale: float = 2.2) -> None:
    """From ``day`` on, every stock's and the S&P 500's daily returns are scaled up and the VIX multiplied."""
    prices = pd.read_csv(folder / "prices.csv")
    out = []
    for _, g in prices.sort_values(["ticker", "date"]).groupby("ticker"):
        g = g.copy()
        after = (g.date >= day).to_numpy()
        r = np.log(g.close).diff().fillna(0.0).to_numpy()
        scale = np.exp(np.cumsum(np.where(after, (return_scale - 1) * r, 0.0)))
        for c in ("open", "high", "low", "close"):
            g[c] = g[c] * scale
        out.append(g)
    pd.concat(out).to_csv(folder / "prices.csv", index=False)
    market = pd.read_csv(folder / "market.csv.gz")
    after = market.date >= day
    for c in ("vix_open", "vix_high", "vix_low", "vix_close"):
        market.loc[after, c] = market.loc[after, c] * vix_scale
    r = np.log(market.spx_close).diff().fillna(0.0)
    spx_scale = np.exp(np.cumsum(np.where(after, 2.0 * r, 0.0)))
    for c in ("spx_open", "spx_high", "spx_low", "spx_close"):
        market[c] = market[c] * spx_scale
    market.to_csv(folder / "market.csv.gz", index=False)


def test_quiet_window_then_planted_shift_triggers_exactly_one_retrain(tmp_path) -> None:
    """One replay of real, quiet January 2006 data (VIX 11-14) with a shift planted on 2006-01-23.

    Before the shift (4 trading days of untouched data) nothing triggers; after it, exactly one
    drift retrain within 5 trading days (measured: on D+5, 2006-01-30), and nothing more during
    the episode's following days.
    """
    folder = tmp_path / "data"
    write_slice_folder(folder, start="2001-06-01", end="2006-03-31")
    plant_shift(folder, SHIFT_DAY)
    report = _replay(tmp_path, folder, "2006-01-17", "2006-02-01")
    assert report["failed_runs"] == []
    assert report["initial_model"]["champion"] is not None  # started from a model trained before --start
    days = list(report["drift_scores"])
    quiet = days[: days.index(SHIFT_DAY)]
    assert len(quiet) == 4 and len(days) - len(quiet) == 8
    assert max(report["drift_scores"][d] for d in quiet) < DriftSettings().score_threshold
    assert all(t["date"] >= SHIFT_DAY for t in report["triggers"]), report["triggers"]
    drift = [t for t in report["triggers"] if t["trigger"] == "drift"]
    assert len(drift) == 1 and len(report["retrains"]) == 1, report["triggers"]
    retrain = report["retrains"][0]
    assert retrain["trigger"] == "drift" and retrain["candidate_version"]
    # The decision travels with the retrain: the drift score vetoes nothing; the candidate is judged against the
    # predictions published during the replay (too few days with a known outcome yet: not applicable, said so).
    assert "drift_score" not in retrain["evidence"] and retrain["promoted"] == (retrain["failed"] == [])
    assert retrain["evidence"]["recent_days_vs_production"]["outcome"] == "not applicable"
    assert 0 <= days.index(retrain["date"]) - days.index(SHIFT_DAY) <= 5, retrain["date"]
    assert drift[0]["score"] >= DriftSettings().score_threshold
    assert report["events_captured"] == []


def test_replay_of_2011_captures_the_uncatalogued_event_once(tmp_path) -> None:
    folder = tmp_path / "data"
    write_slice_folder(folder, start="2007-06-01", end="2011-10-31")
    events = pd.read_csv(folder / "rare_events.csv")
    events[events.name != "us_downgrade_2011"].to_csv(folder / "rare_events.csv", index=False)
    # From 08-15: the stress began on 08-04 (before the replay: the capture still dates the event from
    # the start of the stress run), VIX closed above 40 on 08-18, 08-19 and 08-22.
    report = _replay(tmp_path, folder, "2011-08-15", "2011-08-22", initial_model="none")
    captured = report["events_captured"]
    assert len(captured) == 1, captured
    assert captured[0]["start"] == "2011-08-04" and captured[0]["end"] == captured[0]["captured_on"] == "2011-08-22"
    assert sum(t["trigger"] == "new_event" for t in report["triggers"]) == 1
    # The catalog holds it once, and capturing it again adds nothing.
    stockml = StockMLResource(data_dir=str(folder), home=str(tmp_path / "state" / "state"))
    stored = stockml.captured_events().read()
    assert list(stored.name) == [captured[0]["name"]]
    again = {"name": captured[0]["name"] + "_again", "start": captured[0]["start"], "end": captured[0]["end"]}
    added, why = stockml.captured_events().record(again, load_rare_events(folder))
    assert not added and "overlaps" in why
    assert len(stockml.captured_events().read()) == 1


def test_replay_refuses_a_window_without_data_or_history(tmp_path) -> None:
    folder = tmp_path / "data"
    write_slice_folder(folder, start="2010-01-01", end="2010-12-31")
    with pytest.raises(ValueError, match="no trading day with data"):
        replay("2011-01-03", "2011-12-30", tmp_path / "out", data_dir=folder, home=tmp_path / "state", log=lambda _: None, **REPLAY_CONFIG)
    with pytest.raises(ValueError, match="no data before 2010-01-04"):
        replay("2009-06-01", "2010-03-01", tmp_path / "out", data_dir=folder, home=tmp_path / "state", log=lambda _: None, **REPLAY_CONFIG)


def test_replay_checks_every_argument_before_it_touches_the_disk(tmp_path, monkeypatch) -> None:
    """`--start ./victim --end ""` once deleted ./victim_ before failing on the dates; a replay now validates
    first and wipes only a folder that is its own."""
    from stockml_assets.simulation import REPLAY_MARKER, reset_replay_home

    monkeypatch.chdir(tmp_path)
    victim = tmp_path / "victim_"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    monkeypatch.setenv("STOCKML_HOME", str(tmp_path))
    for start, end, message in [
        ("./victim", "", "--start './victim' is not a date"),
        ("2011-01-03", "", "--end '' is not a date"),
        ("2011-13-01", "2011-12-30", "is not a date"),
        ("03-01-2011", "2011-12-30", "is not a date"),
        ("2011-12-30", "2011-01-03", "is after --end"),
    ]:
        with pytest.raises(ValueError, match=message):
            replay(start, end, tmp_path / "out", data_dir=tmp_path, log=lambda _: None)
    assert (victim / "precious.txt").read_text() == "keep me" and not (tmp_path / "out").exists()
    # An explicit home that is not a replay's own is refused, nothing deleted; an empty or marked one is reset.
    with pytest.raises(ValueError, match="nothing was deleted"):
        replay("2011-01-03", "2011-01-05", tmp_path / "out", data_dir=tmp_path, home=victim, log=lambda _: None)
    assert (victim / "precious.txt").exists()
    mine = tmp_path / "mine"
    reset_replay_home(mine)
    (mine / "dagster" / "old.db").write_text("x")
    reset_replay_home(mine)
    assert (mine / REPLAY_MARKER).is_file() and not (mine / "dagster" / "old.db").exists()
