"""Run a job in this process without keeping every step's output in memory.

``JobDefinition.execute_in_process`` captures each step's output value in the result it returns
(``output_for_node``): in a history run that is every asset's DataFrame at once, the whole feature
matrix and the training set among them (a gigabyte each at 258 tickers, 13 GB of features at 3,000
names x 20 years), alive until the run ends although every asset is already in the warehouse. The
CLI, the replay and the benchmarks never read those values; ``execute`` runs the same ephemeral job
through the same Dagster machinery with output capture off, so a step's frames are freed once the
next steps have loaded what they need. Same events, same run record, same ``ExecuteInProcessResult``
(its ``output_for_node`` is empty), except that the run carries the project's code-location origin
(``project_job_origin``), so the UI lists it on the Overview, its job's page and its assets' pages.

It mirrors ``JobDefinition.execute_in_process`` of the pinned Dagster (1.13) and uses its helpers;
``tests/test_execution.py`` checks that a run through it equals one through ``execute_in_process``
on its events and stored tables, so a Dagster upgrade that changes them fails a test, not a run.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping, Sequence
from functools import cache

from dagster import AssetKey, DagsterInstance, JobDefinition
from dagster._core.definitions.job_base import InMemoryJob
from dagster._core.definitions.partitions.context import partition_loading_context
from dagster._core.execution.api import ExecuteRunWithPlanIterable, create_execution_plan, job_execution_iterator
from dagster._core.execution.context_creation_job import PlanOrchestrationContextManager, orchestration_context_event_generator
from dagster._core.execution.execute_in_process import merge_run_tags, type_check_and_normalize_args
from dagster._core.execution.execute_in_process_result import ExecuteInProcessResult

from stockml_assets.tags import HOST_TAG, PID_TAG, STARTED_TAG
from stockml_core.settings import PROJECT_ROOT

DEFINITIONS_MODULE = "stockml_assets.definitions"  # what workspace.yaml loads
WORKSPACE_FILE = "workspace.yaml"


@cache
def location_name() -> str:
    """The code location's name in the project's workspace.yaml (what `make ui` serves), "stockml" without one."""
    import yaml

    try:
        entries = yaml.safe_load((PROJECT_ROOT / WORKSPACE_FILE).read_text())["load_from"]
        return next(e["python_module"]["location_name"] for e in entries if e.get("python_module", {}).get("module_name") == DEFINITIONS_MODULE)
    except (OSError, KeyError, TypeError, StopIteration):
        return "stockml"


def project_job_origin(job_name: str):
    """The origin of ``job_name`` in the project's code location, as the webserver and the daemon know it.

    A run executed in-process (the CLI, the replay, the tests) has no origin by default: the UI then shows
    it under /runs only, neither on the Overview timeline nor on its job's and assets' pages, which select
    runs by their code location (the ``.dagster/repository`` tag this origin gives them).
    """
    from dagster._core.definitions.definitions_class import SINGLETON_REPOSITORY_NAME
    from dagster._core.remote_origin import ManagedGrpcPythonEnvCodeLocationOrigin, RemoteRepositoryOrigin
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

    target = LoadableTargetOrigin(executable_path=sys.executable, module_name=DEFINITIONS_MODULE, working_directory=str(PROJECT_ROOT))
    location = ManagedGrpcPythonEnvCodeLocationOrigin(loadable_target_origin=target, location_name=location_name())
    return RemoteRepositoryOrigin(location, SINGLETON_REPOSITORY_NAME).get_job_origin(job_name)


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux ``/proc/PID/stat``), None if it does not exist.
    Together with the pid it names one process: a pid the kernel reused has another start time."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def process_tags() -> dict[str, str]:
    """Tags naming the process that executes a run in-process (so a later run can tell it died)."""
    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname(), STARTED_TAG: _process_start(os.getpid()) or ""}


def recover_dead_runs(instance: DagsterInstance, say=None) -> list[str]:
    """Mark failed the in-process runs this host started whose process is gone, and free their pool slots.

    A run executed in-process (``stockml run``, ``backfill``, ``replay``, a test) that is killed with
    SIGKILL, or dies with its machine, stays STARTED in the run storage and keeps the ``duckdb_writer``
    pool slot its step had claimed: every later run then waits for that slot forever. Such a run is
    recognised by its tags (``process_tags``): on this host, its process no longer exists (or the pid
    now belongs to a process started at another time). Returns the run ids recovered; ``say`` gets one
    line each (default: stderr).
    """
    from dagster import DagsterRunStatus, RunsFilter

    say = say or (lambda line: print(line, file=sys.stderr))
    active = [DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]
    recovered = []
    for run in instance.get_runs(RunsFilter(statuses=active, tags={HOST_TAG: socket.gethostname()})):
        pid = int(run.tags.get(PID_TAG, "0") or 0)
        if not pid or pid == os.getpid():
            continue
        start = _process_start(pid)
        if start is not None and start == run.tags.get(STARTED_TAG, start):
            continue  # still running
        instance.report_run_failed(
            run,
            f"the process that ran it (pid {pid}) is gone: killed or crashed before the run "
            "ended. Marked failed by a later run, which freed its pool slots; nothing it had "
            "not finished was stored, and a rerun of the same job picks up from the data.",
        )
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        recovered.append(run.run_id)
        say(
            f"recovered: {run.job_name} run {run.run_id} (pid {pid}) was left {run.status.value} by a process that is "
            "gone; marked failed, its pool slots freed"
        )
    return recovered


def execute(
    job: JobDefinition,
    instance: DagsterInstance,
    *,
    asset_selection: Sequence[AssetKey] | None = None,
    partition_key: str | None = None,
    tags: Mapping[str, str] | None = None,
    run_config: Mapping | None = None,
    raise_on_error: bool = False,
) -> ExecuteInProcessResult:
    """``job.execute_in_process(...)`` with the same arguments, keeping no output values.

    First recovers the runs a killed process left behind (``recover_dead_runs``); the run carries the
    tags of this process, so a later run can recover it in turn."""
    recover_dead_runs(instance)
    tags = {**(tags or {}), **process_tags()}
    run_config, op_selection, asset_selection, resource_defs, partition_key, input_values = type_check_and_normalize_args(
        run_config=run_config, partition_key=partition_key, op_selection=None, asset_selection=asset_selection, input_values=None, resources=None
    )
    ephemeral = job.as_ephemeral_job(
        resource_defs=resource_defs, input_values=input_values, op_selection=op_selection, asset_selection=asset_selection
    )
    if partition_key and ephemeral.partitions_def:
        with partition_loading_context(dynamic_partitions_store=instance) as ctx:
            ephemeral.validate_partition_key(partition_key=partition_key, selected_asset_keys=set(asset_selection), context=ctx)
    if not run_config and ephemeral.partitioned_config and partition_key:
        run_config = ephemeral.partitioned_config.get_run_config_for_partition_key(partition_key)
    run_tags = merge_run_tags(
        job_def=job, partition_key=partition_key, tags=tags, asset_selection=asset_selection, instance=instance, run_config=run_config
    )
    # Dagster's core_execute_in_process, with the run created under the project's code-location origin.
    in_memory = InMemoryJob(job_def=ephemeral)
    plan = create_execution_plan(in_memory, run_config=run_config, instance_ref=instance.get_ref() if instance.is_persistent else None)
    run = instance.create_run_for_job(
        job_def=ephemeral,
        run_config=run_config,
        tags={**ephemeral.run_tags, **run_tags},
        asset_selection=frozenset(asset_selection),
        execution_plan=plan,
        remote_job_origin=project_job_origin(job.name),
    )
    events = list(
        ExecuteRunWithPlanIterable(
            execution_plan=plan,
            iterator=job_execution_iterator,
            execution_context_manager=PlanOrchestrationContextManager(
                context_event_generator=orchestration_context_event_generator,
                job=in_memory,
                execution_plan=plan,
                dagster_run=run,
                instance=instance,
                run_config=run_config,
                executor_defs=None,
                output_capture=None,
                raise_on_error=raise_on_error,
            ),
        )
    )
    return ExecuteInProcessResult(job_def=ephemeral, event_list=events, dagster_run=instance.get_run_by_id(run.run_id), output_capture={})
