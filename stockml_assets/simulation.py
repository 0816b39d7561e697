"""A replay of history day by day (``stockml replay``): the daemon's work with a simulated clock.

``replay`` plays a data folder's history through the real Dagster definitions against a fresh
instance and warehouse: each trading day the daily job runs for that day's partition, then the
sensors are evaluated exactly as the daemon would (same code, same cursors), and every run they
request is executed, so the gate decides as it would in production. Nothing is mocked; the clock
is the only simulated thing.
"""

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from dagster import DagsterInstance, Definitions, build_sensor_context

from stockml_assets.execution import execute
from stockml_assets.partitions import day_keys
from stockml_assets.runs import QUIET, data_span, failure_messages, local_instance, run_daily, run_history
from stockml_assets.tags import CAPTURE_TAG, DRIFT_SCORE_TAG, NEW_EVENTS_TAG, REASON_TAG, REPLAY_TAG, trigger_of
from stockml_core.decisions.drift import crash_onsets
from stockml_core.market import data as core_data
from stockml_core.settings import Settings

REPLAY_SENSORS = ("drift_sensor", "rare_event_capture_sensor", "new_rare_event_sensor")


def _finite(v) -> float | None:
    """A number for the JSON report (None where it is NaN: a criterion without evidence)."""
    v = float(v)
    return v if v == v else None


def evaluate_sensors(defs: Definitions, instance: DagsterInstance, cursors: dict, names=REPLAY_SENSORS) -> list[tuple]:
    """Evaluate sensors as one daemon tick would: (sensor name, RunRequest) for every run they request."""
    requests = []
    for name in names:
        sensor = defs.resolve_sensor_def(name)
        # Closed after the tick: an open context leaves its instance set as the process's current one
        # (Dagster's defs-state context), and a later definitions load in this process would meet it disposed.
        with build_sensor_context(
            instance=instance, cursor=cursors.get(name), definitions=defs, sensor_name=name, resources={"stockml": defs.resources["stockml"]}
        ) as ctx:
            data = sensor.evaluate_tick(ctx)
        if data.cursor is not None:
            cursors[name] = data.cursor
        requests.extend((name, rr) for rr in data.run_requests or [])
    return requests


def _scores(instance: DagsterInstance, day: str) -> float | None:
    from dagster import AssetKey

    ev = instance.get_latest_materialization_event(AssetKey("drift_report"))
    meta = ev.asset_materialization.metadata if ev and ev.asset_materialization else {}
    scores = meta["daily_scores"].value if "daily_scores" in meta else {}
    return scores.get(day)


REPLAY_MARKER = ".stockml-replay"  # written into every replay home: only such a folder is ever wiped


def replay_dates(start: str, end: str) -> tuple[str, str]:
    """``start`` and ``end`` as ISO dates (YYYY-MM-DD), start <= end; ValueError naming the bad argument."""
    parsed = []
    for name, value in (("--start", start), ("--end", end)):
        text = str(value).strip()
        try:
            day = pd.Timestamp(text) if len(text) == 10 and text[4] == "-" and text[7] == "-" else None
        except ValueError:
            day = None
        if day is None or pd.isna(day):
            raise ValueError(f"{name} {value!r} is not a date in the form YYYY-MM-DD")
        parsed.append(day)
    if parsed[0] > parsed[1]:
        raise ValueError(f"--start {start} is after --end {end}")
    return parsed[0].strftime("%Y-%m-%d"), parsed[1].strftime("%Y-%m-%d")


def reset_replay_home(home: Path) -> None:
    """Empty ``home`` for a new replay; refuse, deleting nothing, a folder that is not a replay's own.

    A replay wipes its home (its warehouse, registry and Dagster instance) before it starts. Only a folder
    that does not exist, is empty, or carries the marker a replay writes is ever removed, so a mistyped
    ``--home`` or a path outside the project's state can never lose anyone's files.
    """
    home = Path(home)
    if home.is_symlink():
        raise ValueError(f"replay home {home} is a symbolic link: refused (nothing deleted)")
    if home.exists():
        if not home.is_dir():
            raise ValueError(f"replay home {home} is a file, not a replay's folder: refused (nothing deleted)")
        if any(home.iterdir()) and not (home / REPLAY_MARKER).is_file():
            raise ValueError(
                f"replay home {home} holds files and no {REPLAY_MARKER} marker: it is not a replay's "
                "own folder, so nothing was deleted; choose an empty or new folder"
            )
        shutil.rmtree(home)
    (home / "dagster").mkdir(parents=True)
    (home / REPLAY_MARKER).write_text("a StockML replay's state: wiped by the next replay of these dates\n")


