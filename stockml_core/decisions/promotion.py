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
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from stockml_core.modeling.evaluation import ALL_BASELINES, headline, information_coefficients, model_score
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


NAN = float("nan")


def _float(v: object) -> float:
    """A number as the gate reads it: anything missing or not numeric is NaN (absent evidence)."""
    try:
        return float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return NAN


def best_baseline(values: Mapping[str, float]) -> tuple[str, float]:
    """The baseline with the highest value (its name and value; ``("", nan)`` if none has one)."""
    known = [(b, _float(v)) for b, v in values.items()]
    known = [(b, v) for b, v in known if not math.isnan(v)]
    return max(known, key=lambda bv: bv[1]) if known else ("", NAN)


@dataclass(frozen=True)
class BaselineRecord:
    """One baseline's out-of-sample record on the candidate's rows (NaN where it has none)."""

    rank_ic: float = NAN
    net_sharpe: float = NAN
    crash_rank_ic: float = NAN


@dataclass(frozen=True)
class ReplayEvidence:
    """The error-replay correction: how many replayed mistakes the training set held, the share the candidate
    still gets wrong and the champion's share on the same samples (``champion_note`` says why it has none)."""

    n: float = 0.0
    repeat_error_rate: float = NAN
    champion_repeat_error_rate: float = NAN
    champion_note: str = ""

    @classmethod
    def of(cls, correction: Mapping[str, float]) -> ReplayEvidence:
        """From ``training.replay_correction``'s record (``replay_n``, ``repeat_error_rate``)."""
        n = _float(correction.get("replay_n", 0.0))
        return cls(n=0.0 if math.isnan(n) else n, repeat_error_rate=_float(correction.get("repeat_error_rate")))


@dataclass(frozen=True)
class RecentEvidence:
    """The candidate against production on the most recent days both scored (``recent_comparison``)."""

    days: float = 0.0
    rank_ic: float = NAN
    production_rank_ic: float = NAN
    versions: str = ""
    first: str = ""
    last: str = ""


@dataclass(frozen=True)
class GateEvidence:
    """What the gate judges, typed: the candidate's out-of-sample record, every baseline's on the same rows,
    the replay correction and the recent comparison with production.

    ``headline`` keeps every headline metric of the validation report (accuracy, AUC, ...) for readers;
    the gate never reads it, so a number outside the fields (accuracy, a drift score) cannot sway it.
    """

    rank_ic: float
    rank_ic_t: float
    days: float
    net_sharpe: float
    turnover: float
    crash_days: float
    crash_rank_ic: float
    worst_sector_accuracy: float
    worst_sector: str
    baselines: Mapping[str, BaselineRecord]
    replay: ReplayEvidence = ReplayEvidence()
    recent: RecentEvidence = RecentEvidence()
    headline: Mapping[str, float | str] = field(default_factory=dict)

    @classmethod
    def measure(
        cls,
        report: pd.DataFrame,
        book_table: pd.DataFrame,
        replay: ReplayEvidence = ReplayEvidence(),
        recent: RecentEvidence = RecentEvidence(),
    ) -> GateEvidence:
        """From a validation report (``evaluation.headline``) and the decile books' table (``backtest.decile_books``:
        model, net_sharpe, avg_daily_turnover; the candidate's row is ``candidate``)."""
        h = headline(report)
        books = {str(r.model): (float(r.net_sharpe), float(r.avg_daily_turnover)) for r in book_table.itertuples(index=False)}
        sharpe, turnover = books.get("candidate", (NAN, NAN))
        baselines = {
            b: BaselineRecord(_float(h.get(f"{b}_rank_ic")), books.get(b, (NAN, NAN))[0], _float(h.get(f"{b}_crash_rank_ic"))) for b in ALL_BASELINES
        }
        return cls(
            rank_ic=_float(h["rank_ic"]),
            rank_ic_t=_float(h["rank_ic_t"]),
            days=_float(h["days"]),
            net_sharpe=sharpe,
            turnover=turnover,
            crash_days=_float(h["crash_days"]),
            crash_rank_ic=_float(h["crash_rank_ic"]),
            worst_sector_accuracy=_float(h["worst_sector_accuracy"]),
            worst_sector=str(h["worst_sector"]),
            baselines=baselines,
            replay=replay,
            recent=recent,
            headline=h,
        )

    def best_baseline(self, metric: str) -> tuple[str, float]:
        """The best baseline on ``rank_ic``, ``net_sharpe`` or ``crash_rank_ic`` (name and value)."""
        return best_baseline({b: getattr(r, metric) for b, r in self.baselines.items()})

    def as_record(self) -> dict:
        """What the gate judged, as JSON (NaN as null: absent evidence), without ``headline``: the decision's
        metadata shows it beside the criteria, and the validation report holds the rest."""

        def clean(v):
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            return None if isinstance(v, float) and math.isnan(v) else v

        record = asdict(self)
        record.pop("headline")
        return clean(record)


