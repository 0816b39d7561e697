"""Tests of the promotion gate: a good candidate passes, and each criterion alone can reject."""

from __future__ import annotations

import math

import pytest

from stockml_core.promotion import KEY_METRICS, GateDecision, evaluate_gate
from stockml_core.settings import GateSettings

SETTINGS = GateSettings()
DRIFT = 0.20
CHAMPION = {"accuracy": 0.40, "balanced_accuracy": 0.38, "auc_ovr": 0.55}
ALL_CRITERIA = [
    "accuracy_vs_best_baseline", "balanced_accuracy_vs_best_baseline", "crash_regime_accuracy",
    "worst_sector_accuracy", "replay_improvement", "drift_score", "accuracy_vs_champion", "balanced_accuracy_vs_champion",
    "auc_ovr_vs_champion",
]


def _candidate(**changes: float | str) -> dict[str, float | str]:
    """Headline metrics (the keys evaluation.headline returns) of a modest, honest candidate."""
    c: dict[str, float | str] = {
        "n": 5000.0, "accuracy": 0.40, "balanced_accuracy": 0.39, "macro_f1": 0.38, "auc_ovr": 0.56,
        "log_loss": 1.08, "brier": 0.65, "ic": 0.03, "rank_ic": 0.03, "icir": 0.2,
        "crash_accuracy": 0.38, "worst_sector_accuracy": 0.34, "worst_sector": "Energy",
        "majority_accuracy": 0.36, "majority_balanced_accuracy": 0.3333, "majority_auc_ovr": 0.5,
        "majority_ic": float("nan"), "majority_rank_ic": float("nan"), "majority_crash_accuracy": 0.30,
        "always_up_accuracy": 0.38, "always_up_balanced_accuracy": 0.3333, "always_up_auc_ovr": 0.5,
        "always_up_ic": float("nan"), "always_up_rank_ic": float("nan"), "always_up_crash_accuracy": 0.37,
        "previous_direction_accuracy": 0.35, "previous_direction_balanced_accuracy": 0.36,
        "previous_direction_auc_ovr": 0.51, "previous_direction_ic": 0.01, "previous_direction_rank_ic": 0.01,
        "previous_direction_crash_accuracy": 0.33,
        "logistic_momentum_accuracy": 0.37, "logistic_momentum_balanced_accuracy": 0.355,
        "logistic_momentum_auc_ovr": 0.52, "logistic_momentum_ic": 0.01, "logistic_momentum_rank_ic": 0.01,
        "logistic_momentum_crash_accuracy": 0.32,
        "replay_n": 120.0, "repeat_error_rate": 0.80, "champion_repeat_error_rate": 0.85,
    }
    c.update(changes)
    return c


def _gate(candidate: dict, champion: dict | None = CHAMPION, drift: float | None = DRIFT) -> GateDecision:
    return evaluate_gate(candidate, SETTINGS, drift_score=drift, champion=champion)


def _failed(decision: GateDecision) -> list[str]:
    return [c.name for c in decision.failed]


def test_passing_candidate_is_promoted() -> None:
    decision = _gate(_candidate())
    assert decision.promoted, decision.reason
    assert decision.failed == []
    assert [c.name for c in decision.criteria] == ALL_CRITERIA
    assert decision.reason == f"all {len(ALL_CRITERIA)} criteria passed"


# Each case changes one input so that exactly one criterion fails.
SINGLE_FAILURES = [
    ("accuracy_vs_best_baseline", {"accuracy": 0.375}, {}, DRIFT),  # best baseline (always_up) is 0.38
    ("balanced_accuracy_vs_best_baseline", {"balanced_accuracy": 0.365}, {}, DRIFT),  # needs 0.36 + 0.01
    ("crash_regime_accuracy", {"crash_accuracy": 0.34}, {}, DRIFT),  # needs 0.37 - 0.02
    ("worst_sector_accuracy", {"worst_sector_accuracy": 0.29}, {}, DRIFT),  # needs 0.30
    ("replay_improvement", {"repeat_error_rate": 0.86}, {}, DRIFT),  # the champion gets 0.85 wrong
    ("drift_score", {}, {}, 0.61),  # at most 0.60
    ("accuracy_vs_champion", {}, {"accuracy": 0.40 / 0.85}, DRIFT),  # 15% below the champion
    ("balanced_accuracy_vs_champion", {}, {"balanced_accuracy": 0.39 / 0.85}, DRIFT),
    ("auc_ovr_vs_champion", {}, {"auc_ovr": 0.56 / 0.85}, DRIFT),
]


@pytest.mark.parametrize(("criterion", "candidate_changes", "champion_changes", "drift"), SINGLE_FAILURES,
                         ids=[case[0] for case in SINGLE_FAILURES])
def test_failing_one_criterion_rejects_and_names_it(criterion, candidate_changes, champion_changes, drift) -> None:
    decision = _gate(_candidate(**candidate_changes), champion={**CHAMPION, **champion_changes}, drift=drift)
    assert not decision.promoted
    assert _failed(decision) == [criterion]
    assert criterion in decision.reason and decision.reason.startswith("rejected")


def test_every_criterion_has_a_single_failure_case() -> None:
    assert sorted(case[0] for case in SINGLE_FAILURES) == sorted(ALL_CRITERIA)


