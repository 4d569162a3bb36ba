"""In-process listeners for action events, so a terminal (the `taoflow run` live display) can follow a
pipeline that runs in the same process. Prefect artifacts and logs carry the same facts to the UI."""

from __future__ import annotations

from collections.abc import Callable

from taoflow.launchers.base import Event
from taoflow.runs import ActionRun

Listener = Callable[[ActionRun, Event], None]
_listeners: list[Listener] = []


def subscribe(listener: Listener) -> Callable[[], None]:
    """Add a listener; returns a function that removes it."""
    _listeners.append(listener)
    return lambda: _listeners.remove(listener) if listener in _listeners else None


_labels: dict[str, str] = {}


def label_run(run_key: str, label: str) -> None:
    """Name a run's row on a display when its action alone would be ambiguous (the champion's evaluate
    beside the challenger's, tasks/promotion.py)."""
    _labels[run_key] = label


def run_label(run_key: str) -> str | None:
    return _labels.get(run_key)


def publish(run: ActionRun, event: Event) -> None:
    for listener in list(_listeners):
        listener(run, event)


TrialsListener = Callable[[str, list[dict]], None]
_trial_listeners: list[TrialsListener] = []


def subscribe_trials(listener: TrialsListener) -> Callable[[], None]:
    """Follow an AutoML sweep's trials table (model, rows) as it changes."""
    _trial_listeners.append(listener)
    return lambda: _trial_listeners.remove(listener) if listener in _trial_listeners else None


def publish_trials(model: str, rows: list[dict]) -> None:
    for listener in list(_trial_listeners):
        listener(model, rows)
