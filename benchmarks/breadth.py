"""Breadth budget: ``stockml run``, one retraining cycle and one daily run on a real universe, per step.

    .venv/bin/python benchmarks/breadth.py [--data data/us-broad] [--home DIR]

Runs exactly what the commands run (the project's definitions, in one process, through Dagster) in a
fresh STOCKML_HOME / DAGSTER_HOME: the history run and the daily run of ``stockml run``, then one
``retraining_job`` (the weekly cycle: labels, archive, training, evaluation, SHAP and the gate) and one
more daily run. Prints, per run and per step, the wall seconds and the peak resident memory reached
during the step (sampled every 50 ms), with the process's CPU seconds and the machine's load, and the
targets of the breadth issue beside them: ``stockml run`` <= 10 min and <= 6 GiB, a retraining cycle
<= 5 min, a daily run <= 10 s.
"""

import argparse
import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

from stockml_assets.tags import TRIGGER_TAG

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

GIB = 1024**3


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class StepMemory(logging.Handler):
    """Tracks the step being run (from Dagster's STEP_START events) and the peak RSS reached in it."""

    def __init__(self) -> None:
        super().__init__()
        self.step = "(setup)"
        self.peak: dict[str, int] = {}
        self.started: dict[str, float] = {}
        self.seconds: dict[str, float] = {}
        self.at_start: dict[str, int] = {}  # resident memory when the step started (what earlier steps left)
        self._stop = threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()

    def emit(self, record: logging.LogRecord) -> None:
        meta = getattr(record, "dagster_meta", None) or {}
        event = meta.get("dagster_event")
        kind = getattr(event, "event_type_value", None)
        step = meta.get("step_key")
        if kind == "STEP_START" and step:
            self.step = step
            self.started[step] = time.perf_counter()
            self.at_start[step] = rss()
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE") and step in self.started:
            self.seconds[step] = time.perf_counter() - self.started[step]

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self.peak[self.step] = max(self.peak.get(self.step, 0), rss())

    def reset(self) -> None:
        self.peak, self.started, self.seconds, self.at_start, self.step = {}, {}, {}, {}, "(setup)"


def report(name: str, wall: float, cpu: float, mem: StepMemory, target_s: float, target_gib: float | None) -> None:
    peak = max(mem.peak.values(), default=rss())
    ok = wall <= target_s and (target_gib is None or peak <= target_gib * GIB)
    print(
        f"\n{name}: {wall:.1f} s wall, {cpu:.1f} s CPU, peak {peak / GIB:.2f} GiB (target <= {target_s:.0f} s"
        + (f", <= {target_gib:g} GiB" if target_gib else "")
        + f"): {'met' if ok else 'NOT met'}"
    )
    for step, sec in sorted(mem.seconds.items(), key=lambda kv: -kv[1]):
        if sec >= 0.5:
            print(f"  {step:44s} {sec:8.1f} s  peak {mem.peak.get(step, 0) / GIB:6.2f} GiB")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "us-broad")
    ap.add_argument("--home", type=Path, default=None, help="runtime state folder (default: a new temporary one)")
    a = ap.parse_args()
    base = a.home or Path(tempfile.mkdtemp(prefix="stockml-breadth-"))
    os.environ.update(
        {
            "STOCKML_DATA_DIR": str(a.data.resolve()),
            "STOCKML_HOME": str(base / "home"),
            "DAGSTER_HOME": str(base / "dagster_home"),
            "STOCKML_AUTOMATION": "off",
        }
    )
    from dagster import DagsterInstance

    from stockml_assets.cli import init_home
    from stockml_assets.definitions import defs
    from stockml_assets.execution import execute
    from stockml_assets.runs import data_span, failure_messages, run_daily, run_history
    from stockml_core.settings import Settings

    init_home()
    mem = StepMemory()
    logging.getLogger("stockml.progress").addHandler(mem)  # the run's progress logger sees every event
    first, last = data_span(Settings())
    print(f"{a.data}: {first:%Y-%m-%d}..{last:%Y-%m-%d}; state in {base}; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs", flush=True)
    progress = {"loggers": {"progress": {}}}
    with DagsterInstance.get() as instance:

        def timed(name, fn, target_s, target_gib=None):
            mem.reset()
            c0, t0 = os.times(), time.perf_counter()
            result = fn()
            c1 = os.times()
            if not result.success:
                print(f"{name} FAILED: {failure_messages(result)}")
                raise SystemExit(1)
            report(name, time.perf_counter() - t0, (c1.user - c0.user) + (c1.system - c0.system), mem, target_s, target_gib)
            return result

        t0, c0 = time.perf_counter(), os.times()
        timed("history run", lambda: run_history(defs, instance, first, last, run_config=progress), 600)
        timed("daily run (stockml run's second)", lambda: run_daily(defs, instance, last, run_config=progress), 10)
        c1 = os.times()
        total = time.perf_counter() - t0
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(
            f"\nstockml run (history + daily): {total:.1f} s wall, {(c1.user - c0.user) + (c1.system - c0.system):.1f} s CPU, "
            f"peak {peak / GIB:.2f} GiB (targets <= 600 s, <= 6 GiB): "
            f"{'met' if total <= 600 and peak <= 6 * GIB else 'NOT met'}; load average {os.getloadavg()[0]:.2f}"
        )
        timed(
            "retraining cycle (retraining_job)",
            lambda: execute(defs.resolve_job_def("retraining_job"), instance, tags={TRIGGER_TAG: "scheduled"}, run_config=progress),
            300,
        )
        timed("daily run (after the retrain)", lambda: run_daily(defs, instance, last, run_config=progress), 10)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