def replay(
    start: str,
    end: str,
    out: Path,
    *,
    data_dir: Path | None = None,
    home: Path | None = None,
    initial_model: str = "train",
    log: Callable[[str], None] = print,
    **resource_config,
) -> dict:
    """Play [start, end] day by day through the real definitions; write report.json and report.md to ``out``.

    ``home`` (default ``$STOCKML_HOME/replays/START_END``) is wiped and holds the replay's own warehouse,
    model registry and Dagster instance. ``initial_model``: "train" trains a champion on the data
    before ``start`` (through the gate), "none" starts without one.
    """
    from stockml_assets.definitions import build_definitions
    from stockml_core.settings import data_dir_from_env, home_from_env

    t_all = time.perf_counter()
    start, end = replay_dates(start, end)  # every argument is checked before anything on disk is touched
    out = Path(out)
    data_dir = Path(data_dir) if data_dir else data_dir_from_env()
    home = Path(home) if home else home_from_env() / "replays" / f"{start}_{end}"
    reset_replay_home(home)
    out.mkdir(parents=True, exist_ok=True)
    defs = build_definitions(data_dir=data_dir, home=home / "state", **resource_config)
    settings = defs.resources["stockml"].settings()
    first, last = data_span(settings)
    days = [d for d in day_keys(max(pd.Timestamp(start), first), min(pd.Timestamp(end), last))]
    if not days:
        raise ValueError(f"no trading day with data between {start} and {end} (data: {first:%Y-%m-%d}..{last:%Y-%m-%d})")
    before = [d for d in day_keys(first, days[0]) if d < days[0]]
    if not before:
        raise ValueError(f"no data before {days[0]}: the replay needs history for features, drift and the first model")
    report: dict = {
        "start": days[0],
        "end": days[-1],
        "data_dir": str(data_dir),
        "home": str(home),
        "trading_days": len(days),
        "initial_model": None,
        "triggers": [],
        "retrains": [],
        "events_captured": [],
        "shifts": [],
        "failed_runs": [],
        "drift_scores": {},
    }
    # The replay's warehouse is its own: hold it open for the whole replay (stockml_core.storage.warehouse.held).
    with local_instance(home / "dagster") as instance, defs.resources["stockml"].warehouse().held():
        t0 = time.perf_counter()
        log(f"history {before[0]}..{before[-1]} ({len(before)} trading days), initial model: {initial_model}")
        res = run_history(defs, instance, before[0], before[-1], train=initial_model == "train", run_config=QUIET)
        if not res.success:
            raise RuntimeError("the history run before --start failed: " + "; ".join(failure_messages(res)))
        champion = defs.resources["stockml"].registry().champion()
        report["initial_model"] = {
            "trained_on": f"{before[0]}..{before[-1]}",
            "seconds": round(time.perf_counter() - t0, 1),
            "champion": champion.version if champion else None,
        }
        cursors: dict = {}
        evaluate_sensors(defs, instance, cursors)  # baseline ticks: the sensors see the history as already known
        seen_keys: set[str] = set()
        daily_seconds = []
        for i, day in enumerate(days):
            t = time.perf_counter()
            res = run_daily(defs, instance, day, tags={REPLAY_TAG: "1"}, run_config=QUIET)
            daily_seconds.append(time.perf_counter() - t)
            if not res.success:
                report["failed_runs"].append({"date": day, "job": "daily_job", "errors": failure_messages(res)})
                log(f"{day}: daily run FAILED")
                continue
            score = _scores(instance, day)
            report["drift_scores"][day] = score
            for sensor_name, rr in evaluate_sensors(defs, instance, cursors):
                if rr.run_key in seen_keys:
                    continue
                seen_keys.add(rr.run_key)
                tags = dict(rr.tags)
                trigger = trigger_of(tags)
                report["triggers"].append(
                    {
                        "date": day,
                        "sensor": sensor_name,
                        "trigger": trigger,
                        "run_key": rr.run_key,
                        "reason": tags.get(REASON_TAG) or tags.get(NEW_EVENTS_TAG, ""),
                        "score": float(tags[DRIFT_SCORE_TAG]) if DRIFT_SCORE_TAG in tags else score,
                    }
                )
                log(f"{day}: {sensor_name} -> retraining ({rr.run_key})")
                t = time.perf_counter()
                job = defs.resolve_job_def(rr.job_name or "retraining_job")
                run = execute(job, instance, run_config=QUIET, tags={**tags, "dagster/run_key": rr.run_key})
                retrain = {
                    "date": day,
                    "trigger": trigger,
                    "run_key": rr.run_key,
                    "run_id": run.run_id,
                    "seconds": round(time.perf_counter() - t, 1),
                    "promoted": False,
                    "candidate_version": None,
                }
                if run.success:
                    decision = defs.resources["stockml"].asset_tables().table("promotion_decision")
                    by_name = decision.set_index("name")
                    retrain.update(
                        promoted=bool(decision.promoted.iloc[0]),
                        candidate_version=str(decision.candidate_version.iloc[0]),
                        failed=[str(n) for n in decision.name[~decision.passed.astype(bool)]],
                        evidence={
                            n: {"value": _finite(by_name.value[n]), "threshold": _finite(by_name.threshold[n]), "outcome": str(by_name.outcome[n])}
                            for n in by_name.index
                        },
                    )
                else:
                    from stockml_assets.sensors import record_failed_cycle

                    errors = failure_messages(run)
                    record_failed_cycle(defs.resources["stockml"], run.run_id, trigger, "; ".join(errors)[:2000])
                    retrain["error"] = "; ".join(errors)[:2000]
                report["retrains"].append(retrain)
                if CAPTURE_TAG in tags and run.success:
                    ev = json.loads(tags[CAPTURE_TAG])
                    report["events_captured"].append({"name": ev["name"], "start": ev["start"], "end": ev["end"], "captured_on": day})
            if (i + 1) % 20 == 0:
                log(f"{day}: {i + 1}/{len(days)} days, {len(report['retrains'])} retrains")
        report["shifts"] = detection_delays(settings, days, report["triggers"])
        report["timing"] = {
            "total_seconds": round(time.perf_counter() - t_all, 1),
            "daily_run_seconds_median": round(float(pd.Series(daily_seconds).median()), 2),
            "daily_run_seconds_max": round(float(max(daily_seconds)), 2),
            "retrain_seconds_total": round(sum(r["seconds"] for r in report["retrains"]), 1),
        }
    write_report(report, out)
    return report


