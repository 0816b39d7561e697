"""The ``stockml`` command: run the whole graph through Dagster, and report the platform's state."""

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import pandas as pd

from stockml_assets.tags import TRIGGER_TAG
from stockml_core.settings import PROJECT_ROOT, Settings, event_log_from_env
from stockml_core.storage.side_tables import AssetTables, ShapAnalysisStore
from stockml_core.storage.warehouse import Warehouse

DAGSTER_YAML = """\
# StockML's project-local Dagster instance (git-ignored). DuckDB allows one writer: every asset that
# writes the warehouse is in the duckdb_writer pool, limited to one step at a time, and the daemon
# launches one run at a time (a daily run waits for a retrain, in order).
telemetry:
  enabled: false
concurrency:
  pools:
    default_limit: 1
    granularity: op
  runs:
    max_concurrent_runs: 1
# The daemon evaluates the assets' freshness policies (the weekly model's; the daily assets' freshness
# is judged on the data's calendar: the caught_up_with_the_feed check).
freshness:
  enabled: true
"""
EVENT_LOG_YAML = """# SQLite without an fsync per event: a backfill of 7,000 trading days writes tens of thousands of
# events (see stockml_assets/instance_storage.py; STOCKML_EVENT_LOG=dagster uses Dagster's own).
event_log_storage:
  module: stockml_assets.instance_storage
  class: LocalEventLogStorage
  config:
    base_dir: {base_dir}
"""


def dagster_yaml(home: Path) -> str:
    """The dagster.yaml of a project-style DAGSTER_HOME (the event log as ``STOCKML_EVENT_LOG`` chooses)."""
    ours = event_log_from_env() == "stockml"
    return DAGSTER_YAML + (EVENT_LOG_YAML.format(base_dir=json.dumps(str(home / "history" / "runs"))) if ours else "")


def _stop_on_signals() -> None:
    """SIGTERM and SIGINT stop a command as Ctrl-C does: Dagster ends the run's current step, marks the run
    failed or canceled and the process exits (a process started in the background inherits SIGINT ignored)."""
    import signal

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"stopped by signal {signum}")

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupt)


