"""Run a job in this process without keeping every step's output in memory.

``JobDefinition.execute_in_process`` captures each step's output value in the result it returns
(``output_for_node``): in a history run that is every asset's DataFrame at once, the whole feature
matrix and the training set among them (a gigabyte each at 258 tickers, 13 GB of features at 3,000
names x 20 years), alive until the run ends although every asset is already in the warehouse. The
CLI, the replay and the benchmarks never read those values; ``execute`` runs the same ephemeral job
through the same Dagster machinery with output capture off, so a step's frames are freed once the
next steps have loaded what they need. Same events, same run record, same ``ExecuteInProcessResult``
(its ``output_for_node`` is empty).

It mirrors ``JobDefinition.execute_in_process`` of the pinned Dagster (1.13) and uses its helpers;
``tests/test_execution.py`` checks that a run through it equals one through ``execute_in_process``
on its events and stored tables, so a Dagster upgrade that changes them fails a test, not a run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from dagster import AssetKey, DagsterInstance, JobDefinition
from dagster._core.definitions.job_base import InMemoryJob
from dagster._core.definitions.partitions.context import partition_loading_context
from dagster._core.execution.execute_in_process import core_execute_in_process, merge_run_tags, type_check_and_normalize_args
from dagster._core.execution.execute_in_process_result import ExecuteInProcessResult


def execute(job: JobDefinition, instance: DagsterInstance, *, asset_selection: Sequence[AssetKey] | None = None,
            partition_key: str | None = None, tags: Mapping[str, str] | None = None,
            run_config: Mapping | None = None, raise_on_error: bool = False) -> ExecuteInProcessResult:
    """``job.execute_in_process(...)`` with the same arguments, keeping no output values."""
    run_config, op_selection, asset_selection, resource_defs, partition_key, input_values = type_check_and_normalize_args(
        run_config=run_config, partition_key=partition_key, op_selection=None, asset_selection=asset_selection,
        input_values=None, resources=None)
    ephemeral = job.as_ephemeral_job(resource_defs=resource_defs, input_values=input_values,
                                     op_selection=op_selection, asset_selection=asset_selection)
    if partition_key and ephemeral.partitions_def:
        with partition_loading_context(dynamic_partitions_store=instance) as ctx:
            ephemeral.validate_partition_key(partition_key=partition_key, selected_asset_keys=set(asset_selection),
                                             context=ctx)
    if not run_config and ephemeral.partitioned_config and partition_key:
        run_config = ephemeral.partitioned_config.get_run_config_for_partition_key(partition_key)
    return core_execute_in_process(
        job=InMemoryJob(job_def=ephemeral), run_config=run_config, instance=instance,
        output_capturing_enabled=False, raise_on_error=raise_on_error,
        run_tags=merge_run_tags(job_def=job, partition_key=partition_key, tags=tags, asset_selection=asset_selection,
                                instance=instance, run_config=run_config),
        asset_selection=frozenset(asset_selection))
