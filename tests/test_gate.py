"""Tests of the promotion gate: a candidate with directional skill passes, and each criterion alone can reject."""

from __future__ import annotations

import math
from dataclasses import fields, replace

import numpy as np
import pandas as pd
import pytest

from stockml_core.decisions.promotion import (
    BaselineRecord,
    GateDecision,
    GateEvidence,
    RecentEvidence,
    ReplayEvidence,
    evaluate_gate,
    recent_comparison,
)
from stockml_core.modeling.evaluation import ALL_BASELINES
from stockml_core.settings import GateSettings

SETTINGS = GateSettings()
CHAMPION = {"rank_ic": 0.025, "accuracy": 0.38}
ALL_CRITERIA = [
    "rank_ic_vs_best_baseline",
    "rank_ic_t",
    "net_sharpe_vs_best_baseline",
    "crash_regime_rank_ic",
    "worst_sector_accuracy",
    "replay_improvement",
    "recent_days_vs_production",
    "rank_ic_vs_champion",
]
NAN = float("nan")


BASELINES = {
    **{b: BaselineRecord() for b in ALL_BASELINES},
    "momentum_12_1": BaselineRecord(rank_ic=0.019, net_sharpe=0.3, crash_rank_ic=-0.02),
    "reversal_5_sector": BaselineRecord(rank_ic=0.016, net_sharpe=0.5, crash_rank_ic=0.015),
    "logistic_momentum": BaselineRecord(rank_ic=0.009),
}
REPLAY = ReplayEvidence(n=120.0, repeat_error_rate=0.80, champion_repeat_error_rate=0.85)
RECENT = RecentEvidence(days=60.0, rank_ic=0.03, production_rank_ic=0.01)


def _candidate(**changes) -> GateEvidence:
    """The gate's evidence of a modest, honest candidate at breadth: rank IC 0.028 with t 2.6 against a best
    baseline of 0.019. ``changes`` replace fields (``_replay`` / ``_recent`` / ``_baseline`` change a part)."""
    c = GateEvidence(
        rank_ic=0.028,
        rank_ic_t=2.6,
        days=1000.0,
        net_sharpe=0.8,
        turnover=0.5,
        crash_days=40.0,
        crash_rank_ic=0.01,
        worst_sector_accuracy=0.35,
        worst_sector="Energy",
        baselines=BASELINES,
        replay=REPLAY,
        recent=RECENT,
        headline={"n": 250_000.0, "accuracy": 0.386, "balanced_accuracy": 0.386, "auc_direction": 0.52, "ic": 0.02, "icir": 0.17},
    )
    return replace(c, **changes)


def _replay(**changes) -> ReplayEvidence:
    return replace(REPLAY, **changes)


def _recent(**changes) -> RecentEvidence:
    return replace(RECENT, **changes)


def _baseline(name: str, **changes) -> dict[str, BaselineRecord]:
    return {**BASELINES, name: replace(BASELINES[name], **changes)}


def _gate(candidate: GateEvidence, champion: dict | None = CHAMPION, **settings) -> GateDecision:
    return evaluate_gate(candidate, GateSettings(**settings) if settings else SETTINGS, champion=champion)


def _failed(decision: GateDecision) -> list[str]:
    return [c.name for c in decision.failed]


def _crit(decision: GateDecision, name: str):
    return next(c for c in decision.criteria if c.name == name)


def test_a_candidate_with_directional_skill_is_promoted() -> None:
    decision = _gate(_candidate())
    assert decision.promoted, decision.reason
    assert decision.failed == []
    assert [c.name for c in decision.criteria] == ALL_CRITERIA
    assert decision.reason == f"all {len(ALL_CRITERIA)} applicable criteria passed (0 not applicable)"


# Each case changes one input so that exactly one criterion fails.
SINGLE_FAILURES = [
    ("rank_ic_vs_best_baseline", {"rank_ic": 0.0205}, {}),  # needs 0.019 + 0.002
    ("rank_ic_t", {"rank_ic_t": 1.9}, {}),  # needs 2.0
    ("net_sharpe_vs_best_baseline", {"net_sharpe": 0.45}, {}),  # reversal_5_sector's book makes 0.5
    ("crash_regime_rank_ic", {"crash_rank_ic": -0.01}, {}),  # needs 0.015 - 0.02
    ("worst_sector_accuracy", {"worst_sector_accuracy": 0.29}, {}),  # needs 0.30
    ("replay_improvement", {"replay": _replay(repeat_error_rate=0.86)}, {}),  # the champion gets 0.85 wrong
    ("recent_days_vs_production", {"recent": _recent(rank_ic=0.005)}, {}),  # production made 0.01 on the same rows
    ("rank_ic_vs_champion", {}, {"rank_ic": 0.034}),  # at most 0.005 below the champion's 0.034
]


