"""The promotion gate: every criterion with its value, threshold and verdict.

The gate promotes only on evidence of directional, cross-sectional skill, measured out-of-sample on
the same rows as every baseline (``evaluation.ALL_BASELINES``): the daily rank IC above the best
baseline's, its overlap-corrected t-statistic, and the net Sharpe of the long top / short bottom decile
book. The crash, sector, replay and champion criteria guard the rest. A criterion whose evidence does
not exist (no crash days, no champion, no replayed mistakes) is *not applicable* and says why; a
missing value where the evidence should exist fails.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from stockml_core.modeling.evaluation import ALL_BASELINES, information_coefficients, model_score
from stockml_core.settings import GateSettings

CHAMPION_METRIC = "rank_ic"  # what a candidate may not lose against the champion's record


@dataclass(frozen=True)
class Criterion:
    """One gate criterion: ``value`` must compare to ``threshold`` as ``op`` says.

    ``applicable`` is False where the evidence does not exist (the criterion then passes and ``detail``
    says why); ``value`` and ``threshold`` may be NaN only then.
    """

    name: str
    value: float
    op: str  # ">=" or "<="
    threshold: float
    passed: bool
    detail: str
    applicable: bool = True

    @property
    def outcome(self) -> str:
        """``pass``, ``fail`` or ``not applicable``: what a reader is shown (never ``nan``)."""
        return "not applicable" if not self.applicable else ("pass" if self.passed else "fail")


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
            judged = sum(c.applicable for c in self.criteria)
            return f"all {judged} applicable criteria passed ({len(self.criteria) - judged} not applicable)"
        return "rejected: " + "; ".join(f"{c.name} {c.value:.4f} not {c.op} {c.threshold:.4f}" for c in self.failed)

    def frame(self) -> pd.DataFrame:
        rows = [{**asdict(c), "outcome": c.outcome} for c in self.criteria]
        return pd.DataFrame(rows, columns=["name", "value", "op", "threshold", "passed", "detail", "applicable", "outcome"])


# How a reader is shown each criterion's value and threshold: shares as percentages, t and Sharpe to two
# places, rank ICs to four; not-applicable and missing values as "n/a", never "nan".
PERCENT_CRITERIA = frozenset({"worst_sector_accuracy", "replay_improvement"})
CRITERION_DECIMALS = {"rank_ic_t": 2, "net_sharpe_vs_best_baseline": 2}


def shown_value(name: str, value: float | None) -> str:
    """A criterion's value or threshold as the UI, the summary and ``stockml status`` print it."""
    if value is None or not math.isfinite(float(value)):
        return "n/a"
    if name in PERCENT_CRITERIA:
        return f"{float(value):.1%}"
    return f"{float(value):.{CRITERION_DECIMALS.get(name, 4)}f}"


MIN_SKILL_T = 2.0  # a rank IC t below this is no evidence of ranking skill


def has_directional_skill(rank_ic: float | None, rank_ic_t: float | None) -> bool:
    """A positive out-of-sample rank IC with a t-statistic of at least ``MIN_SKILL_T`` (what the summary and the
    decision page warn about when it does not hold)."""
    return (
        rank_ic is not None and rank_ic_t is not None and math.isfinite(float(rank_ic_t)) and float(rank_ic_t) >= MIN_SKILL_T and float(rank_ic) > 0
    )


OUTCOME_SHOWN = {"pass": "pass", "fail": "**FAIL**", "not applicable": "n/a"}


def reading_table(frame: pd.DataFrame) -> pd.DataFrame:
    """A decision's criteria as a reader scans them: criterion, outcome, value, rule (``GateDecision.frame``)."""
    na = frame.outcome == "not applicable"
    return pd.DataFrame(
        {
            "criterion": frame.name,
            "outcome": [OUTCOME_SHOWN[o] for o in frame.outcome],
            "value": [shown_value(n, v) for n, v in zip(frame.name, frame.value, strict=True)],
            "rule": ["" if skip else f"{op} {shown_value(n, t)}" for n, op, t, skip in zip(frame.name, frame.op, frame.threshold, na, strict=True)],
        }
    )


def _criterion(name: str, value: float, op: str, threshold: float, detail: str) -> Criterion:
    ok = (not math.isnan(value)) and not math.isnan(threshold) and (value >= threshold if op == ">=" else value <= threshold)
    return Criterion(name, float(value), op, float(threshold), bool(ok), detail)


def _not_applicable(name: str, value: float, op: str, detail: str) -> Criterion:
    return Criterion(name, float(value), op, float("nan"), True, detail, applicable=False)


def _num(evidence: dict, key: str) -> float:
    v = evidence.get(key, float("nan"))
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _count(evidence: dict, key: str) -> int:
    v = _num(evidence, key)
    return 0 if math.isnan(v) else int(v)


