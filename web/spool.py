"""A durable local spool for inbound requests the database could not take.

Twilio retries an inbound webhook only when it cannot connect; any answer, a 5xx included, ends
the delivery. So when the database is unreachable the webhook writes the (verified, parsed)
message here and answers; the web processes of that host (and `flask --app app jobs run`, the
scheduler, on its own host) replay the spool, oldest first, through the same processing as live
traffic once the database is back.

One JSON file per request, named `<time_ns, 20 digits>-<random>.json`, so the lexical order of
the names is the arrival order. A file is written to a temporary name, flushed and fsynced, then
renamed into place and the directory fsynced: an entry is either complete and durable or absent.
An entry is deleted only after it was handled; a replay stops at the first entry whose failure
may pass (the database still down), leaving it and every later one for the next run, so the
order holds. An entry that can never be handled (unreadable, or a failure that is not about
reaching the database) is moved aside to `rejected/` for the operator instead of blocking the
rest.

The files hold phone numbers and message bodies: they are private to the service's user (0600 in
a 0700 folder), and neither is ever logged; the log names entries by file name only. An entry
names its sender's address under "from" (`SENDER`): an erasure (core.erasure) removes the
entries its contact sent, waiting or set aside (`forget`).

Also here: `storage_unavailable(exc)`, when to spool (and when a replay should wait). A
replayed message's replies are stored queued (core.handlers.Replies.QUEUED), for the outbound
dispatcher: there is no webhook answer to put them in.
The folder is local to its host: each web host replays its own spool (every web process looks
at it every few seconds: channels.twilio_messaging.start_spool_replayer, started by
deploy/gunicorn.conf.py), and `jobs run` (the scheduler) replays the spool of the host it runs
on. A spool on another host is never seen, so a web host's spool must not depend on the
scheduler.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from core.ports import StorageUnavailable

try:  # POSIX: one replay at a time per spool folder, across processes
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

log = logging.getLogger(__name__)

SUFFIX = ".json"
TEMP_PREFIX = ".tmp-"  # a write in progress (never matched by pending())
STALE_TEMP_SECONDS = 3600  # a temp file this old is a write that died: removed at replay
REJECTED = "rejected"
LOCK_FILE = ".replay.lock"
SENDER = "from"  # the key of an entry's sender address (E.164), what `forget` matches


@dataclass(frozen=True)
class ReplayStats:
    """What one replay did: entries handled and deleted, entries left for the next run (the
    first one failed, the database is presumably still down), entries moved to `rejected/`."""

    replayed: int = 0
    failed_left: int = 0
    rejected: int = 0
    busy: bool = False  # another process was replaying this spool: nothing was done


class Spool:
    """A folder of pending inbound requests, oldest first. Created on the first write."""

    _last_ns = 0
    _clock_lock = threading.Lock()

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)

    @classmethod
    def for_app(cls, app) -> Spool:
        """The app's spool: config SPOOL_DIR, default `<instance path>/spool`."""
        configured = app.config.get("SPOOL_DIR")
        return cls(Path(configured) if configured else Path(app.instance_path) / "spool")

    # --- writing ----------------------------------------------------------------------------

    def write(self, entry: dict) -> Path:
        """Store one request durably; returns its file. Raises OSError when it cannot."""
        self._ensure_directory()
        data = json.dumps(entry, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        name = f"{self._next_ns():020d}-{uuid.uuid4().hex}{SUFFIX}"
        final = self.directory / name
        temp = self.directory / f"{TEMP_PREFIX}{name}.part"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temp, final)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        self._fsync_directory()
        return final

    @classmethod
    def _next_ns(cls) -> int:
        """Wall-clock nanoseconds, strictly increasing within this process (names sort in the
        order of the writes even when two land in the same tick)."""
        with cls._clock_lock:
            cls._last_ns = max(time.time_ns(), cls._last_ns + 1)
            return cls._last_ns

    def _ensure_directory(self) -> None:
        if not self.directory.is_dir():
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            parent = os.open(self.directory.parent, os.O_RDONLY)
            try:
                os.fsync(parent)  # the new folder itself survives a crash
            finally:
                os.close(parent)

    def _fsync_directory(self) -> None:
        _fsync(self.directory)

    # --- reading ----------------------------------------------------------------------------

    def pending(self) -> list[Path]:
        """The entries waiting, oldest first (no folder yet: none)."""
        if not self.directory.is_dir():
            return []
        return sorted((p for p in self.directory.iterdir()
                       if p.suffix == SUFFIX and not p.name.startswith(".") and p.is_file()),
                      key=lambda p: p.name)

    def replay(self, handle: Callable[[dict], object], *,
               retry_later: Callable[[BaseException], bool] = lambda exc: True) -> ReplayStats:
        """Hand each entry to `handle`, oldest first, deleting it once `handle` returns.

        When `handle` raises and `retry_later(exc)` is true (the default: the database is still
        down), the replay stops there and that entry and every later one wait for the next run.
        An entry that is not valid JSON, or whose failure `retry_later` calls permanent, is
        moved to `rejected/` and the replay goes on. Only one replay runs at a time per folder.
        """
        if not self.directory.is_dir():
            return ReplayStats()
        with self._replay_lock() as locked:
            if not locked:
                log.info("spool %s: another process is replaying it", self.directory)
                return ReplayStats(busy=True)
            self._remove_stale_temps()
            entries = self.pending()
            replayed = rejected = 0
            for n, path in enumerate(entries):
                try:
                    entry = json.loads(path.read_bytes())
                    if not isinstance(entry, dict):
                        raise TypeError("a spool entry is a JSON object")
                except FileNotFoundError:
                    continue  # taken meanwhile (a replay without the lock)
                except (ValueError, TypeError):  # not JSON (or not UTF-8), not an object
                    log.error("spool entry %s is unreadable; moved to %s/", path.name, REJECTED)
                    self._reject(path)
                    rejected += 1
                    continue
                try:
                    handle(entry)
                except Exception as exc:  # noqa: BLE001 - the kind decides; the text may be personal
                    if retry_later(exc):
                        left = len(entries) - n
                        log.warning("spool replay stopped at %s (%s); %d entries wait for the "
                                    "next run", path.name, type(exc).__name__, left)
                        return ReplayStats(replayed, left, rejected)
                    log.error("spool entry %s failed (%s) and will not succeed later; moved to "
                              "%s/", path.name, type(exc).__name__, REJECTED)
                    self._reject(path)
                    rejected += 1
                    continue
                path.unlink(missing_ok=True)
                replayed += 1
            if replayed:
                log.info("spool: %d entries replayed", replayed)
            return ReplayStats(replayed, 0, rejected)

    # --- erasure ----------------------------------------------------------------------------

    def forget(self, addresses: Collection[str]) -> int:
        """Delete the entries sent from any of `addresses` (E.164), those waiting and those set
        aside in `rejected/` alike (core.ports.InboundSpool, for an erasure); how many. Entries
        that cannot be read are left: nothing says whose they are. A replay running meanwhile
        is safe: it skips an entry that is gone, and one it is handling either reached the
        database before the erasure (and is erased with the rest) or after it (a message from a
        number of no contact)."""
        wanted = set(addresses)
        removed = 0
        if not wanted:
            return 0
        for folder in (self.directory, self.directory / REJECTED):
            if not folder.is_dir():
                continue
            gone = 0
            for path in folder.iterdir():
                if path.suffix != SUFFIX or path.name.startswith(".") or not path.is_file():
                    continue
                try:
                    entry = json.loads(path.read_bytes())
                except FileNotFoundError:
                    continue  # replayed meanwhile
                except (ValueError, TypeError):
                    continue  # unreadable: set aside by the replay, for the operator
                if isinstance(entry, dict) and entry.get(SENDER) in wanted:
                    path.unlink(missing_ok=True)
                    gone += 1
            if gone:
                _fsync(folder)
                removed += gone
        if removed:
            log.info("spool: %d entries of an erased contact removed", removed)
        return removed

    def _reject(self, path: Path) -> None:
        target = self.directory / REJECTED
        target.mkdir(mode=0o700, exist_ok=True)
        try:
            os.replace(path, target / path.name)
        except FileNotFoundError:
            pass

    def _remove_stale_temps(self) -> None:
        cutoff = time.time() - STALE_TEMP_SECONDS
        for p in self.directory.glob(f"{TEMP_PREFIX}*"):
            try:
                if p.stat().st_mtime < cutoff:
                    p.unlink()
            except FileNotFoundError:
                pass

    def _replay_lock(self):
        return _FolderLock(self.directory / LOCK_FILE)


def _fsync(folder: Path) -> None:
    """Make the folder's entries (new names, removed names) durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _FolderLock:
    """A non-blocking exclusive flock on a file; `as` gives whether it was taken."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def __enter__(self) -> bool:
        if fcntl is None:  # pragma: no cover - no flock: the handler's dedupe still holds
            return True
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            self.fd = None
            return False
        return True

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


# --- when to spool, and replies of a replay ---------------------------------------------------

def storage_unavailable(exc: BaseException) -> bool:
    """Whether `exc` (or what it wraps) says the database cannot be reached or used right now:
    the unit of work turns such failures (down, restarting, connection lost, no connection free,
    SQLite locked) into core.ports.StorageUnavailable, as opposed to a bug or a refusal that
    would fail again the same way."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, StorageUnavailable):
            return True
        current = current.__cause__ or current.__context__
    return False
