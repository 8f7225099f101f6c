"""The inotify boundary: directory events as plain values, never exceptions."""

from __future__ import annotations

import enum
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from asyncinotify import Inotify, Mask

_WRITTEN = Mask.CLOSE_WRITE | Mask.MOVED_TO
_REMOVED = Mask.DELETE | Mask.MOVED_FROM
_GONE = Mask.DELETE_SELF | Mask.MOVE_SELF | Mask.UNMOUNT | Mask.IGNORED
WATCH_MASK = _WRITTEN | _REMOVED | Mask.CREATE | Mask.DELETE_SELF | Mask.MOVE_SELF | Mask.ONLYDIR


class WatchKind(enum.Enum):
    WRITTEN = "written"  # a file's new content is complete (close-write, rename into place)
    REMOVED = "removed"  # a file left the directory (unlink, rename away)
    OVERFLOW = "overflow"  # the kernel dropped events: rescan everything
    GONE = "gone"  # the directory itself went away; nothing more will come
    ERROR = "error"  # reading events failed; `reason` says why


@dataclass(frozen=True, slots=True)
class WatchEvent:
    kind: WatchKind
    name: str | None = None
    reason: str | None = None


class DirectoryWatcher:
    """Watches one directory; `get()` returns the next relevant event as a value.

    Only names accepted by `name_filter` are reported, so editors' scratch files
    cost nothing above this class. A plain create is not reported (its close-write
    follows), except for links, which arrive complete, and anything that is no regular
    file (a FIFO is never written and closed, yet must be reported).
    """

    def __init__(self, directory: Path, name_filter: Callable[[str], bool]) -> None:
        self.directory = directory
        self._accept = name_filter
        self._inotify: Inotify | None = None

    def open(self) -> str | None:
        """Start watching; returns a reason instead of raising when it cannot."""
        try:
            self._inotify = Inotify()
            self._inotify.add_watch(self.directory, WATCH_MASK)
        except OSError as exc:
            self.close()
            return f"cannot watch {self.directory}: {exc.strerror or exc}"
        return None

    async def get(self) -> WatchEvent:
        if self._inotify is None:
            return WatchEvent(WatchKind.GONE, reason="watcher is closed")
        while True:
            try:
                event = await self._inotify.get()
            except OSError as exc:
                return WatchEvent(WatchKind.ERROR, reason=str(exc))
            mask = event.mask
            if mask & Mask.Q_OVERFLOW:
                return WatchEvent(WatchKind.OVERFLOW)
            if event.name is None:
                if mask & _GONE:
                    return WatchEvent(WatchKind.GONE, reason=f"{self.directory} went away")
                continue
            if mask & Mask.ISDIR:
                continue
            name = str(event.name)
            if not self._accept(name):
                continue
            if mask & _WRITTEN:
                return WatchEvent(WatchKind.WRITTEN, name)
            if mask & _REMOVED:
                return WatchEvent(WatchKind.REMOVED, name)
            if mask & Mask.CREATE and self._arrives_complete(name):
                return WatchEvent(WatchKind.WRITTEN, name)

    def _arrives_complete(self, name: str) -> bool:
        """A created name no close-write will follow: a link, or no regular file at all
        (a FIFO, a device, a socket: reported so the store can reject it)."""
        try:
            info = os.lstat(self.directory / name)
        except OSError:
            return False
        return not stat.S_ISREG(info.st_mode) or info.st_nlink > 1

    def close(self) -> None:
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None
