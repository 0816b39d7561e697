"""Units of the autonomy layer: trading-day partitions, rare-event capture, the captured-event store."""

import numpy as np
import pandas as pd
import pytest

from stockml_assets.partitions import UP_TO_TODAY, day_keys, range_tags
from stockml_assets.resources import StockMLResource
from stockml_core.market.calendar import trading_days
from stockml_core.market.data import load_rare_events
from stockml_core.market.events import capture_candidate, overlapping
from stockml_core.settings import SAMPLE_DATA_DIR, CaptureSettings

# ------------------------------------------------------------------------------------ partitions


def test_partitions_are_exactly_the_nyse_trading_days() -> None:
    keys = day_keys("1990-01-02", "2017-12-29")
    assert keys == [f"{d:%Y-%m-%d}" for d in trading_days("1990-01-02", "2017-12-29")]
    for closed in ["2017-07-04", "2017-11-23", "2012-10-29", "2012-10-30", "2001-09-11", "2017-11-11"]:
        assert closed not in keys
    assert len(day_keys("2016-01-01", "2016-12-31")) == 252


def test_day_keys_never_snap_past_the_range() -> None:
    assert day_keys("2011-07-20", "2011-07-24") == ["2011-07-20", "2011-07-21", "2011-07-22"]
    assert day_keys("2011-07-23", "2011-07-24") == []  # a weekend holds no trading day
    assert day_keys("2011-07-26", "2011-07-25") == []
    assert range_tags("2011-07-23", "2011-07-29") == {
        "dagster/asset_partition_range_start": "2011-07-25",
        "dagster/asset_partition_range_end": "2011-07-29",
    }
    with pytest.raises(ValueError, match="no NYSE trading day"):
        range_tags("2011-07-23", "2011-07-24")


def test_todays_partition_exists_for_the_run_after_the_close() -> None:
    last = UP_TO_TODAY.get_last_partition_key()  # the calendar's end; TRADING_DAYS ends at the data's last day
    assert last is not None and last <= f"{pd.Timestamp.now(tz='America/New_York'):%Y-%m-%d}"


# ------------------------------------------------------------------------------------ capture


def _regimes(vix: list[float], regime: list[str], start="2011-08-01") -> pd.DataFrame:
    days = trading_days(start, "2011-12-31")[: len(vix)]
    return pd.DataFrame({"date": days, "regime": regime, "vix_close": vix})


S = CaptureSettings()
EMPTY = pd.DataFrame({"name": pd.Series(dtype=str), "start": pd.Series(dtype="datetime64[ns]"), "end": pd.Series(dtype="datetime64[ns]")})
REGIME = ["normal", "high_volatility", "crash", "crash", "crash", "crash"]
VIX = [20.0, 30.0, 39.0, 41.0, 42.0, 43.0]


def test_capture_when_every_condition_holds() -> None:
    r = _regimes(VIX, REGIME)
    day = r.date.iloc[-1]
    event, why = capture_candidate(day, r, 0.3, EMPTY, S)
    assert event is not None, why
    assert event["start"] == f"{r.date.iloc[1]:%Y-%m-%d}"  # first day of the stress run
    assert event["end"] == f"{day:%Y-%m-%d}" and event["name"] == f"captured_{r.date.iloc[1]:%Y_%m_%d}"


@pytest.mark.parametrize(
    ("vix", "regime", "score", "reason"),
    [
        (VIX, REGIME[:-1] + ["high_volatility"], 0.3, "regime high_volatility is not crash"),
        (VIX[:-1] + [39.0], REGIME, 0.3, "VIX above 40 on 0 consecutive"),
        ([20.0, 30.0, 41.0, 39.0, 42.0, 43.0], REGIME, 0.3, "on 2 consecutive day(s) < 3"),
        (VIX, REGIME, 0.25, "drift score 0.25 <= 0.25"),
        (VIX, REGIME, None, "drift score n/a"),
    ],
)
def test_no_capture_when_a_condition_fails(vix, regime, score, reason) -> None:
    r = _regimes(vix, regime)
    event, why = capture_candidate(r.date.iloc[-1], r, score, EMPTY, S)
    assert event is None and reason in why


def test_no_capture_overlapping_a_catalogued_event() -> None:
    r = _regimes(VIX, REGIME)
    catalog = pd.DataFrame({"name": ["us_downgrade_2011"], "start": [pd.Timestamp("2011-07-22")], "end": [pd.Timestamp("2011-08-02")]})
    event, why = capture_candidate(r.date.iloc[-1], r, 0.3, catalog, S)
    assert event is None and "overlaps catalogued us_downgrade_2011" in why
    assert overlapping(catalog, "2011-08-03", "2011-08-10") == []


