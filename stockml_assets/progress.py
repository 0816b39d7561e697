"""A Dagster logger that prints one line per finished step: what `stockml run` shows while it works."""

import functools
import logging
import sys

from dagster import Field, logger

from stockml_assets.assets import ASSETS

_SHOWN = {"STEP_SUCCESS": "ok", "STEP_FAILURE": "FAILED", "ASSET_CHECK_EVALUATION": None}


class _ProgressHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        meta = getattr(record, "dagster_meta", None) or {}
        event = meta.get("dagster_event")
        kind = getattr(event, "event_type_value", None)
        message = str(meta.get("orig_message") or "")
        if event is None and message.startswith("progress: "):  # a long step's own progress (per fold)
            print(f"          {meta.get('step_key') or ''}: {message[len('progress: ') :]}", flush=True)
            return
        if kind not in _SHOWN:
            return
        if kind == "ASSET_CHECK_EVALUATION":
            data = event.event_specific_data
            if not data.passed:
                meta_ = data.metadata or {}
                why = meta_.get("summary")
                sev = getattr(getattr(data, "severity", None), "value", "ERROR")
                print(
                    f"  check {data.asset_check_key.name} on {data.asset_key.to_user_string()}: "
                    f"{'WARN' if sev == 'WARN' else 'FAILED'}{': ' + str(why.value)[:600] if why is not None else ''}",
                    file=sys.stderr,
                )
            return
        step = meta.get("step_key") or event.step_key
        if step and (kind == "STEP_FAILURE" or step in _asset_steps()):
            print(f"  {_SHOWN[kind]:>6}  {_asset_steps().get(step, step)}", flush=True)


@functools.cache  # called for every log record of a run: compute the names once
def _asset_steps() -> dict[str, str]:
    """Asset step -> what to print: its name, and for a multi-asset step the assets it writes."""
    return {
        a.op.name: a.op.name if len(a.keys) == 1 else f"{a.op.name} ({', '.join(k.path[-1] for k in sorted(a.keys, key=lambda k: k.path))})"
        for a in ASSETS
    }


@logger(
    config_schema={"log_level": Field(str, is_required=False, default_value="DEBUG")},
    description="One line per finished asset step, failed checks on stderr.",
)
def progress_logger(init_context) -> logging.Logger:
    log = logging.getLogger("stockml.progress")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    if not any(isinstance(h, _ProgressHandler) for h in log.handlers):
        log.addHandler(_ProgressHandler())
    return log
