"""Tests of the rare-event archive, the error replay buffer and per-sector performance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stockml_core.market.data import load_rare_events
from stockml_core.market.events import assign_events, build_archive, build_catalog
from stockml_core.modeling.error_analysis import (
    REPLAY_COLUMNS,
    replay_error_rates,
    sector_performance,
    update_replay_buffer,
    worst_mistakes,
)
from stockml_core.modeling.evaluation import PROBA_COLUMNS

DATA = Path(__file__).resolve().parent.parent / "data" / "sample"


# ------------------------------------------------------------------------------------ events


def _catalog(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "name": [r[0] for r in rows],
            "start": pd.to_datetime([r[1] for r in rows]),
            "end": pd.to_datetime([r[2] for r in rows]),
            "description": [r[0] for r in rows],
        }
    )


OVERLAPPING = _catalog([("early", "2020-01-06", "2020-01-17"), ("late", "2020-01-13", "2020-01-24")])


@pytest.fixture(scope="module")
def samples() -> pd.DataFrame:
    dates = pd.bdate_range("2020-01-01", "2020-01-31")
    df = pd.DataFrame({"ticker": np.repeat(["AAA", "BBB"], len(dates)), "date": np.tile(dates, 2)})
    return df.assign(x=np.arange(len(df), dtype=float))


def test_archive_holds_each_sample_once_across_overlapping_windows(samples) -> None:
    archive = build_archive(samples, OVERLAPPING)
    assert not archive.duplicated(["ticker", "date"]).any()
    in_union = samples[(samples.date >= "2020-01-06") & (samples.date <= "2020-01-24")]
    assert len(archive) == len(in_union)
    assert set(zip(archive.ticker, archive.date, strict=True)) == set(zip(in_union.ticker, in_union.date, strict=True))


def test_archive_deduplicates_repeated_samples(samples) -> None:
    archive = build_archive(pd.concat([samples, samples], ignore_index=True), OVERLAPPING)
    assert not archive.duplicated(["ticker", "date"]).any()
    assert len(archive) == len(build_archive(samples, OVERLAPPING))


def test_overlap_days_go_to_the_earlier_event(samples) -> None:
    archive = build_archive(samples, OVERLAPPING).set_index(["ticker", "date"]).event
    assert archive["AAA", pd.Timestamp("2020-01-13")] == "early"
    assert archive["AAA", pd.Timestamp("2020-01-17")] == "early"
    assert archive["AAA", pd.Timestamp("2020-01-20")] == "late"
    assert archive["BBB", pd.Timestamp("2020-01-06")] == "early"


def test_archive_excludes_samples_outside_every_window_and_keeps_columns(samples) -> None:
    archive = build_archive(samples, OVERLAPPING)
    assert archive.date.min() == pd.Timestamp("2020-01-06") and archive.date.max() == pd.Timestamp("2020-01-24")
    assert list(archive.columns) == ["ticker", "date", "x", "event"]
    assert archive[["date", "ticker"]].equals(archive.sort_values(["date", "ticker"])[["date", "ticker"]])


def test_assign_events_includes_both_window_ends() -> None:
    dates = pd.Series(pd.to_datetime(["2020-01-03", "2020-01-06", "2020-01-24", "2020-01-27"]))
    assert list(assign_events(dates, OVERLAPPING)) == [None, "early", "late", None]


def test_catalog_merges_captured_events_without_duplicate_names() -> None:
    historical = load_rare_events(DATA)
    captured = _catalog([("flash_crash_2010", "2010-05-06", "2010-05-07"), ("captured_2024", "2024-08-02", "2024-08-06")])
    cat = build_catalog(historical, captured)
    assert cat.name.is_unique and len(cat) == len(historical) + 1
    assert cat.set_index("name").source["flash_crash_2010"] == "historical"
    assert cat.set_index("name").source["captured_2024"] == "captured"
    assert cat.start.is_monotonic_increasing


# ------------------------------------------------------------------------------------ replay buffer


def _oof(rows: list[tuple[str, str, str, str, int, list[float]]]) -> pd.DataFrame:
    """rows: (ticker, date, sector, regime, label, [p_down, p_flat, p_up])."""
    df = pd.DataFrame(
        {
            "ticker": [r[0] for r in rows],
            "date": pd.to_datetime([r[1] for r in rows]),
            "sector": [r[2] for r in rows],
            "regime": [r[3] for r in rows],
            "label": [r[4] for r in rows],
        }
    )
    df[[f"candidate__{c}" for c in PROBA_COLUMNS]] = np.array([r[5] for r in rows])
    return df


OOF = _oof(
    [
        ("AAA", "2020-01-02", "Energy", "normal", 2, [0.90, 0.05, 0.05]),  # wrong, confidence 0.90
        ("AAA", "2020-01-03", "Energy", "crash", 0, [0.10, 0.10, 0.80]),  # wrong, 0.80
        ("BBB", "2020-01-02", "Energy", "normal", 1, [0.05, 0.90, 0.05]),  # right
        ("BBB", "2020-01-03", "Energy", "crash", 1, [0.20, 0.20, 0.60]),  # wrong, 0.60
        ("CCC", "2020-01-02", "Utilities", "normal", 0, [0.95, 0.03, 0.02]),  # right, very confident
        ("CCC", "2020-01-03", "Utilities", "crash", 2, [0.50, 0.40, 0.10]),  # wrong, 0.50
        ("DDD", "2020-01-02", "Utilities", "normal", 2, [0.10, 0.20, 0.70]),  # right
        ("DDD", "2020-01-03", "Utilities", "normal", 2, [0.20, 0.30, 0.50]),  # right
    ]
)


def test_worst_mistakes_picks_the_most_confident_wrong_predictions() -> None:
    buf = worst_mistakes(OOF, None, size=3)
    assert list(buf.columns) == REPLAY_COLUMNS
    assert list(zip(buf.ticker, buf.date.dt.strftime("%Y-%m-%d"), strict=True)) == [
        ("AAA", "2020-01-02"),
        ("AAA", "2020-01-03"),
        ("BBB", "2020-01-03"),
    ]
    np.testing.assert_allclose(buf.confidence, [0.90, 0.80, 0.60])
    np.testing.assert_allclose(buf.error_score, buf.confidence)
    assert list(buf.predicted) == [0, 2, 2] and list(buf.label) == [2, 0, 1]


def test_worst_mistakes_caps_at_size() -> None:
    assert len(worst_mistakes(OOF, None, size=2)) == 2
    assert len(worst_mistakes(OOF, None, size=100)) == 4  # only four mistakes exist


def test_worst_mistakes_excludes_correct_predictions() -> None:
    buf = worst_mistakes(OOF, None, size=100)
    assert (buf.predicted != buf.label).all()
    assert ("CCC", pd.Timestamp("2020-01-02")) not in set(zip(buf.ticker, buf.date, strict=True))  # right, though confident


def test_worst_mistakes_counts_replays_of_samples_already_buffered() -> None:
    previous = worst_mistakes(OOF, None, size=2).assign(replay_count=[0, 3])
    buf = worst_mistakes(OOF, previous, size=100).set_index(["ticker", "date"]).replay_count
    assert buf["AAA", pd.Timestamp("2020-01-02")] == 1
    assert buf["AAA", pd.Timestamp("2020-01-03")] == 4
    assert buf["BBB", pd.Timestamp("2020-01-03")] == 0  # new in the buffer
    assert buf["CCC", pd.Timestamp("2020-01-03")] == 0


def test_sample_now_predicted_right_leaves_the_buffer_only_when_promoted() -> None:
    previous = worst_mistakes(OOF, None, size=100)
    fixed = OOF.copy()
    fixed.loc[0, [f"candidate__{c}" for c in PROBA_COLUMNS]] = [0.05, 0.05, 0.90]  # AAA 2020-01-02 now right
    fixed_key = ("AAA", pd.Timestamp("2020-01-02"))
    buf = update_replay_buffer(fixed, previous, size=100, promoted=True)
    assert fixed_key not in set(zip(buf.ticker, buf.date, strict=True))
    assert len(buf) == 3
    kept = update_replay_buffer(fixed, previous, size=100, promoted=False)  # a rejected candidate proves nothing
    assert fixed_key in set(zip(kept.ticker, kept.date, strict=True)) and len(kept) == 4
    assert list(kept.columns) == REPLAY_COLUMNS and kept.error_score.is_monotonic_decreasing
    assert len(update_replay_buffer(fixed, previous, size=2, promoted=False)) == 2


def test_repeat_error_rates_on_the_replayed_samples() -> None:
    oof = OOF.assign(source=["replay", "replay", "recent", "recent", "replay", "replay", "recent", "recent"])
    rates = replay_error_rates(oof)
    # Replayed: AAA-02 wrong, AAA-03 wrong, CCC-02 right, CCC-03 wrong.
    assert rates == {"replayed_evaluated": 4.0, "repeat_error_before": 1.0, "repeat_error_after": pytest.approx(3 / 4)}
    none = replay_error_rates(OOF.assign(source="recent"))
    assert none["replayed_evaluated"] == 0 and np.isnan(none["repeat_error_after"])


# ------------------------------------------------------------------------------------ sector performance


def test_sector_accuracy_values() -> None:
    perf = sector_performance(OOF)
    sector = perf[perf.scope == "sector"].set_index("sector")
    assert sector.accuracy["Energy"] == pytest.approx(1 / 4)
    assert sector.accuracy["Utilities"] == pytest.approx(3 / 4)
    assert sector.n["Energy"] == 4 and sector.n["Utilities"] == 4
    assert (sector.regime == "all").all() and (sector.ticker == "all").all()


def test_sector_regime_accuracy_values() -> None:
    perf = sector_performance(OOF)
    cells = perf[perf.scope == "sector_regime"].set_index(["sector", "regime"])
    assert cells.accuracy["Energy", "crash"] == 0.0
    assert cells.accuracy["Energy", "normal"] == pytest.approx(1 / 2)
    assert cells.accuracy["Utilities", "crash"] == 0.0
    assert cells.accuracy["Utilities", "normal"] == 1.0
    assert cells.n.sum() == len(OOF)


def test_symbol_accuracy_values_carry_the_sector() -> None:
    perf = sector_performance(OOF)
    sym = perf[perf.scope == "symbol"].set_index("ticker")
    assert sym.accuracy.to_dict() == {"AAA": 0.0, "BBB": 0.5, "CCC": 0.5, "DDD": 1.0}
    assert sym.sector.to_dict() == {"AAA": "Energy", "BBB": "Energy", "CCC": "Utilities", "DDD": "Utilities"}
    assert list(perf.columns) == ["scope", "sector", "regime", "ticker", "accuracy", "n"]
    assert perf.n.dtype == np.int64
