"""Log lines from a byte stream (a container's or pod's log) into a queue, and out again as events.

Docker and Kubernetes both hand logs over as chunks of bytes that split lines anywhere; a reader thread
turns them into whole lines, and the launcher's `events` drains them while keeping a tail for failure
classification."""

from __future__ import annotations

import queue
from collections.abc import Iterable, Iterator

from taoflow.launchers.base import LogLine

LOG_TAIL_LINES = 4000


def pump_lines(chunks: Iterable[bytes], lines: queue.Queue[str], prefix: str = "") -> None:
    """Put every complete line of `chunks` on `lines` (and the unterminated rest at the end)."""
    buffer = b""
    for chunk in chunks:
        if not chunk:
            break
        buffer += chunk
        *complete, buffer = buffer.split(b"\n")
        for raw in complete:
            lines.put(prefix + raw.decode("utf-8", "replace").rstrip("\r"))
    if buffer:
        lines.put(prefix + buffer.decode("utf-8", "replace"))


def drain_lines(lines: queue.Queue[str], tail: list[str], keep: int = LOG_TAIL_LINES) -> Iterator[LogLine]:
    """Yield the queued lines as LogLine events, keeping the last `keep` of them in `tail`."""
    while True:
        try:
            line = lines.get_nowait()
        except queue.Empty:
            return
        tail.append(line)
        del tail[:-keep]
        yield LogLine(line)
