"""A SQLite file's commits, seen by inotify: how the publisher learns of a write another
process (`decnet-ttp state set`, the admin API) committed, without polling.

Every commit writes the database's write-ahead log (`-wal`; the file itself, or its
`-journal`, outside WAL mode), so a write to one of them is a hint that the revision
may have moved. It is only a hint: the caller reads the revision row to know, and keeps
a slow poll as the safety net (a filesystem without inotify events, a missed one).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from asyncinotify import Inotify, Mask

#: Writes, and the log files coming back after a checkpoint removed them.
_MASK = Mask.MODIFY | Mask.CLOSE_WRITE | Mask.CREATE | Mask.MOVED_TO


async def watch_commits(path: str, on_write: Callable[[], None]) -> None:
    """Call `on_write()` whenever the SQLite database at `path` (absolute) or its log is
    written, until cancelled. Raises OSError when its directory cannot be watched."""
    file = Path(path)  # absolute: `Engines.sqlite_path`
    names = {file.name, f"{file.name}-wal", f"{file.name}-journal"}
    with Inotify() as inotify:
        inotify.add_watch(file.parent, _MASK | Mask.ONLYDIR)
        async for event in inotify:
            if event.mask & Mask.Q_OVERFLOW or (
                    event.name is not None and str(event.name) in names):
                on_write()