def init_home() -> Path:
    """Make sure DAGSTER_HOME (default: ./.dagster_home) exists with StockML's dagster.yaml."""
    home = Path(os.environ.get("DAGSTER_HOME") or PROJECT_ROOT / ".dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    cfg = home / "dagster.yaml"
    ours = event_log_from_env() == "stockml"
    # homes made by earlier versions upgrade; a change of STOCKML_EVENT_LOG rewrites the file
    if not cfg.exists() or ("LocalEventLogStorage" in cfg.read_text()) != ours:
        cfg.write_text(dagster_yaml(home))
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def _fmt(v) -> str:
    if isinstance(v, float):
        return "n/a" if math.isnan(v) else f"{v:.4f}"
    return str(v)


def _clean(metrics: dict) -> dict:
    """NaN (a metric undefined on these rows) as null, so the JSON is standard."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()}


DECISION_KEYS = ("name", "outcome", "value", "op", "threshold", "passed", "applicable", "detail")
SKILL_KEYS = ("rank_ic", "rank_ic_t", "rank_icir", "ic", "net_sharpe", "turnover", "auc_direction", "accuracy")


def skill_table(metrics: dict) -> pd.DataFrame:
    """One row per model of a version's recorded metrics (candidate, base models, baselines): rank IC, its
    t, ICIR, net Sharpe and turnover of the decile book, side by side."""
    rows = [{"model": "candidate", **{k: metrics.get(k) for k in SKILL_KEYS}}]
    for group in ("base_models", "baselines"):
        rows += [{"model": m, **{k: v.get(k) for k in SKILL_KEYS}} for m, v in metrics.get(group, {}).items()]
    return pd.DataFrame(rows).astype({k: "float64" for k in SKILL_KEYS})


def collect_status(settings: Settings | None = None) -> dict:
    """The champion, its metrics, the last decision and the last drift score, as a dict (default: the
    deployment's settings, ``resources.deployment``, as the runs read them)."""
    from stockml_assets.resources import deployment
    from stockml_core.decisions.promotion import switch_not_applied
    from stockml_core.storage.registry import ModelRegistry

    s = settings or deployment().settings()
    wh = Warehouse(s.warehouse_path, read_only=True)  # status reads: it opens nothing for writing, creates nothing
    out: dict = {
        "warehouse": str(s.warehouse_path),
        "champion": None,
        "last_decision": None,
        "drift_score": None,
        "drift_date": None,
        "data_quality": None,
    }
    if not wh.exists():
        return out
    out["data_quality"] = data_quality(wh)
    if not wh.has_table("model_promotion_history"):
        return out
    reg = ModelRegistry(wh, s.artefact_dir)
    champ = reg.champion()
    if champ:
        metrics = dict(champ.metrics)
        baselines = metrics.pop("baselines", {})
        base_models = metrics.pop("base_models", {})
        try:
            reg.verify(champ.version)
            integrity = "sha256 verified"
        except Exception as exc:  # noqa: BLE001 - any integrity failure is reported, not raised
            integrity = str(exc)
        out["champion"] = {
            "version": champ.version,
            "sha256": champ.sha256,
            "verified": integrity == "sha256 verified",
            "integrity": integrity,
            "metrics": _clean(metrics),
            "baselines": {b: _clean(m) for b, m in baselines.items()},
            "base_models": {b: _clean(m) for b, m in base_models.items()},
            "created_at": str(champ.created_at),
        }
    tables = AssetTables(wh)
    d = tables.table("promotion_decision")
    if d is not None:
        if len(d):
            out["last_decision"] = {
                "candidate_version": str(d.candidate_version.iloc[0]),
                "promoted": bool(d.promoted.iloc[0]),
                "failed": [str(n) for n in d.name[~d.passed.astype(bool)]],
                # promoted by the gate, but the run stopped before the switch: the next training run completes it
                "switch_pending": switch_not_applied(d, reg.history()) is not None,
                "criteria": [_clean(r) for r in d[[c for c in DECISION_KEYS if c in d.columns]].to_dict("records")],
            }
    out["drift_thresholds"] = {k: getattr(s.drift, k) for k in ("score_threshold", "persistence_days", "cooldown_days")}
    latest = tables.latest_drift("overall")
    if latest is not None:
        out["drift_date"], out["drift_score"] = f"{latest[0]:%Y-%m-%d}", latest[1]
    return out


def data_quality(wh: Warehouse) -> dict:
    """Rows ingested, rows quarantined by rule, tickers affected, suspected corporate actions."""
    from stockml_core.market.quality import QuarantineStore

    return {"rows_ingested": AssetTables(wh).price_rows(), **QuarantineStore(wh).summary()}


def print_status(st: dict) -> None:
    from stockml_core.decisions.promotion import MIN_SKILL_T, has_directional_skill, shown_value

    champ = st["champion"]
    if champ:
        m = champ["metrics"]
        print(
            f"Champion: {champ['version']} (sha256 {champ['sha256'][:12]}..., "
            f"{'verified' if champ.get('verified', True) else 'INTEGRITY CHECK FAILED: ' + champ.get('integrity', '')})"
        )
        print(
            "  out-of-sample: "
            + ", ".join(
                f"{k} {_fmt(float(m[k]))}"
                for k in ["accuracy", "balanced_accuracy", "auc_ovr", "auc_direction", "ic", "rank_ic", "rank_ic_t", "icir"]
                if m.get(k) is not None
            )
        )
        t, ric = m.get("rank_ic_t"), m.get("rank_ic")
        if not has_directional_skill(ric, t):
            print(
                f"  WARNING: champion {champ['version']} shows no directional skill out-of-sample (rank IC "
                f"{_fmt(float('nan') if ric is None else float(ric))}, t {_fmt(float('nan') if t is None else float(t))}; "
                f"t below {MIN_SKILL_T:g} is no evidence of ranking skill): treat its predictions as noise"
            )
    else:
        print("Champion: none - no model has passed the promotion gate yet; no predictions are published.")
    d = st["last_decision"]
    if d:
        print(f"Last decision: candidate {d['candidate_version']} -> {'PROMOTED' if d['promoted'] else 'REJECTED'}")
        for c in d["criteria"]:
            outcome = c.get("outcome") or ("pass" if c["passed"] else "fail")
            if outcome == "not applicable":
                print(f"  [n/a ] {c['name']}: {c['detail']}")
                continue
            v, t = shown_value(c["name"], c["value"]), shown_value(c["name"], c["threshold"])
            print(f"  [{'pass' if outcome == 'pass' else 'FAIL'}] {c['name']}: {v} {c['op']} {t}  ({c['detail']})")
    if st["drift_score"] is None:
        print("Drift score: not measured")
    else:
        dt = st.get("drift_thresholds") or {}
        print(
            f"Drift score: {_fmt(st['drift_score'])} on {st['drift_date']} (retraining when >= "
            f"{dt.get('score_threshold', float('nan')):g} for {dt.get('persistence_days', '?')} days in a row; then "
            f"{dt.get('cooldown_days', '?')} trading days of cooldown)"
        )
    dq = st.get("data_quality")
    if dq:
        rules = ", ".join(f"{r} {n}" for r, n in dq["by_rule"].items()) or "none"
        print(
            f"Data quality: {dq['rows_ingested']:,} price rows ingested; {dq['rows_quarantined']} quarantined ({rules}) "
            f"in {len(dq['tickers_affected'])} tickers; {len(dq['suspected_corporate_actions'])} suspected corporate actions"
        )


def _print_models(table: pd.DataFrame) -> None:
    """A one-row-per-model table as the README writes it: models by their readers' names, 4 decimals."""
    from stockml_core.modeling.evaluation import model_label

    table = table.assign(model=table.model.map(model_label))
    print(table.to_string(index=False, float_format=lambda x: f"{x:.4f}", na_rep="-"))


def summary(s: Settings, fresh=None) -> None:
    wh = Warehouse(s.warehouse_path)
    tables = AssetTables(wh)
    r = tables.price_summary()
    print(f"Rows ingested: {int(r.n):,} price rows, {int(r.t)} tickers, {pd.Timestamp(r.a):%Y-%m-%d} .. {pd.Timestamp(r.b):%Y-%m-%d}")
    print(f"Features: {tables.feature_count()} per (ticker, date)")
    rep = tables.table("validation_report")
    if rep is not None:
        from stockml_core.decisions.promotion import MIN_SKILL_T
        from stockml_core.modeling.evaluation import comparison_table

        print("Out-of-sample (purged walk-forward) vs naive baselines:")
        table = comparison_table(rep)[["model", "accuracy", "balanced_accuracy", "auc_ovr", "auc_direction", "ic", "rank_ic", "rank_ic_t", "n"]]
        _print_models(table.astype({"n": "Int64"}))
        print(
            "  (rank_ic_t: the mean daily rank IC's t-statistic, corrected for the overlap of "
            f"{s.labels.horizon}-day returns; "
            f"|t| < {MIN_SKILL_T:g} is no evidence of ranking skill)"
        )
    status = collect_status(s)
    if status["last_decision"]:
        from stockml_core.storage.registry import ModelRegistry

        cand = ModelRegistry(wh, s.artefact_dir).get(status["last_decision"]["candidate_version"])
        print(
            f"Skill of candidate {cand.version} and every model on the same out-of-sample rows (decile book: long top / "
            f"short bottom 10%, held {s.labels.horizon} days, net of {s.cost_bps:g} bp a side):"
        )
        _print_models(skill_table(cand.metrics))
    backtest = tables.table("backtest_report", order_by="date") if status["last_decision"] else None
    if backtest is not None:
        from stockml_core.modeling.backtest import summarize_backtest

        bt = summarize_backtest(backtest)
        strat, hold = bt.iloc[0], bt.iloc[1]
        print(
            f"Backtest of candidate {status['last_decision']['candidate_version']} (daily long top-{s.top_k} / short "
            f"bottom-{s.top_k}, out-of-sample, net of {s.cost_bps:g} bp a side): annual return {strat.annual_return:.1%}, "
            f"Sharpe {strat.sharpe:.2f}, max drawdown {strat.max_drawdown:.1%}, turnover {strat.avg_daily_turnover:.2f} a "
            f"day; buy-and-hold: {hold.annual_return:.1%}, Sharpe {hold.sharpe:.2f}"
        )
    print_status(status)
    champ = status["champion"]
    top = ShapAnalysisStore(wh).top(10)
    if len(top):
        print("Top 10 SHAP features: " + ", ".join(f"{f} ({v:.3f})" for f, v in top.itertuples(index=False)))
    if fresh is not None:
        print(f"Freshness on the data's calendar: {'passed' if fresh.passed else 'FAILED'} ({fresh.status}): {fresh.description}")
    if not champ:
        print("No model passed the gate: no predictions were published.")
    print(f"Open the UI: make ui, then http://127.0.0.1:3000 (DAGSTER_HOME={os.environ['DAGSTER_HOME']})")


def _say_freshness(instance, s: Settings, quiet: bool = False):
    """Record the data-calendar freshness check after a CLI run (the UI shows it on drift_report)."""
    from stockml_assets.freshness import record_freshness

    fresh = record_freshness(instance, s.data_dir, s.freshness_overdue_hours)
    if not quiet:
        print(f"Freshness: {'passed' if fresh.passed else 'FAILED'} ({fresh.status}): {fresh.description}")
    return fresh


def _report_failure(result, what: str) -> None:
    from stockml_assets.runs import failure_messages

    print(f"{what} run {result.run_id} FAILED")
    for msg in failure_messages(result):
        print(f"step {msg}")


def cmd_run(args) -> int:
    from dagster import DagsterInstance

    from stockml_assets.definitions import defs
    from stockml_assets.runs import data_span, run_daily, run_history

    init_home()
    s = defs.resources["stockml"].settings()  # the deployment's settings, as the runs read them
    first, last = data_span(s)
    print(f"Materializing the StockML graph on {s.data_dir} (runtime state in {s.home}) ...", flush=True)
    print(f"1/2 history: {first:%Y-%m-%d}..{last:%Y-%m-%d} as one run over its trading-day partitions, then training and the gate", flush=True)
    progress = {"loggers": {"progress": {}}}  # one line per step; the full log is in the UI
    t0 = time.perf_counter()
    with DagsterInstance.get() as instance:
        result = run_history(defs, instance, first, last, run_config=progress)
        if not result.success:
            _report_failure(result, "history")
            _say_freshness(instance, s)
            return 1
        t1 = time.perf_counter()
        print(f"history run {result.run_id} succeeded in {t1 - t0:.1f} s", flush=True)
        print(f"2/2 daily run for {last:%Y-%m-%d}: predictions, drift, rare-event watch", flush=True)
        daily = run_daily(defs, instance, last, tags={TRIGGER_TAG: "manual"}, run_config=progress)
        fresh = _say_freshness(instance, s, quiet=daily.success)
        if not daily.success:
            _report_failure(daily, "daily")
            return 1
    print(f"daily run {daily.run_id} succeeded in {time.perf_counter() - t1:.1f} s; total {time.perf_counter() - t0:.1f} s\n")
    summary(s, fresh)
    return 0


def cmd_backfill(args) -> int:
    from dagster import DagsterInstance

    from stockml_assets.definitions import defs
    from stockml_assets.runs import run_daily, run_history

    init_home()
    t0 = time.perf_counter()
    with DagsterInstance.get() as instance:
        if args.job == "daily":
            result = run_daily(defs, instance, args.start, last=args.end, tags={TRIGGER_TAG: "manual"}, run_config={"loggers": {"progress": {}}})
        else:
            result = run_history(defs, instance, args.start, args.end, train=not args.no_training, run_config={"loggers": {"progress": {}}})
        _say_freshness(instance, defs.resources["stockml"].settings())
    if not result.success:
        _report_failure(result, f"{args.job} backfill")
        return 1
    print(f"{args.job} backfill {args.start}..{args.end}: run {result.run_id} succeeded in {time.perf_counter() - t0:.1f} s")
    return 0


def cmd_replay(args) -> int:
    from stockml_assets.simulation import replay
    from stockml_core.market.data import DataFolderError

    init_home()
    try:
        report = replay(args.start, args.end, Path(args.out), initial_model=args.initial_model, **({"fast": True} if args.fast else {}))
    except (ValueError, DataFolderError) as exc:  # a bad argument or window: said in one line, nothing deleted
        print(f"replay refused: {exc}", file=sys.stderr)
        return 2
    t = report.get("timing", {})
    print(
        f"replay {report['start']}..{report['end']}: {report['trading_days']} trading days, "
        f"{len(report['triggers'])} triggers, {len(report['retrains'])} retrains "
        f"({sum(r['promoted'] for r in report['retrains'])} promoted), {len(report['events_captured'])} events captured, "
        f"{t.get('total_seconds')} s"
    )
    for sh in report["shifts"]:
        print(f"  crash onset {sh['onset']}: drift retrain {sh['detected'] or 'none'} (delay {sh['delay_days']} trading days)")
    print(f"report: {Path(args.out) / 'report.md'} and report.json")
    return 0


def cmd_status(args) -> int:
    st = collect_status()
    if args.json:
        print(json.dumps(st, indent=2, default=str))
    else:
        print_status(st)
    champ = st["champion"]
    if champ and not champ["verified"]:  # a champion whose artefact fails its hash is not a healthy state
        print(f"champion {champ['version']} FAILS its integrity check: {champ['integrity']}", file=sys.stderr)
        return 1
    return 0


def _champion_job(job: str, op: str, args) -> int:
    from dagster import DagsterInstance

    from stockml_assets.definitions import defs
    from stockml_assets.execution import execute

    init_home()
    with DagsterInstance.get() as instance:
        result = execute(
            defs.resolve_job_def(job),
            instance,
            tags={TRIGGER_TAG: "manual"},
            run_config={"ops": {op: {"config": {"version": args.version, "reason": args.reason, "actor": args.actor}}}},
        )
    what = "rollback" if job == "rollback_job" else "override"
    if not result.success:
        from stockml_assets.runs import failure_messages

        for msg in failure_messages(result):  # the root cause (UnknownVersionError, ...), not Dagster's wrapper
            print(f"{what} failed: {msg.split(': ', 1)[-1][:500]}")
    print(f"{what} to {args.version}: {'done' if result.success else 'FAILED (the champion is unchanged)'}")
    return 0 if result.success else 1


def cmd_rollback(args) -> int:
    return _champion_job("rollback_job", "rollback_champion", args)


def cmd_override(args) -> int:
    return _champion_job("override_job", "override_champion", args)


def cmd_feed(args) -> int:
    import logging

    from stockml_assets.feed import run_feed

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stdout, force=True)
    run_feed(Path(args.source), Path(args.target), args.start, args.every)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stockml", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="materialize the whole asset graph through Dagster and print a summary")
    st = sub.add_parser("status", help="champion, metrics, last decision, last drift score")
    st.add_argument("--json", action="store_true", help="machine-readable output")
    sub.add_parser("init-home", help="create the project-local DAGSTER_HOME with its dagster.yaml")
    rb = sub.add_parser("rollback", help="make a named model version the champion again (through Dagster)")
    rb.add_argument("version")
    rb.add_argument("--reason", required=True)
    rb.add_argument("--actor", default=os.environ.get("USER", "operator"))
    ov = sub.add_parser("override", help="make a registered version champion by hand, bypassing the gate (through Dagster; the reason is recorded)")
    ov.add_argument("version")
    ov.add_argument("--reason", required=True)
    ov.add_argument("--actor", default=os.environ.get("USER", "operator"))
    bf = sub.add_parser(
        "backfill",
        help="materialize a range of trading days in one run (history: ingestion, features, "
        "training and the gate; daily: also predictions and drift for every day)",
    )
    bf.add_argument("start")
    bf.add_argument("end")
    bf.add_argument("--job", choices=["history", "daily"], default="history")
    bf.add_argument("--no-training", action="store_true", help="history only: skip training and the gate")
    rp = sub.add_parser(
        "replay",
        help="play history day by day through the real definitions (daily runs, sensors, "
        "triggered retrains, the gate) in a fresh instance and warehouse; writes report.json/report.md",
    )
    rp.add_argument("--start", required=True)
    rp.add_argument("--end", required=True)
    rp.add_argument("--out", required=True, help="folder for report.json and report.md")
    rp.add_argument(
        "--initial-model",
        choices=["train", "none"],
        default="train",
        help="train a champion on the data before --start (default), or start without one",
    )
    rp.add_argument("--fast", action="store_true", help="smaller models (quick looks; not the default)")
    fd = sub.add_parser(
        "feed",
        help="simulated market-data feed: copy --source to --target, releasing the prices "
        "of one more trading day every --every seconds from --start (atomic writes)",
    )
    fd.add_argument("--source", required=True, help="data folder to replay (prices.csv[.gz], sectors, market, rare_events)")
    fd.add_argument("--target", required=True, help="data folder to write (point STOCKML_DATA_DIR at it)")
    fd.add_argument("--start", required=True, help="first trading day to release; every earlier row is written at once")
    fd.add_argument("--every", type=float, default=60.0, help="seconds between releases (default 60)")
    args = parser.parse_args(argv)
    _stop_on_signals()
    if args.command == "init-home":
        print(init_home())
        return 0
    return {
        "run": cmd_run,
        "status": cmd_status,
        "rollback": cmd_rollback,
        "override": cmd_override,
        "backfill": cmd_backfill,
        "replay": cmd_replay,
        "feed": cmd_feed,
    }[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