@pytest.mark.parametrize(("criterion", "candidate_changes", "champion_changes"), SINGLE_FAILURES, ids=[case[0] for case in SINGLE_FAILURES])
def test_failing_one_criterion_rejects_and_names_it(criterion, candidate_changes, champion_changes) -> None:
    decision = _gate(_candidate(**candidate_changes), champion={**CHAMPION, **champion_changes})
    assert not decision.promoted
    assert _failed(decision) == [criterion]
    assert criterion in decision.reason and decision.reason.startswith("rejected")


def test_every_criterion_has_a_single_failure_case() -> None:
    assert sorted(case[0] for case in SINGLE_FAILURES) == sorted(ALL_CRITERIA)


def test_accuracy_no_longer_promotes_or_rejects() -> None:
    """Telling flat from moved (accuracy) is not directional skill: it neither passes nor fails a candidate."""
    assert _gate(_candidate(headline={"accuracy": 0.99, "balanced_accuracy": 0.99}, rank_ic=0.0, rank_ic_t=0.0)).promoted is False
    assert _gate(_candidate(headline={"accuracy": 0.20, "balanced_accuracy": 0.20})).promoted


def test_the_net_sharpe_floor_is_zero_when_every_baseline_loses() -> None:
    losing = {b: replace(r, net_sharpe=-1.0) for b, r in BASELINES.items()}
    assert _failed(_gate(_candidate(net_sharpe=-0.1, baselines=losing))) == ["net_sharpe_vs_best_baseline"]
    assert _crit(_gate(_candidate(net_sharpe=-0.1, baselines=losing)), "net_sharpe_vs_best_baseline").threshold == 0.0
    assert _gate(_candidate(net_sharpe=0.05, baselines=losing)).promoted


def test_the_best_baseline_is_the_highest_of_every_baseline() -> None:
    c = _candidate(baselines=_baseline("linear_all", rank_ic=0.027))
    assert c.best_baseline("rank_ic") == ("linear_all", 0.027)
    decision = _gate(c)
    assert _failed(decision) == ["rank_ic_vs_best_baseline"]
    assert "linear_all" in _crit(decision, "rank_ic_vs_best_baseline").detail


def test_missing_evidence_fails() -> None:
    assert _failed(_gate(_candidate(rank_ic=NAN))) == ["rank_ic_vs_best_baseline", "rank_ic_vs_champion"]
    assert _failed(_gate(_candidate(rank_ic_t=NAN))) == ["rank_ic_t"]
    assert _failed(_gate(_candidate(net_sharpe=NAN))) == ["net_sharpe_vs_best_baseline"]
    assert _failed(_gate(_candidate(worst_sector_accuracy=NAN))) == ["worst_sector_accuracy"]
    assert _failed(_gate(_candidate(), champion={"rank_ic": NAN})) == ["rank_ic_vs_champion"]


@pytest.mark.parametrize(
    ("criterion", "changes", "champion"),
    [
        ("crash_regime_rank_ic", {"crash_days": 5.0, "crash_rank_ic": -0.5}, CHAMPION),
        ("crash_regime_rank_ic", {"crash_days": NAN, "crash_rank_ic": NAN}, CHAMPION),
        ("replay_improvement", {"replay": _replay(n=0.0, repeat_error_rate=NAN)}, CHAMPION),
        ("replay_improvement", {"replay": _replay(repeat_error_rate=0.99)}, None),
        ("recent_days_vs_production", {"recent": _recent(days=10.0, rank_ic=-0.5)}, CHAMPION),
        ("recent_days_vs_production", {"recent": _recent(days=0.0, rank_ic=NAN)}, CHAMPION),
        ("rank_ic_vs_champion", {}, None),
    ],
)
def test_absent_evidence_is_not_applicable_and_said_so(criterion, changes, champion) -> None:
    decision = _gate(_candidate(**changes), champion=champion)
    c = _crit(decision, criterion)
    assert decision.promoted and c.passed and not c.applicable and c.outcome == "not applicable"
    assert "not applicable" in c.detail or "no champion" in c.detail
    assert math.isnan(c.threshold)


def test_replay_criterion_with_a_champion_from_an_older_feature_set_is_not_applicable() -> None:
    note = "champion v0001 was trained on other features (5 no longer computed, e.g. macd): not comparable"
    decision = _gate(_candidate(replay=_replay(champion_repeat_error_rate=NAN, champion_note=note)))
    replay = _crit(decision, "replay_improvement")
    assert decision.promoted and replay.passed and replay.detail == note
    # Without that explanation a missing champion value is absent evidence: the criterion fails.
    assert _failed(_gate(_candidate(replay=_replay(champion_repeat_error_rate=NAN)))) == ["replay_improvement"]