def best_baseline(evidence: dict, metric: str) -> tuple[str, float]:
    """The baseline with the highest value of a metric (its name and value; ``("", nan)`` if none has one)."""
    values = [(b, _num(evidence, f"{b}_{metric}")) for b in ALL_BASELINES]
    values = [(b, v) for b, v in values if not math.isnan(v)]
    return max(values, key=lambda bv: bv[1]) if values else ("", float("nan"))


def with_books(headline: dict, book_table: pd.DataFrame) -> dict:
    """The headline metrics plus every model's decile-book ``net_sharpe`` and ``turnover``
    (``<model>_net_sharpe``; the candidate's without prefix): the gate's evidence."""
    out = dict(headline)
    for row in book_table.itertuples(index=False):
        prefix = "" if row.model == "candidate" else f"{row.model}_"
        out[f"{prefix}net_sharpe"] = float(row.net_sharpe)
        out[f"{prefix}turnover"] = float(row.avg_daily_turnover)
    return out


def recent_comparison(evaluation: pd.DataFrame, published: pd.DataFrame | None, days: int, horizon: int) -> dict[str, float | str]:
    """The candidate against production on the most recent scored days.

    ``evaluation``: the candidate's out-of-sample rows (ticker, date, fwd_return, candidate__p_*);
    ``published``: the predictions the platform published (ticker, date, model_version, p_down, p_up),
    each made by the champion of its day before its outcome was known. On the last ``days`` dates
    where both exist with a forward return, the rank IC of each one's up-minus-down score on the same
    rows. Both are out-of-sample there: the candidate's rows are walk-forward test rows, production's
    were live. ``recent_days`` 0 where they never meet (first cycle, or nothing published yet).
    """
    empty = {"recent_days": 0.0, "recent_rank_ic": float("nan"), "production_recent_rank_ic": float("nan"), "recent_versions": ""}
    if published is None or published.empty or evaluation.empty:
        return empty
    live = published[["ticker", "date", "model_version", "p_down", "p_up"]].copy()
    live["date"] = pd.to_datetime(live.date).astype("datetime64[ns]")
    cand = evaluation[["ticker", "date", "fwd_return"]].assign(candidate_score=model_score(evaluation, "candidate"))
    cand["date"] = pd.to_datetime(cand.date).astype("datetime64[ns]")
    both = cand.merge(live, on=["ticker", "date"], how="inner").dropna(subset=["fwd_return"])
    if both.empty:
        return empty
    last = np.sort(both.date.unique())[-days:]
    both = both[both.date.isin(last)]
    c = information_coefficients(both.date, both.candidate_score.to_numpy(), both.fwd_return.to_numpy(), horizon)
    p = information_coefficients(both.date, (both.p_up - both.p_down).to_numpy(), both.fwd_return.to_numpy(), horizon)
    return {
        "recent_days": float(c["days"]),
        "recent_rank_ic": c["rank_ic"],
        "production_recent_rank_ic": p["rank_ic"],
        "recent_versions": ", ".join(sorted(both.model_version.astype(str).unique())),
        "recent_first": str(pd.Timestamp(last[0]).date()),
        "recent_last": str(pd.Timestamp(last[-1]).date()),
    }


