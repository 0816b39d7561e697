"""Autonomy on the real sample (issue 5): a one-year ``stockml replay`` against its time target.

``stockml replay`` of one year on the default universe with the default models, through the real
Dagster definitions (daily partitions, sensors each day, triggered retrains, the gate). Target: under
15 minutes on 2 cores. The report's triggers, retrains and crash-onset detection delays are printed.
The retraining-policy targets over the whole sample (every crash onset detected within 5 trading
days; at most one drift retrain per 250 quiet days) are measured by ``benchmarks/drift_policy.py``,
which replays the same drift score and sensor policy code over all 7,023 trading days.

    .venv/bin/python benchmarks/autonomy.py --start 2015-01-02 --end 2015-12-31 --out /tmp/replay-2015
"""

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET_MINUTES = 15


def replay_year(start: str, end: str, out: Path) -> int:
    from stockml_assets.simulation import replay

    t0 = time.perf_counter()
    report = replay(start, end, out, log=lambda m: print(m, flush=True))
    minutes = (time.perf_counter() - t0) / 60
    print(json.dumps(report.get("timing", {}), indent=2))
    print(
        f"\nreplay {report['start']}..{report['end']} ({report['trading_days']} trading days, default universe and "
        f"models): {minutes:.1f} min (target < {TARGET_MINUTES} min): {'met' if minutes < TARGET_MINUTES else 'MISSED'}"
    )
    print(f"triggers {len(report['triggers'])}, retrains {len(report['retrains'])}, events captured {len(report['events_captured'])}")
    for sh in report["shifts"]:
        print(f"  onset {sh['onset']}: detected {sh['detected']} (delay {sh['delay_days']} trading days)")
    return 0 if minutes < TARGET_MINUTES else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--start", default="2015-01-02")
    p.add_argument("--end", default="2015-12-31")
    p.add_argument("--out", default="/tmp/stockml-replay")
    a = p.parse_args()
    return replay_year(a.start, a.end, Path(a.out))


if __name__ == "__main__":
    sys.exit(main())
