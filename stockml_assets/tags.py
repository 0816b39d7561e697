"""The run tags StockML sets and reads: one name each (the UI filters and the sensors read them).

| tag | set by | value |
|---|---|---|
| ``stockml/trigger`` | every entry point | manual, scheduled, drift, new_event (recorded with each promotion) |
| ``stockml/drift_score``, ``stockml/day``, ``stockml/reason`` | drift_sensor | the score and day that triggered, why |
| ``stockml/new_events`` | the rare-event sensors | the events a retrain catalogues |
| ``stockml/capture`` | rare_event_capture_sensor | JSON {name, start, end, description} of the captured event |
| ``stockml/replay`` | ``stockml replay`` | "1" on its daily runs |
| ``stockml/pid``, ``stockml/host``, ``stockml/process_start`` | in-process runs | who runs it (stockml_assets.execution) |
"""

TRIGGER_TAG = "stockml/trigger"
DRIFT_SCORE_TAG = "stockml/drift_score"
DAY_TAG = "stockml/day"
REASON_TAG = "stockml/reason"
NEW_EVENTS_TAG = "stockml/new_events"
CAPTURE_TAG = "stockml/capture"
REPLAY_TAG = "stockml/replay"
PID_TAG, HOST_TAG, STARTED_TAG = "stockml/pid", "stockml/host", "stockml/process_start"

# An asset tag (on the asset, not the run): the per-day monitoring assets (predictions, the drift tables, the
# rare-event watch). The ``monitoring`` group also holds the retraining cycle's records (DESIGN.md's
# graph), so the jobs select the daily work by this tag, not by the group; the UI filters on it too.
CADENCE_TAG = "stockml/cadence"
DAILY_MONITORING = {CADENCE_TAG: "daily"}


def trigger_of(tags) -> str:
    """What launched a run (``manual`` when no entry point said)."""
    return tags.get(TRIGGER_TAG, "manual")