def evaluate_gate(
    candidate: dict[str, float | str],
    settings: GateSettings,
    champion: dict[str, float] | None = None,
) -> GateDecision:
    """Judge a candidate's evidence against the gate.

    ``candidate``: ``evaluation.headline`` of the validation report, ``with_books`` (net Sharpe of every
    decile book), the replay correction (``replay_n``, ``repeat_error_rate``,
    ``champion_repeat_error_rate``) and ``recent_comparison``; ``champion``: the champion's recorded
    metrics (``None`` without one).
    """
    g = settings
    crit: list[Criterion] = []
    base, best_ric = best_baseline(candidate, "rank_ic")
    crit.append(
        _criterion(
            "rank_ic_vs_best_baseline",
            _num(candidate, "rank_ic"),
            ">=",
            best_ric + g.rank_ic_margin,
            f"best baseline {base or 'none'} rank IC {best_ric:.4f} + margin {g.rank_ic_margin}, on the same "
            f"{_count(candidate, 'days'):,} out-of-sample days",
        )
    )
    crit.append(
        _criterion(
            "rank_ic_t",
            _num(candidate, "rank_ic_t"),
            ">=",
            g.min_rank_ic_t,
            "t-statistic of the mean daily rank IC, corrected for the overlap of the h-day returns (Hansen-Hodrick, evaluation.overlap_t)",
        )
    )
    sbase, best_sharpe = best_baseline(candidate, "net_sharpe")
    floor = max(0.0, best_sharpe) if not math.isnan(best_sharpe) else 0.0
    crit.append(
        _criterion(
            "net_sharpe_vs_best_baseline",
            _num(candidate, "net_sharpe"),
            ">=",
            floor + g.net_sharpe_margin,
            f"long top / short bottom decile book held h days, net of costs; max(0, best baseline "
            f"{sbase or 'none'} {best_sharpe:.2f}) + margin {g.net_sharpe_margin}; "
            f"turnover {_num(candidate, 'turnover'):.3f} a day",
        )
    )
    crash_days = _num(candidate, "crash_days")
    crash = _num(candidate, "crash_rank_ic")
    cbase, crash_base = best_baseline(candidate, "crash_rank_ic")
    if math.isnan(crash_days) or crash_days < g.min_crash_days:
        crit.append(
            _not_applicable(
                "crash_regime_rank_ic",
                crash,
                ">=",
                f"{0 if math.isnan(crash_days) else int(crash_days)} crash-regime days in the evaluation "
                f"(fewer than {g.min_crash_days}): not applicable",
            )
        )
    else:
        crit.append(
            _criterion(
                "crash_regime_rank_ic",
                crash,
                ">=",
                crash_base - g.crash_rank_ic_tolerance,
                f"best baseline there {cbase or 'none'} {crash_base:.4f} - tolerance "
                f"{g.crash_rank_ic_tolerance}; {int(crash_days)} crash-regime days",
            )
        )
    crit.append(
        _criterion(
            "worst_sector_accuracy",
            _num(candidate, "worst_sector_accuracy"),
            ">=",
            g.min_sector_accuracy,
            f"weakest sector: {candidate.get('worst_sector', '')} (three classes: chance is 1/3)",
        )
    )
    replay_n = _num(candidate, "replay_n")
    repeat = _num(candidate, "repeat_error_rate")
    champ_repeat = _num(candidate, "champion_repeat_error_rate")
    if math.isnan(replay_n) or replay_n == 0:
        why = "no replayed mistakes in the training set (empty buffer or first cycle): not applicable"
    elif not champion:
        why = "no champion to compare the replayed mistakes with: not applicable"
    elif math.isnan(champ_repeat) and candidate.get("champion_replay_note"):
        why = str(candidate["champion_replay_note"])
    else:
        why = None
    if why:
        crit.append(_not_applicable("replay_improvement", repeat, "<=", why))
    else:
        crit.append(
            _criterion(
                "replay_improvement",
                repeat,
                "<=",
                champ_repeat - g.min_replay_correction,
                f"share of the {int(replay_n)} replayed mistakes still wrong, vs the champion's "
                f"{champ_repeat:.4f} on the same samples - margin {g.min_replay_correction} "
                "(1.0 before replay by construction; in-sample for both: they are training rows)",
            )
        )
    recent_days = _num(candidate, "recent_days")
    recent = _num(candidate, "recent_rank_ic")
    if math.isnan(recent_days) or recent_days < g.min_recent_days:
        crit.append(
            _not_applicable(
                "recent_days_vs_production",
                recent,
                ">=",
                f"{0 if math.isnan(recent_days) else int(recent_days)} recent days where published "
                f"predictions and the candidate's out-of-sample scores meet (fewer than "
                f"{g.min_recent_days}): not applicable",
            )
        )
    else:
        prod = _num(candidate, "production_recent_rank_ic")
        crit.append(
            _criterion(
                "recent_days_vs_production",
                recent,
                ">=",
                prod - g.recent_rank_ic_tolerance,
                f"rank IC on the last {int(recent_days)} scored days ({candidate.get('recent_first', '')} to "
                f"{candidate.get('recent_last', '')}), against the published predictions' {prod:.4f} on the "
                f"same rows (versions {candidate.get('recent_versions', '')}) - tolerance "
                f"{g.recent_rank_ic_tolerance}; both out-of-sample",
            )
        )
    if champion:
        mine, theirs = _num(candidate, CHAMPION_METRIC), _num(champion, CHAMPION_METRIC)
        crit.append(
            _criterion(
                "rank_ic_vs_champion",
                mine,
                ">=",
                theirs - g.max_rank_ic_drop,
                f"champion's recorded out-of-sample rank IC {theirs:.4f} - at most {g.max_rank_ic_drop}",
            )
        )
    else:
        crit.append(
            _not_applicable(
                "rank_ic_vs_champion", _num(candidate, CHAMPION_METRIC), ">=", "no champion yet: first model, judged on the criteria above alone"
            )
        )
    return GateDecision(promoted=all(c.passed for c in crit), criteria=tuple(crit))


def switch_not_applied(decision: pd.DataFrame | None, champion_history: pd.DataFrame) -> str | None:
    """The version a stored ``promotion_decision`` promoted that the registry's champion history never shows
    (the run stopped between the decision and the switch), or None."""
    if decision is None or decision.empty or not bool(decision.promoted.iloc[0]):
        return None
    version = str(decision.candidate_version.iloc[0])
    return None if len(champion_history) and (champion_history.version == version).any() else version