def recent_comparison(evaluation: pd.DataFrame, published: pd.DataFrame | None, days: int, horizon: int) -> RecentEvidence:
    """The candidate against production on the most recent scored days.

    ``evaluation``: the candidate's out-of-sample rows (ticker, date, fwd_return, candidate__p_*);
    ``published``: the predictions the platform published (ticker, date, model_version, p_down, p_up),
    each made by the champion of its day before its outcome was known. On the last ``days`` dates
    where both exist with a forward return, the rank IC of each one's up-minus-down score on the same
    rows. Both are out-of-sample there: the candidate's rows are walk-forward test rows, production's
    were live. ``days`` 0 where they never meet (first cycle, or nothing published yet).
    """
    if published is None or published.empty or evaluation.empty:
        return RecentEvidence()
    live = published[["ticker", "date", "model_version", "p_down", "p_up"]].copy()
    live["date"] = pd.to_datetime(live.date).astype("datetime64[ns]")
    cand = evaluation[["ticker", "date", "fwd_return"]].assign(candidate_score=model_score(evaluation, "candidate"))
    cand["date"] = pd.to_datetime(cand.date).astype("datetime64[ns]")
    both = cand.merge(live, on=["ticker", "date"], how="inner").dropna(subset=["fwd_return"])
    if both.empty:
        return RecentEvidence()
    last = np.sort(both.date.unique())[-days:]
    both = both[both.date.isin(last)]
    c = information_coefficients(both.date, both.candidate_score.to_numpy(), both.fwd_return.to_numpy(), horizon)
    p = information_coefficients(both.date, (both.p_up - both.p_down).to_numpy(), both.fwd_return.to_numpy(), horizon)
    return RecentEvidence(
        days=float(c["days"]),
        rank_ic=float(c["rank_ic"]),
        production_rank_ic=float(p["rank_ic"]),
        versions=", ".join(sorted(both.model_version.astype(str).unique())),
        first=str(pd.Timestamp(last[0]).date()),
        last=str(pd.Timestamp(last[-1]).date()),
    )


def evaluate_gate(
    candidate: GateEvidence,
    settings: GateSettings,
    champion: Mapping[str, float] | None = None,
) -> GateDecision:
    """Judge a candidate's evidence (``GateEvidence.measure``) against the gate; ``champion``: the champion's
    recorded metrics in the registry (``None`` without one)."""
    g = settings
    crit: list[Criterion] = []
    base, best_ric = candidate.best_baseline("rank_ic")
    crit.append(
        _criterion(
            "rank_ic_vs_best_baseline",
            candidate.rank_ic,
            ">=",
            best_ric + g.rank_ic_margin,
            f"best baseline {base or 'none'} rank IC {best_ric:.4f} + margin {g.rank_ic_margin}, on the same "
            f"{0 if math.isnan(candidate.days) else int(candidate.days):,} out-of-sample days",
        )
    )
    crit.append(
        _criterion(
            "rank_ic_t",
            candidate.rank_ic_t,
            ">=",
            g.min_rank_ic_t,
            "t-statistic of the mean daily rank IC, corrected for the overlap of the h-day returns (Hansen-Hodrick, evaluation.overlap_t)",
        )
    )
    sbase, best_sharpe = candidate.best_baseline("net_sharpe")
    floor = max(0.0, best_sharpe) if not math.isnan(best_sharpe) else 0.0
    crit.append(
        _criterion(
            "net_sharpe_vs_best_baseline",
            candidate.net_sharpe,
            ">=",
            floor + g.net_sharpe_margin,
            f"long top / short bottom decile book held h days, net of costs; max(0, best baseline "
            f"{sbase or 'none'} {best_sharpe:.2f}) + margin {g.net_sharpe_margin}; "
            f"turnover {candidate.turnover:.3f} a day",
        )
    )
    crash_days = candidate.crash_days
    crash = candidate.crash_rank_ic
    cbase, crash_base = candidate.best_baseline("crash_rank_ic")
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
            candidate.worst_sector_accuracy,
            ">=",
            g.min_sector_accuracy,
            f"weakest sector: {candidate.worst_sector} (three classes: chance is 1/3)",
        )
    )
    replay = candidate.replay
    replay_n, repeat, champ_repeat = replay.n, replay.repeat_error_rate, replay.champion_repeat_error_rate
    if math.isnan(replay_n) or replay_n == 0:
        why = "no replayed mistakes in the training set (empty buffer or first cycle): not applicable"
    elif not champion:
        why = "no champion to compare the replayed mistakes with: not applicable"
    elif math.isnan(champ_repeat) and replay.champion_note:
        why = replay.champion_note
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
    recent_days, recent = candidate.recent.days, candidate.recent.rank_ic
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
        prod = candidate.recent.production_rank_ic
        crit.append(
            _criterion(
                "recent_days_vs_production",
                recent,
                ">=",
                prod - g.recent_rank_ic_tolerance,
                f"rank IC on the last {int(recent_days)} scored days ({candidate.recent.first} to "
                f"{candidate.recent.last}), against the published predictions' {prod:.4f} on the "
                f"same rows (versions {candidate.recent.versions}) - tolerance "
                f"{g.recent_rank_ic_tolerance}; both out-of-sample",
            )
        )
    if champion:
        mine, theirs = candidate.rank_ic, _float(champion.get(CHAMPION_METRIC))
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
            _not_applicable("rank_ic_vs_champion", candidate.rank_ic, ">=", "no champion yet: first model, judged on the criteria above alone")
        )
    return GateDecision(promoted=all(c.passed for c in crit), criteria=tuple(crit))


def switch_not_applied(decision: pd.DataFrame | None, champion_history: pd.DataFrame) -> str | None:
    """The version a stored ``promotion_decision`` promoted that the registry's champion history never shows
    (the run stopped between the decision and the switch), or None."""
    if decision is None or decision.empty or not bool(decision.promoted.iloc[0]):
        return None
    version = str(decision.candidate_version.iloc[0])
    return None if len(champion_history) and (champion_history.version == version).any() else version
