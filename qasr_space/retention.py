"""Nothing kept longer than needed: user files are deleted once their time to live is up, within a disk cap.

Uploads (Gradio's upload folder, which also holds its copies of result files), the app's per-request folders (the
player's audio, recordings, downloads) and anything a URL fetch left behind all live under a few roots. `sweep`
deletes every file there last written more than `keep_seconds` ago, then, while the rest take more than `max_bytes`,
the oldest first; a `Janitor` runs it in the background every `interval` seconds. Files named in `protected` (the
page's example clips, which Gradio caches once at startup) are never deleted.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass

log = logging.getLogger(__name__)

#: The janitor wakes at least this often, and at most this often, whatever the time to live.
MIN_INTERVAL_SECONDS = 1.0
MAX_INTERVAL_SECONDS = 60.0


@dataclass(frozen=True)
class SweepResult:
    """What one sweep did: files deleted (and their bytes), and the bytes left under the roots."""

    removed_files: int
    removed_bytes: int
    kept_bytes: int


def sweep(roots: Iterable[str], keep_seconds: float, max_bytes: float, protected: Collection[str] = (),
          now: float | None = None) -> SweepResult:
    """Delete expired files under `roots`, then the oldest while over `max_bytes`, then the empty folders they left."""
    now = time.time() if now is None else now
    keep = {os.path.realpath(path) for path in protected}
    files, folders = [], []
    for root in roots:
        for folder, dirs, names in os.walk(root, followlinks=False):
            for name in dirs:  # mtimes as they were before this sweep deleted anything inside
                try:
                    folders.append((os.path.join(folder, name), os.lstat(os.path.join(folder, name)).st_mtime))
                except OSError:
                    continue
            for name in names:
                path = os.path.join(folder, name)
                try:
                    info = os.lstat(path)
                except OSError:  # deleted meanwhile
                    continue
                files.append((info.st_mtime, info.st_size, path))
    files.sort()
    total = sum(size for _, size, _ in files)
    removed = removed_bytes = 0
    for mtime, size, path in files:
        if now - mtime <= keep_seconds and total <= max_bytes:
            break  # sorted oldest first: everything after is newer and fits
        if os.path.realpath(path) in keep:
            continue
        try:
            os.unlink(path)
        except OSError:
            continue
        removed, removed_bytes, total = removed + 1, removed_bytes + size, total - size
    for folder, mtime in sorted(folders, key=lambda item: len(item[0]), reverse=True):  # deepest first
        if now - mtime > keep_seconds:
            try:
                os.rmdir(folder)  # only succeeds when empty
            except OSError:
                continue
    return SweepResult(removed, removed_bytes, total)


class Janitor:
    """Runs `sweep` over `roots()` every `interval` seconds in a daemon thread, until `stop`."""

    def __init__(self, roots: Callable[[], Iterable[str]], keep_seconds: float, max_bytes: float,
                 protected: Callable[[], Collection[str]] = frozenset, interval: float | None = None):
        self.roots, self.keep_seconds, self.max_bytes, self.protected = roots, keep_seconds, max_bytes, protected
        self.interval = interval or min(MAX_INTERVAL_SECONDS, max(MIN_INTERVAL_SECONDS, keep_seconds / 4))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="qasr-janitor", daemon=True)

    def start(self) -> Janitor:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                result = sweep(self.roots(), self.keep_seconds, self.max_bytes, self.protected())
                if result.removed_files:
                    log.info("deleted %d expired files (%d bytes); %d bytes kept", result.removed_files,
                             result.removed_bytes, result.kept_bytes)
            except Exception:  # a sweep must never end the janitor: log it, and try again next time
                log.exception("file sweep failed")
            self._stop.wait(self.interval)
