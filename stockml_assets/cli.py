"""The ``stockml`` command: run the whole graph through Dagster, and report the platform's state."""

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import pandas as pd

from stockml_core.settings import PROJECT_ROOT, Settings
from stockml_core.warehouse import Warehouse

DAGSTER_YAML = """\
# StockML's project-local Dagster instance (git-ignored). DuckDB allows one writer: every asset that
# writes the warehouse is in the duckdb_writer pool, limited to one step at a time.
telemetry:
  enabled: false
concurrency:
  pools:
    default_limit: 1
    granularity: op
"""


def init_home() -> Path:
    """Make sure DAGSTER_HOME (default: ./.dagster_home) exists with its dagster.yaml."""
    home = Path(os.environ.get("DAGSTER_HOME") or PROJECT_ROOT / ".dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    cfg = home / "dagster.yaml"
    if not cfg.exists():
        cfg.write_text(DAGSTER_YAML)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def _fmt(v) -> str:
    if isinstance(v, float):
        return "n/a" if math.isnan(v) else f"{v:.4f}"
    return str(v)


def _clean(metrics: dict) -> dict:
    """NaN (a metric undefined on these rows) as null, so the JSON is standard."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()}


def collect_status(settings: Settings | None = None) -> dict:
    """The champion, its metrics, the last decision and the last drift score, as a dict."""
    from stockml_core.registry import ModelRegistry

    s = settings or Settings()
    wh = Warehouse(s.warehouse_path)
    out: dict = {"warehouse": str(s.warehouse_path), "champion": None, "last_decision": None, "drift_score": None}
    if not wh.exists():
        return out
    reg = ModelRegistry(wh, s.artefact_dir)
    champ = reg.champion()
    if champ:
        metrics = dict(champ.metrics)
        baselines = metrics.pop("baselines", {})
        out["champion"] = {"version": champ.version, "sha256": champ.sha256, "metrics": _clean(metrics),
                           "baselines": {b: _clean(m) for b, m in baselines.items()},
                           "created_at": str(champ.created_at)}
    if wh.has_table("promotion_decision", "assets"):
        d = wh.read('select * from "assets"."promotion_decision"')
        if len(d):
            out["last_decision"] = {
                "candidate_version": str(d.candidate_version.iloc[0]), "promoted": bool(d.promoted.iloc[0]),
                "criteria": [_clean(r)
                             for r in d[["name", "value", "op", "threshold", "passed", "detail"]].to_dict("records")]}
    if wh.has_table("drift_report", "assets"):
        dr = wh.read('select * from "assets"."drift_report" where component = ?', ["overall"])
        out["drift_score"] = float(dr.value.iloc[0]) if len(dr) else None
    return out


def print_status(st: dict) -> None:
    champ = st["champion"]
    if champ:
        m = champ["metrics"]
        print(f"Champion: {champ['version']} (sha256 {champ['sha256'][:12]}...)")
        print("  out-of-sample: " + ", ".join(f"{k} {_fmt(float(m[k]))}" for k in
              ["accuracy", "balanced_accuracy", "auc_ovr", "auc_direction", "ic", "rank_ic", "icir"] if m.get(k) is not None))
    else:
        print("Champion: none - no model has passed the promotion gate yet; no predictions are published.")
    d = st["last_decision"]
    if d:
        print(f"Last decision: candidate {d['candidate_version']} -> {'PROMOTED' if d['promoted'] else 'REJECTED'}")
        for c in d["criteria"]:
            v = "n/a" if c["value"] is None else f"{c['value']:.4f}"
            t = "n/a" if c["threshold"] is None else f"{c['threshold']:.4f}"
            print(f"  [{'pass' if c['passed'] else 'FAIL'}] {c['name']}: {v} {c['op']} {t}  ({c['detail']})")
    print(f"Drift score: {_fmt(st['drift_score']) if st['drift_score'] is not None else 'not measured'}")


def summary(s: Settings) -> None:
    wh = Warehouse(s.warehouse_path)
    prices = wh.read('select count(*) as n, count(distinct ticker) as t, min(date) as a, max(date) as b from "assets"."raw_prices"')
    feats = wh.read('select * from "assets"."feature_matrix" limit 1')
    r = prices.iloc[0]
    print(f"Rows ingested: {int(r.n):,} price rows, {int(r.t)} tickers, {pd.Timestamp(r.a):%Y-%m-%d} .. {pd.Timestamp(r.b):%Y-%m-%d}")
    print(f"Features: {feats.shape[1] - 2} per (ticker, date)")
    if wh.has_table("validation_report", "assets"):
        from stockml_core.evaluation import comparison_table
        rep = wh.read('select * from "assets"."validation_report"')
        print("Out-of-sample (purged walk-forward) vs naive baselines:")
        print(comparison_table(rep)[["model", "accuracy", "balanced_accuracy", "auc_ovr", "auc_direction", "ic", "rank_ic", "n"]]
              .to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    status = collect_status(s)
    print_status(status)
    champ = status["champion"]
    if wh.has_table("shap_analysis"):
        top = wh.read("select feature_name, importance_score from shap_analysis where model_version = "
                      "(select max(model_version) from shap_analysis) and regime = 'all' order by rank limit 10")
        print("Top 10 SHAP features: " + ", ".join(f"{f} ({v:.3f})" for f, v in top.itertuples(index=False)))
    if not champ:
        print("No model passed the gate: no predictions were published.")
    print(f"Open the UI: make ui, then http://127.0.0.1:3000 (DAGSTER_HOME={os.environ['DAGSTER_HOME']})")


def cmd_run(args) -> int:
    from dagster import DagsterInstance

    from stockml_assets.definitions import defs

    init_home()
    s = Settings()
    print(f"Materializing the StockML graph on {s.data_dir} (runtime state in {s.home}) ...", flush=True)
    t0 = time.perf_counter()
    with DagsterInstance.get() as instance:
        result = defs.resolve_job_def("stockml_full_job").execute_in_process(
            instance=instance, tags={"stockml/trigger": "manual"}, raise_on_error=False,
            run_config={"loggers": {"progress": {}}})  # one line per step; the full log is in the UI
    print(f"Run {result.run_id} {'succeeded' if result.success else 'FAILED'} in {time.perf_counter() - t0:.1f} s\n")
    if not result.success:
        for ev in result.all_events:
            if ev.is_step_failure:
                print(f"step {ev.step_key} failed: {ev.event_specific_data.error.message.strip()[:2000]}")
        return 1
    summary(s)
    return 0


def cmd_status(args) -> int:
    st = collect_status()
    if args.json:
        print(json.dumps(st, indent=2, default=str))
    else:
        print_status(st)
    return 0


def _champion_job(job: str, op: str, args) -> int:
    from dagster import DagsterInstance

    from stockml_assets.definitions import defs

    init_home()
    with DagsterInstance.get() as instance:
        result = defs.resolve_job_def(job).execute_in_process(
            instance=instance, raise_on_error=False, tags={"stockml/trigger": "manual"},
            run_config={"ops": {op: {"config": {"version": args.version, "reason": args.reason, "actor": args.actor}}}})
    what = "rollback" if job == "rollback_job" else "override"
    if not result.success:
        for ev in result.all_events:
            if ev.is_step_failure:
                print(f"{what} failed: {ev.event_specific_data.error.message.strip()[:500]}")
    print(f"{what} to {args.version}: {'done' if result.success else 'FAILED (the champion is unchanged)'}")
    return 0 if result.success else 1


def cmd_rollback(args) -> int:
    return _champion_job("rollback_job", "rollback_champion", args)


def cmd_override(args) -> int:
    return _champion_job("override_job", "override_champion", args)


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
    ov = sub.add_parser("override", help="make a registered version champion by hand, bypassing the gate "
                        "(through Dagster; the reason is recorded)")
    ov.add_argument("version")
    ov.add_argument("--reason", required=True)
    ov.add_argument("--actor", default=os.environ.get("USER", "operator"))
    args = parser.parse_args(argv)
    if args.command == "init-home":
        print(init_home())
        return 0
    return {"run": cmd_run, "status": cmd_status, "rollback": cmd_rollback, "override": cmd_override}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