def detection_delays(settings: Settings, days: list[str], triggers: list[dict]) -> list[dict]:
    """For each crash onset in the replayed days: the first drift trigger on or after it, and the delay in trading days."""
    market, _ = core_data.load_market(settings.data_dir, None, days[-1])
    index = {d: i for i, d in enumerate(days)}
    drift_days = sorted(t["date"] for t in triggers if t["trigger"] == "drift")
    out = []
    for onset in crash_onsets(market):
        key = f"{onset:%Y-%m-%d}"
        if key not in index:
            continue
        detected = next((d for d in drift_days if d >= key), None)
        out.append({"onset": key, "detected": detected, "delay_days": index[detected] - index[key] if detected else None})
    return out


def write_report(report: dict, out: Path) -> None:
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str))
    lines = [
        f"# StockML replay {report['start']} .. {report['end']}",
        "",
        f"- data: `{report['data_dir']}`; state: `{report['home']}`",
        f"- trading days replayed: {report['trading_days']}; failed runs: {len(report['failed_runs'])}",
        f"- initial model: {report['initial_model']}",
        f"- time: {report.get('timing', {})}",
        "",
        "## Triggers",
        "",
    ]
    lines += _md(report["triggers"], ["date", "sensor", "trigger", "score", "reason"])
    lines += ["", "## Retrains", ""] + _md(report["retrains"], ["date", "trigger", "promoted", "candidate_version", "failed", "seconds"])
    lines += ["", "## Events captured", ""] + _md(report["events_captured"], ["name", "start", "end", "captured_on"])
    lines += ["", "## Regime shifts (crash onsets) and detection delay", ""] + _md(report["shifts"], ["onset", "detected", "delay_days"])
    (out / "report.md").write_text("\n".join(lines) + "\n")


def _md(rows: list[dict], cols: list[str]) -> list[str]:
    if not rows:
        return ["_(none)_"]
    return [pd.DataFrame(rows).reindex(columns=cols).to_markdown(index=False)]
