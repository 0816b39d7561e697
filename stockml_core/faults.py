"""Named fault-injection points, so tests can kill a real run exactly where a kill -9 is hardest to survive.

A test runs ``stockml run`` with ``STOCKML_FAILPOINT=<point>``; the process then sends itself SIGKILL when it
reaches that point (no cleanup, no ``finally``: what ``kill -9`` or a lost machine does). Unset, which is
always the case outside the fault tests, a point costs one environment lookup. The points:

- ``ingestion``: ``raw_prices`` has screened the rows and not stored them;
- ``features``: ``feature_matrix`` is inside its storing transaction, one block of rows written;
- ``training``: a base model has its out-of-fold probabilities and not its final fit;
- ``registry_write``: the registry committed a new version's row and has not renamed its artefact into place;
- ``gate``: ``promotion_decision`` is stored and ``production_model`` has not applied it.
"""

from __future__ import annotations

import os
import signal

FAILPOINT_ENV = "STOCKML_FAILPOINT"
POINTS = ("ingestion", "features", "training", "registry_write", "gate")


def failpoint(name: str) -> None:
    """SIGKILL this process if ``STOCKML_FAILPOINT`` names this point."""
    if name not in POINTS:
        raise ValueError(f"unknown failpoint {name!r}; known: {POINTS}")
    if os.environ.get(FAILPOINT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def process_alive(pid: int) -> bool:
    """Whether a process with this pid exists (one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


TEMP_PREFIX = ".tmp-"  # a temporary file is named .tmp-PID-<rest>: its writer's pid, then anything


def temp_prefix() -> str:
    """The prefix of this process's temporary files (``.tmp-PID-``), renamed into place once written."""
    return f"{TEMP_PREFIX}{os.getpid()}-"


def dead_writers_files(folder, suffix: str = "") -> list:
    """Temporary files in ``folder`` (``.tmp-PID-*suffix``) whose writer is gone: what a writer killed between
    writing a temporary file and renaming it left behind. A live writer's files, and this process's, are not."""
    found = []
    for path in sorted(folder.glob(f"{TEMP_PREFIX}*{suffix}")) if folder.exists() else []:
        pid = path.name[len(TEMP_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not process_alive(int(pid)):
            found.append(path)
    return found
