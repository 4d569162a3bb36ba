"""In-process listeners for action events, so a terminal (the `taoflow run` live display) can follow a
pipeline that runs in the same process. Prefect artifacts and logs carry the same facts to the UI."""

from __future__ import annotations

from typing import Callable

from taoflow.launchers.base import Event
from taoflow.runs import ActionRun

Listener = Callable[[ActionRun, Event], None]
_listeners: list[Listener] = []


def subscribe(listener: Listener) -> Callable[[], None]:
    """Add a listener; returns a function that removes it."""
    _listeners.append(listener)
    return lambda: _listeners.remove(listener) if listener in _listeners else None


def publish(run: ActionRun, event: Event) -> None:
    for listener in list(_listeners):
        listener(run, event)