def test_degradation_within_ten_percent_passes() -> None:
    champion = {k: v / 0.95 for k, v in _candidate().items() if k in KEY_METRICS}  # 5% better champion
    assert _gate(_candidate(), champion=champion).promoted


def test_degradation_threshold_is_ninety_percent_of_the_champion() -> None:
    decision = _gate(_candidate())
    for c in decision.criteria:
        if c.name.endswith("_vs_champion"):
            key = c.name.removesuffix("_vs_champion")
            assert c.threshold == pytest.approx(0.9 * CHAMPION[key])


def test_nan_accuracy_fails() -> None:
    decision = _gate(_candidate(accuracy=float("nan")))
    assert not decision.promoted
    assert _failed(decision) == ["accuracy_vs_best_baseline", "accuracy_vs_champion"]


def test_nan_worst_sector_accuracy_fails() -> None:
    assert _failed(_gate(_candidate(worst_sector_accuracy=float("nan")))) == ["worst_sector_accuracy"]


def test_nan_drift_score_fails() -> None:
    assert _failed(_gate(_candidate(), drift=float("nan"))) == ["drift_score"]


def test_nan_champion_metric_fails() -> None:
    assert _failed(_gate(_candidate(), champion={**CHAMPION, "auc_ovr": float("nan")})) == ["auc_ovr_vs_champion"]


def test_no_crash_rows_make_the_crash_criterion_not_applicable() -> None:
    nan = float("nan")
    decision = _gate(_candidate(crash_accuracy=nan, majority_crash_accuracy=nan, always_up_crash_accuracy=nan,
                                previous_direction_crash_accuracy=nan, logistic_momentum_crash_accuracy=nan))
    crash = next(c for c in decision.criteria if c.name == "crash_regime_accuracy")
    assert decision.promoted and crash.passed and "not applicable" in crash.detail


def test_first_cycle_without_drift_or_champion_is_judged_on_the_rest() -> None:
    decision = _gate(_candidate(), champion=None, drift=None)
    assert decision.promoted
    assert [c.name for c in decision.criteria] == ALL_CRITERIA[:6] + ["degradation_vs_champion"]
    assert not _gate(_candidate(accuracy=0.30), champion=None, drift=None).promoted


def test_several_failures_are_all_named() -> None:
    decision = _gate(_candidate(worst_sector_accuracy=0.2), drift=0.9)
    assert _failed(decision) == ["worst_sector_accuracy", "drift_score"]
    assert "worst_sector_accuracy" in decision.reason and "drift_score" in decision.reason


def test_frame_has_value_threshold_and_verdict_for_every_criterion() -> None:
    decision = _gate(_candidate(), drift=0.7)
    frame = decision.frame()
    assert list(frame.columns) == ["name", "value", "op", "threshold", "passed", "detail"]
    assert list(frame.name) == ALL_CRITERIA
    assert frame.value.notna().all() and frame.threshold.notna().all()
    row = frame.set_index("name").loc["replay_improvement"]
    assert (row.value, row.threshold) == (0.80, 0.85)
    assert list(frame.passed) == [c.passed for c in decision.criteria]
    assert not frame.set_index("name").passed["drift_score"]
    row = frame.set_index("name").loc["accuracy_vs_best_baseline"]
    assert row.value == 0.40 and row.threshold == pytest.approx(0.38) and row.op == ">="
    assert frame.set_index("name").loc["drift_score", "op"] == "<="
    assert not math.isnan(frame.set_index("name").loc["drift_score", "value"])


def test_logistic_baseline_counts_among_the_baselines() -> None:
    # The logistic regression on momentum features is the strongest baseline here: 0.40 does not beat it.
    decision = _gate(_candidate(logistic_momentum_accuracy=0.41))
    assert _failed(decision) == ["accuracy_vs_best_baseline"]
    assert "0.4100" in next(c.detail for c in decision.criteria if c.name == "accuracy_vs_best_baseline")


def test_replay_criterion_is_not_applicable_without_replayed_mistakes_or_champion() -> None:
    for n in (0.0, float("nan")):
        decision = _gate(_candidate(replay_n=n, repeat_error_rate=float("nan")))
        replay = next(c for c in decision.criteria if c.name == "replay_improvement")
        assert decision.promoted and replay.passed and "not applicable" in replay.detail
    decision = _gate(_candidate(repeat_error_rate=0.99), champion=None)
    replay = next(c for c in decision.criteria if c.name == "replay_improvement")
    assert replay.passed and "no champion" in replay.detail


def test_replay_criterion_with_a_champion_from_an_older_feature_set_is_not_applicable() -> None:
    note = "champion v0001 was trained on other features (5 no longer computed, e.g. macd): not comparable"
    decision = _gate(_candidate(champion_repeat_error_rate=float("nan"), champion_replay_note=note))
    replay = next(c for c in decision.criteria if c.name == "replay_improvement")
    assert decision.promoted and replay.passed and replay.detail == note
    # Without that explanation a missing champion value is absent evidence: the criterion fails.
    assert _failed(_gate(_candidate(champion_repeat_error_rate=float("nan")))) == ["replay_improvement"]
