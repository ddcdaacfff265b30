"""Upstream's conversation.json as rows: one per message the agents of a pair-run sent.

The file is a JSON list of {from, to, message, timestamp, feature_id}; a fork may add a
message type (`kind`, or `type`, also inside a structured `message` object). Text is
stored, so it is made valid UTF-8 (DuckDB refuses lone surrogates, which JSON allows) and
scrubbed of secrets like every other stored string. A malformed message is a
ResultFileError naming the file and the key ("[3].timestamp"); a missing file is no
messages (solo runs write none).
"""

import datetime as dt
import json
import math
import os
import re
from pathlib import Path
from typing import Any

import pandas as pd

from cb_assets.defs.runs.results import INT64_MAX, ResultFileError, read_json_file
from cb_assets.shared.secrets import scrub

EARLY_PLAN_SECONDS = 120  # a first message within this of the start: "plan shared early"
_SURROGATE = re.compile("[\ud800-\udfff]")
# pandas keeps nanoseconds in an int64: about 1677-09-22 to 2262-04-11
_MIN_EPOCH, _MAX_EPOCH = -9.2e9, 9.2e9

CONVERSATION_DTYPES = {
    "experiment": "string",
    "setting": "string",
    "repeat": "Int64",
    "arm": "string",
    "pair": "string",
    "message_index": "Int64",  # 0-based position in the file: the order upstream wrote
    "sender": "string",
    "recipient": "string",
    "feature_id": "Int64",
    "sent_at": "datetime64[ns, UTC]",
    "text": "string",
    "kind": "string",
}


def _stored(text: str) -> str:
    """`text` as it may be stored: lone surrogates as U+FFFD, secrets masked."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = _SURROGATE.sub("\ufffd", text)
    return scrub(text)


def _string(message: dict, key: str, path: Path, where: str) -> str | None:
    value = message.get(key)
    if value is not None and not isinstance(value, str):
        raise ResultFileError(path, f"invalid key '{where}.{key}': {value!r} is not a string")
    return None if value is None else _stored(value)


def _sent_at(message: dict, path: Path, where: str) -> pd.Timestamp | None:
    value = message.get("timestamp")
    if value is None:
        return None
    name = f"{where}.timestamp"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ResultFileError(path, f"invalid key '{name}': {value!r} is not an epoch number")
    if not (math.isfinite(value) and _MIN_EPOCH <= value <= _MAX_EPOCH):
        raise ResultFileError(path, f"invalid key '{name}': {value!r} is out of range for a date")
    # via datetime: rounded to the microsecond as Python rounds it, with no float noise
    # below that (upstream's time.time() has none to give)
    return pd.Timestamp(dt.datetime.fromtimestamp(value, dt.UTC))


def _feature_id(message: dict, path: Path, where: str) -> int | None:
    value = message.get("feature_id")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= INT64_MAX:
        raise ResultFileError(
            path, f"invalid key '{where}.feature_id': {value!r} is not a feature number"
        )
    return value


def _text_and_kind(message: dict, path: Path, where: str) -> tuple[str | None, str | None]:
    """The text, and the fork's message type when it has one: `kind`, else `type`, else
    the `type` of a structured (object) message, whose text is then its JSON."""
    body = message.get("message")
    inner_kind = None
    if isinstance(body, dict):
        inner_kind = _string(body, "type", path, f"{where}.message")
        body = json.dumps(body, ensure_ascii=False, sort_keys=True)
    elif body is not None and not isinstance(body, str):
        raise ResultFileError(
            path, f"invalid key '{where}.message': {body!r} is not a string or an object"
        )
    kind = _string(message, "kind", path, where) or _string(message, "type", path, where)
    return (None if body is None else _stored(body), kind or inner_kind)


def conversation_rows(
    path: Path,
    *,
    experiment: str,
    setting: str,
    repeat: int,
    arm: str,
    pair: str,
    root: Path | None = None,
) -> list[dict[str, Any]]:
    """One row per message of `path`, in file order; [] when the file does not exist."""
    if not os.path.lexists(path):
        return []
    # text is cleaned per message below, so a lone surrogate in one message does not
    # refuse the whole file (count_messages reads it the same way)
    messages = read_json_file(path, root=root, check_text=False)
    if not isinstance(messages, list):
        raise ResultFileError(
            path, f"expected a JSON list of messages, got {type(messages).__name__}"
        )
    rows = []
    for index, message in enumerate(messages):
        where = f"[{index}]"
        if not isinstance(message, dict):
            raise ResultFileError(
                path, f"invalid key '{where}': expected an object, got {type(message).__name__}"
            )
        text, kind = _text_and_kind(message, path, where)
        rows.append(
            {
                "experiment": experiment,
                "setting": setting,
                "repeat": repeat,
                "arm": arm,
                "pair": pair,
                "message_index": index,
                "sender": _string(message, "from", path, where),
                "recipient": _string(message, "to", path, where),
                "feature_id": _feature_id(message, path, where),
                "sent_at": _sent_at(message, path, where),
                "text": text,
                "kind": kind,
            }
        )
    return rows


def rows_to_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(CONVERSATION_DTYPES)).astype(CONVERSATION_DTYPES)


# The pair-runs that could message: run_results' messaging settings, plus any pair-run
# that has messages (a setting that was not meant to message but did is worth seeing).
_MESSAGING_RUNS = """
    select distinct experiment, setting, repeat, pair from run_results where messaging_enabled
    union
    select distinct experiment, setting, repeat, pair from conversations"""

# In creation order: pass_rate_by_early_plan reads first_message_delay.
CONVERSATION_VIEWS = {
    "messages_per_pair": f"""
        with runs as ({_MESSAGING_RUNS})
        select r.experiment, r.setting, r.repeat, r.pair,
               count(c.message_index) as messages,
               count(distinct c.sender) as senders
        from runs r left join conversations c using (experiment, setting, repeat, pair)
        group by all""",
    "messages_per_agent": """
        select experiment, setting, repeat, pair, sender, count(*) as messages
        from conversations group by all""",
    # started_at is upstream's naive ISO string in UTC; epoch() of a naive timestamp
    # reads it as UTC, whatever the session's time zone
    "first_message_delay": f"""
        with runs as ({_MESSAGING_RUNS}),
        starts as (
            select experiment, setting, repeat, pair,
                   min(try_cast(started_at as timestamp)) as started_at
            from run_results group by all),
        firsts as (
            select experiment, setting, repeat, pair,
                   min(sent_at) as first_message_at, count(*) as messages
            from conversations group by all)
        select r.experiment, r.setting, r.repeat, r.pair, s.started_at, f.first_message_at,
               coalesce(f.messages, 0) as messages,
               epoch(f.first_message_at) - epoch(s.started_at) as delay_seconds
        from runs r
        left join starts s using (experiment, setting, repeat, pair)
        left join firsts f using (experiment, setting, repeat, pair)""",
    "pass_rate_by_early_plan": f"""
        select d.experiment, d.setting,
               case when d.messages = 0 then 'no messages'
                    when d.delay_seconds is null then 'unknown start'
                    when d.delay_seconds <= {EARLY_PLAN_SECONDS} then 'early'
                    else 'later' end as plan,
               count(*) as pair_runs,
               count(*) filter (where e.outcome = 'pass') as passed,
               count(*) filter (where e.outcome = 'fail') as failed,
               passed / nullif(passed + failed, 0) as pass_rate
        from first_message_delay d
        join eval_results e using (experiment, setting, repeat, pair)
        group by all""",
}
