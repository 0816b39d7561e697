"""``stockml_assets.execution.execute``: execute_in_process's run, without holding every output in memory."""

import gc
import weakref

import numpy as np
import pytest
from dagster import (
    AssetSelection,
    DagsterInstance,
    DailyPartitionsDefinition,
    Definitions,
    IOManager,
    asset,
    define_asset_job,
    io_manager,
)
from dagster._core.errors import DagsterUnknownPartitionError

from stockml_assets.execution import execute

ALIVE: list = []  # weak references to every value the assets returned


class Big(np.ndarray):  # an ndarray subclass accepts weak references
    pass


class SummaryIO(IOManager):
    """Stores a value's sum, never the value (as the warehouse stores a frame's rows, not the object)."""

    stored: dict = {}

    def handle_output(self, context, obj):
        self.stored[context.asset_key.path[-1]] = float(obj.sum())

    def load_input(self, context):
        return np.full(10, self.stored[context.asset_key.path[-1]] / 10).view(Big)


@io_manager
def summary_io():
    return SummaryIO()


DAYS = DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-01-10")


@asset(partitions_def=DAYS)
def first_step() -> Big:
    out = np.ones(1_000_000).view(Big)
    ALIVE.append(weakref.ref(out))
    return out


@asset(partitions_def=DAYS)
def second_step(first_step: Big) -> Big:
    out = (first_step * 2).view(Big)
    ALIVE.append(weakref.ref(out))
    return out


DEFS = Definitions(
    assets=[first_step, second_step], resources={"io_manager": summary_io}, jobs=[define_asset_job("both", AssetSelection.all(), partitions_def=DAYS)]
)


def _run(runner):
    ALIVE.clear()
    SummaryIO.stored.clear()
    with DagsterInstance.ephemeral() as instance:
        result = runner(DEFS.resolve_job_def("both"), instance)
        events = [
            (e.event_type_value, e.step_key)
            for e in result.all_events
            if e.event_type_value in ("STEP_START", "STEP_SUCCESS", "ASSET_MATERIALIZATION", "HANDLED_OUTPUT")
        ]
        run = instance.get_run_by_id(result.run_id)
        gc.collect()
        alive = sum(r() is not None for r in ALIVE)
        return result, events, run, dict(SummaryIO.stored), alive


def test_execute_runs_what_execute_in_process_runs_and_frees_the_outputs():
    tags = {"stockml/trigger": "manual"}
    ref, ref_events, ref_run, ref_stored, ref_alive = _run(
        lambda job, inst: job.execute_in_process(instance=inst, partition_key="2024-01-03", tags=tags)
    )
    got, events, run, stored, alive = _run(lambda job, inst: execute(job, inst, partition_key="2024-01-03", tags=tags))
    assert ref.success and got.success
    assert events == ref_events and stored == ref_stored == {"first_step": 1e6, "second_step": 2e6}
    assert run.tags["dagster/partition"] == "2024-01-03" and run.tags["stockml/trigger"] == "manual"
    assert run.tags == ref_run.tags | {k: run.tags[k] for k in run.tags.keys() - ref_run.tags.keys()}
    assert ref_alive == 2  # execute_in_process keeps both outputs in its result ...
    assert alive == 0  # ... execute keeps none


def test_execute_takes_an_asset_selection_and_refuses_an_unknown_partition():
    with DagsterInstance.ephemeral() as instance:
        SummaryIO.stored.clear()
        got = execute(DEFS.resolve_job_def("both"), instance, partition_key="2024-01-04", asset_selection=[first_step.key])
        assert got.success and set(SummaryIO.stored) == {"first_step"}
        with pytest.raises(DagsterUnknownPartitionError):  # as execute_in_process does
            execute(DEFS.resolve_job_def("both"), instance, partition_key="2031-01-01")


def test_memory_release_collects_cycles_only_above_its_resident_threshold() -> None:
    import gc
    import weakref

    from stockml_assets import release_freed_memory, resident_bytes

    class Node:
        pass

    def cycle():
        a, b = Node(), Node()
        a.other, b.other = b, a
        return weakref.ref(a)

    gc.disable()
    try:
        ref = cycle()
        assert resident_bytes() > 0
        assert release_freed_memory(above=1 << 50) is False and ref() is not None  # a small process: no collection
        assert release_freed_memory(above=0) is True and ref() is None  # above the threshold: the cycle is freed
        ref = cycle()
        assert release_freed_memory(collect=False, above=0) is False and ref() is not None  # the daily job's trim
    finally:
        gc.enable()
