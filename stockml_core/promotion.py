"""The promotion gate: every criterion with its value, threshold and verdict."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import pandas as pd

from stockml_core.evaluation import BASELINES
from stockml_core.settings import GateSettings

KEY_METRICS = ("accuracy", "balanced_accuracy", "auc_ovr")


@dataclass(frozen=True)
class Criterion:
    """One gate criterion: ``value`` must compare to ``threshold`` as ``op`` says."""

    name: str
    value: float
    op: str  # ">=" or "<="
    threshold: float
    passed: bool
    detail: str


@dataclass(frozen=True)
class GateDecision:
    """The verdict of the gate and the criteria behind it."""

    promoted: bool
    criteria: tuple[Criterion, ...]

    @property
    def failed(self) -> list[Criterion]:
        return [c for c in self.criteria if not c.passed]

    @property
    def reason(self) -> str:
        if self.promoted:
            return f"all {len(self.criteria)} criteria passed"
        return "rejected: " + "; ".join(f"{c.name} {c.value:.4f} not {c.op} {c.threshold:.4f}" for c in self.failed)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(c) for c in self.criteria],
                            columns=["name", "value", "op", "threshold", "passed", "detail"])


def _criterion(name: str, value: float, op: str, threshold: float, detail: str) -> Criterion:
    ok = (not math.isnan(value)) and not math.isnan(threshold) and (
        value >= threshold if op == ">=" else value <= threshold)
    return Criterion(name, float(value), op, float(threshold), bool(ok), detail)


def _best(candidate: dict[str, float | str], metric: str) -> float:
    """The best baseline value of a metric, ignoring baselines where it is undefined (NaN if all are)."""
    values = [float(candidate[f"{b}_{metric}"]) for b in BASELINES]
    values = [v for v in values if not math.isnan(v)]
    return max(values) if values else float("nan")


def evaluate_gate(
    candidate: dict[str, float | str],
    settings: GateSettings,
    drift_score: float | None = None,
    champion: dict[str, float] | None = None,
) -> GateDecision:
    """Judge a candidate's headline metrics (see ``evaluation.headline``) against the gate.

    A missing value (NaN) fails its criterion: the gate never promotes on absent evidence, except
    that with no crash rows in the evaluation the crash criterion is reported as not applicable.
    """
    best_acc = _best(candidate, "accuracy")
    best_bacc = _best(candidate, "balanced_accuracy")
    crit = [
        _criterion("accuracy_vs_best_baseline", float(candidate["accuracy"]), ">=",
                   best_acc + settings.accuracy_margin,
                   f"best naive baseline accuracy {best_acc:.4f} + margin {settings.accuracy_margin}"),
        _criterion("balanced_accuracy_vs_best_baseline", float(candidate["balanced_accuracy"]), ">=",
                   best_bacc + settings.balanced_accuracy_margin,
                   f"best naive baseline balanced accuracy {best_bacc:.4f} + margin {settings.balanced_accuracy_margin}"),
    ]
    crash = float(candidate["crash_accuracy"])
    crash_base = _best(candidate, "crash_accuracy")
    if math.isnan(crash):
        crit.append(Criterion("crash_regime_accuracy", float("nan"), ">=", float("nan"), True,
                              "no crash-regime days in the evaluation folds: not applicable"))
    else:
        crit.append(_criterion("crash_regime_accuracy", crash, ">=", crash_base - settings.crash_accuracy_tolerance,
                               f"best baseline crash accuracy {crash_base:.4f} - tolerance {settings.crash_accuracy_tolerance}; "
                               f"{int(float(candidate.get('crash_n', 0) or 0))} crash-regime rows"))
    crit.append(_criterion("worst_sector_accuracy", float(candidate["worst_sector_accuracy"]), ">=",
                           settings.min_sector_accuracy, f"weakest sector: {candidate.get('worst_sector', '')}"))
    replay_n = float(candidate.get("replay_n", float("nan")))
    repeat = float(candidate.get("repeat_error_rate", float("nan")))
    champ_repeat = float(candidate.get("champion_repeat_error_rate", float("nan")))
    if math.isnan(replay_n) or replay_n == 0:
        not_applicable = "no replayed mistakes in the training set (empty buffer or first cycle): not applicable"
    elif not champion:
        not_applicable = "no champion to compare the replayed mistakes with: not applicable"
    elif math.isnan(champ_repeat) and candidate.get("champion_replay_note"):
        not_applicable = str(candidate["champion_replay_note"])
    else:
        not_applicable = None
    if not_applicable:
        crit.append(Criterion("replay_improvement", repeat, "<=", float("nan"), True, not_applicable))
    else:
        crit.append(_criterion("replay_improvement", repeat, "<=", champ_repeat - settings.min_replay_correction,
                               f"share of the {int(replay_n)} replayed mistakes still wrong, vs the champion's "
                               f"{champ_repeat:.4f} on the same samples - margin {settings.min_replay_correction} "
                               "(1.0 before replay by construction; in-sample for both: they are training rows)"))
    drift = float("nan") if drift_score is None else float(drift_score)
    if drift_score is None:
        crit.append(Criterion("drift_score", drift, "<=", settings.max_drift_score, True,
                              "no drift measured yet (first cycle): not applicable"))
    else:
        crit.append(_criterion("drift_score", drift, "<=", settings.max_drift_score,
                               "overall drift of the latest data against the reference window"))
    if champion:
        for key in KEY_METRICS:
            base = float(champion.get(key, float("nan")))
            crit.append(_criterion(f"{key}_vs_champion", float(candidate[key]), ">=",
                                   base * (1 - settings.max_relative_degradation),
                                   f"champion {base:.4f}, at most {settings.max_relative_degradation:.0%} relative degradation"))
    else:
        crit.append(Criterion("degradation_vs_champion", float("nan"), ">=", float("nan"), True,
                              "no champion yet: first model, judged on the criteria above alone"))
    return GateDecision(promoted=all(c.passed for c in crit), criteria=tuple(crit))
