"""Following a run whose results live in the store (docker and Kubernetes launchers): status.json lines as
they appear there, and a failed attempt's result.json removed before the next attempt."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from taoflow.launchers.base import Event
from taoflow.status import StatusReader


def store_status_events(store: Any, results_uri: str, folders: str | Sequence[str], offsets: dict[str, int],
                        records: list[dict[str, Any]], reader: StatusReader | None = None) -> Iterator[Event]:
    """Events for the status.json lines that appeared in the store since the last call (TAO writes
    `<results>/status.json`, or `<results>/<folder>/status.json` in older layouts — `folders`, see
    taoflow/layout.py). `offsets`, `records` and `reader` (which attributes KPIs to epochs across lines) are
    the caller's memory between calls; only complete lines are read, so a line being written is read next
    time. Call `reader.close()` once the run has ended for the last epoch's progress."""
    reader = reader if reader is not None else StatusReader()
    names = [folders] if isinstance(folders, str) else list(folders)
    uris = [store.join(results_uri, "status.json")] + [store.join(results_uri, n, "status.json") for n in names]
    for uri in uris:
        try:
            data = store.read_text(uri)
        except (FileNotFoundError, OSError):
            continue
        complete = data[: data.rfind("\n") + 1]
        offset = offsets.get(uri, 0)
        if len(complete) < offset:
            offset = 0  # rewritten from the start (a new attempt)
        offsets[uri] = len(complete)
        for line in complete[offset:].splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
                yield from reader.feed(record)
    yield from reader.tick()


def remove_stale_result(store: Any, results_uri: str) -> None:
    """Before a new attempt starts: a failed attempt's result.json must not be read as this one's result."""
    from taoflow.store import RESULT_FILE

    uri = store.join(results_uri, RESULT_FILE)
    try:
        if store.exists(uri):
            store.fs.rm(uri.removeprefix("file://") if store.is_local else uri)
    except FileNotFoundError:
        pass


