"""The project's event log stores a range run's per-partition materializations in one batch: what Dagster
reads back (records, partition status, the latest materialization, tags) equals storing them one by one."""

from dagster import (
    AssetKey,
    AssetSelection,
    BackfillPolicy,
    DagsterEventType,
    DailyPartitionsDefinition,
    Definitions,
    EventRecordsFilter,
    MaterializeResult,
    asset,
    define_asset_job,
)

from tests.conftest import make_instance

DAYS = DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-03-01")


@asset(partitions_def=DAYS, backfill_policy=BackfillPolicy.single_run())
def daily_thing(context) -> MaterializeResult:
    return MaterializeResult(metadata={"days": len(context.partition_keys)}, tags={"dagster/code_version": "1"})


@asset(deps=[daily_thing])
def summary() -> None:
    return None


JOB = define_asset_job("range_job", selection=AssetSelection.assets(daily_thing, summary))
DEFS = Definitions(assets=[daily_thing, summary], jobs=[JOB])


def _stored(instance, key: AssetKey) -> dict:
    records = instance.get_event_records(EventRecordsFilter(DagsterEventType.ASSET_MATERIALIZATION, asset_key=key), ascending=True)
    run_events = [e.dagster_event.event_type_value for e in instance.all_logs(records[0].run_id)]
    latest = instance.get_latest_materialization_event(key)
    return {
        "partitions": [r.partition_key for r in records],
        "run_events": run_events,
        "materialized": sorted(instance.get_materialized_partitions(key)),
        "latest": (latest.asset_materialization.partition, latest.run_id == records[0].run_id),
        "metadata": [sorted(r.asset_materialization.metadata) for r in records],
        "tags": [sorted(r.asset_materialization.tags) for r in records],  # data versions differ per run
        "asset_record_run": instance.get_asset_records([key])[0].asset_entry.last_run_id == records[0].run_id,
    }


def test_a_range_runs_events_stored_in_one_batch_read_back_as_one_by_one(tmp_path, monkeypatch) -> None:
    from stockml_assets.instance_storage import LocalEventLogStorage

    seen, calls = {}, []
    original = LocalEventLogStorage.store_event_batch
    monkeypatch.setattr(LocalEventLogStorage, "store_event_batch", lambda self, events: (calls.append(len(events)), original(self, events)))
    for name, batch in [("one_by_one", "0"), ("batched", "10000")]:
        monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", batch)
        instance = make_instance(tmp_path / name)
        calls.clear()
        result = DEFS.resolve_job_def("range_job").execute_in_process(
            instance=instance, tags={"dagster/asset_partition_range_start": "2024-01-01", "dagster/asset_partition_range_end": "2024-02-29"}
        )
        assert result.success
        seen[name] = {k: _stored(instance, AssetKey(k)) for k in ("daily_thing", "summary")}
        seen[name]["calls"] = sorted(calls)
        instance.dispose()
    assert seen["one_by_one"]["calls"] == [] and max(seen["batched"]["calls"]) == 60  # 60 days in one call
    for key in ("daily_thing", "summary"):
        assert seen["batched"][key] == seen["one_by_one"][key], key
    assert len(seen["batched"]["daily_thing"]["materialized"]) == 60
    assert seen["batched"]["daily_thing"]["latest"] == ("2024-02-29", True)