def test_a_drift_retrain_is_judged_on_recent_evidence_not_on_the_drift_score() -> None:
    """The drift score is what triggers a retrain; it never vetoes the model retrained for it. A retrain
    that ranks the recent days better than production is promoted, a worse one refused."""
    better = _gate(_candidate(recent=_recent(rank_ic=0.06, production_rank_ic=-0.02), headline={"drift_score": 0.9}))
    worse = _gate(_candidate(recent=_recent(rank_ic=-0.03, production_rank_ic=0.02), headline={"drift_score": 0.9}))
    assert better.promoted and not worse.promoted and _failed(worse) == ["recent_days_vs_production"]
    assert "drift_score" not in [c.name for c in better.criteria]
    assert not any("drift" in f.name for f in fields(GateEvidence))  # the evidence has no room for it


def test_several_failures_are_all_named() -> None:
    decision = _gate(_candidate(worst_sector_accuracy=0.2, rank_ic_t=1.0))
    assert _failed(decision) == ["rank_ic_t", "worst_sector_accuracy"]
    assert "worst_sector_accuracy" in decision.reason and "rank_ic_t" in decision.reason


def test_frame_has_value_threshold_outcome_for_every_criterion() -> None:
    decision = _gate(_candidate(rank_ic_t=1.5), champion=None)
    frame = decision.frame().set_index("name")
    assert list(frame.index) == ALL_CRITERIA
    assert list(frame.columns) == ["value", "op", "threshold", "passed", "detail", "applicable", "outcome"]
    assert frame.loc["rank_ic_t", "outcome"] == "fail" and frame.loc["rank_ic_vs_best_baseline", "outcome"] == "pass"
    assert frame.loc["rank_ic_vs_champion", "outcome"] == "not applicable"
    assert (frame.loc["rank_ic_vs_best_baseline", "value"], frame.loc["rank_ic_vs_best_baseline", "threshold"]) == (0.028, pytest.approx(0.021))
    assert set(frame.outcome) <= {"pass", "fail", "not applicable"}
    applicable = frame[frame.applicable]
    assert applicable.value.notna().all() and applicable.threshold.notna().all()


def test_the_evidence_reads_every_models_book_and_the_reports_headline() -> None:
    report = pd.DataFrame(
        [
            ("overall", "all", "candidate", "rank_ic", 0.02),
            ("overall", "all", "candidate", "rank_ic_t", 2.4),
            ("overall", "all", "candidate", "days", 500.0),
            ("overall", "all", "momentum_12_1", "rank_ic", 0.01),
            ("regime", "crash", "momentum_12_1", "rank_ic", -0.03),
            ("sector", "Energy", "candidate", "accuracy", 0.36),
            ("sector", "Utilities", "candidate", "accuracy", 0.31),
        ],
        columns=["scope", "group", "model", "metric", "value"],
    )
    table = pd.DataFrame({"model": ["candidate", "momentum_12_1"], "net_sharpe": [0.7, 0.2], "avg_daily_turnover": [0.4, 0.1]})
    e = GateEvidence.measure(report, table)
    assert (e.rank_ic, e.rank_ic_t, e.days, e.net_sharpe, e.turnover) == (0.02, 2.4, 500.0, 0.7, 0.4)
    assert (e.worst_sector, e.worst_sector_accuracy) == ("Utilities", 0.31) and math.isnan(e.crash_days)
    assert e.baselines["momentum_12_1"] == BaselineRecord(rank_ic=0.01, net_sharpe=0.2, crash_rank_ic=-0.03)
    assert set(e.baselines) == set(ALL_BASELINES) and math.isnan(e.baselines["linear_all"].net_sharpe)
    assert e.best_baseline("net_sharpe") == ("momentum_12_1", 0.2)
    assert (e.replay, e.recent) == (ReplayEvidence(), RecentEvidence())  # nothing replayed, nothing published
    assert ReplayEvidence.of({"replay_n": 12.0, "repeat_error_rate": 1.0}) == ReplayEvidence(n=12.0, repeat_error_rate=1.0)


def test_recent_comparison_uses_only_the_rows_both_scored() -> None:
    rng = np.random.default_rng(0)
    dates = pd.bdate_range("2015-01-01", periods=90)
    names = [f"T{i}" for i in range(30)]
    ev = pd.DataFrame([(t, d) for d in dates for t in names], columns=["ticker", "date"])
    ev["fwd_return"] = rng.normal(size=len(ev))
    ev["candidate__p_up"] = 0.5 + 0.1 * ev.fwd_return  # a candidate that knows the future: rank IC 1
    ev["candidate__p_down"] = 0.5 - 0.1 * ev.fwd_return
    live = ev[ev.date >= dates[50]][["ticker", "date"]].assign(model_version="v0003")
    live["p_up"] = rng.uniform(size=len(live))
    live["p_down"] = 1 - live.p_up
    r = recent_comparison(ev, live, days=30, horizon=5)
    assert r.days == 30 and r.first == str(dates[60].date())
    assert r.rank_ic == pytest.approx(1.0) and abs(r.production_rank_ic) < 0.1
    assert r.versions == "v0003"
    assert recent_comparison(ev, None, 30, 5).days == 0.0
    assert recent_comparison(ev, live.iloc[:0], 30, 5).days == 0.0