def test_capture_uses_no_later_day() -> None:
    r = _regimes(VIX + [10.0, 10.0], REGIME + ["normal", "normal"])
    day = r.date.iloc[5]
    assert capture_candidate(day, r, 0.3, EMPTY, S) == capture_candidate(day, r.iloc[:6], 0.3, EMPTY, S)


# ------------------------------------------------------------------------------------ the store


def test_captured_events_are_stored_once_and_never_overlapping(tmp_path) -> None:
    stockml = StockMLResource(data_dir=str(SAMPLE_DATA_DIR), home=str(tmp_path))
    historical = load_rare_events(SAMPLE_DATA_DIR)
    assert stockml.captured_events().read().empty
    event = {"name": "captured_2018_02_05", "start": "2018-02-05", "end": "2018-02-09", "description": "test"}
    assert stockml.captured_events().record(event, historical)[0]
    added, why = stockml.captured_events().record(event, historical)
    assert not added and "already in the catalog" in why
    added, why = stockml.captured_events().record({**event, "name": "other", "start": "2018-02-08"}, historical)
    assert not added and "overlaps captured_2018_02_05" in why
    added, why = stockml.captured_events().record({**event, "name": "x", "start": "2011-08-01", "end": "2011-08-05"}, historical)
    assert not added and "us_downgrade_2011" in why
    assert list(stockml.captured_events().read().name) == ["captured_2018_02_05"]


def test_score_cache_scores_only_unseen_rows_and_never_serves_a_changed_row() -> None:
    """prediction_drift re-scores the reference window every day; the cache returns exactly what the model
    gives, scores only rows it has not seen, and treats a changed row or another model as unseen."""
    from sklearn.linear_model import LogisticRegression

    from stockml_assets.assets.monitoring import ScoreCache

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "ticker": np.repeat(["A", "B"], 50),
            "date": np.tile(pd.bdate_range("2020-01-01", periods=50), 2),
            "x1": rng.normal(size=100),
            "x2": rng.normal(size=100),
        }
    )
    model = LogisticRegression().fit(frame[["x1", "x2"]].to_numpy(), rng.integers(0, 3, 100))

    class Counting:  # the real model, counting the rows it is asked to score
        scored = 0

        def predict_proba(self, rows):
            Counting.scored += len(rows)
            return model.predict_proba(rows[["x1", "x2"]].to_numpy())

    cache, counting = ScoreCache(), Counting()
    first, second = frame.iloc[:60], frame.iloc[40:]
    np.testing.assert_array_equal(cache.predict_proba("m1", counting, first), model.predict_proba(first[["x1", "x2"]].to_numpy()))
    got = cache.predict_proba("m1", counting, second)
    np.testing.assert_allclose(got, model.predict_proba(second[["x1", "x2"]].to_numpy()), rtol=0, atol=1e-15)
    assert Counting.scored == 60 + 40  # the 20 overlapping rows came from the cache
    changed = second.copy()
    changed.iloc[0, changed.columns.get_loc("x1")] += 1.0
    got = cache.predict_proba("m1", counting, changed)
    np.testing.assert_allclose(got[0], model.predict_proba(changed[["x1", "x2"]].to_numpy()[:1])[0], rtol=0, atol=1e-15)
    assert Counting.scored == 101
    cache.predict_proba("m2", counting, first)
    assert Counting.scored == 161


def test_market_state_plot_is_reused_only_for_the_same_mix() -> None:
    """regime_drift draws its mix plot once per distinct mix: the same shares give the same PNG (no
    redraw), any other share a new one, so the UI never shows a stale plot."""
    from stockml_assets.assets.monitoring import _mix_plot_md

    mix = pd.DataFrame({"category": ["crash", "correction", "normal"], "reference_share": [0.0, 0.1, 0.9], "current_share": [0.0, 0.2, 0.8]})
    first = _mix_plot_md(mix, "market state mix")
    assert _mix_plot_md(mix.copy(), "market state mix") is first
    moved = _mix_plot_md(mix.assign(current_share=[0.0, 0.4, 0.6]), "market state mix")
    assert moved is not first and moved.value != first.value and moved.value.startswith("![plot](data:image/png;base64,")
