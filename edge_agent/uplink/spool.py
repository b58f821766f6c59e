"""Telemetry kept on disk until the aggregator has stored it.

One SQLite file per house (``<state_dir>/telemetry-<house>.sqlite``), one table
``telemetry(seq, measured_at, payload)``: ``payload`` is a serialized
``vpp.v1.Telemetry``, ``seq`` grows for ever (AUTOINCREMENT: a seq is never
reused, even once the table was empty, so the uplink can page with
"after seq").  A sample is appended when it is recorded, whether or not the
stream is up, and deleted only when the aggregator acknowledges it (stored), so
an outage or an agent restart loses nothing as long as the spool has room.
When it is full the oldest samples give way, and are counted.

Durability: WAL with ``synchronous=NORMAL``: a commit survives the process
(kill -9, restart) without an fsync per sample; a power cut may lose the last
few commits (the WAL is synced at checkpoints).  One small row per commit
costs tens of microseconds, so it runs on the event loop.

``path=None`` keeps the spool in memory (simulations of many houses; nothing
survives the process).
"""

from __future__ import annotations

import logging
import re
import sqlite3
import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from vpp_common.config import ConfigError

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS telemetry (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    measured_at REAL NOT NULL,  -- Unix s, for people reading the file
    payload BLOB NOT NULL       -- serialized vpp.v1.Telemetry
)
"""


class SpoolError(ConfigError):
    """The spool file cannot be created or opened (a path or permission problem: the operator must act)."""


def spool_path(state_dir: Path, house_id: str | None) -> Path:
    """The spool file of a house in ``state_dir`` (several agents may share one directory)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", house_id) if house_id else ""
    return state_dir / (f"telemetry-{safe}.sqlite" if safe else "telemetry.sqlite")


class TelemetrySpool:
    """A bounded FIFO of serialized telemetry samples in SQLite (see the module docstring)."""

    def __init__(self, path: Path | None, capacity: int = 10_000) -> None:
        if capacity < 1:
            raise ValueError(f"spool capacity must be >= 1, got {capacity}")
        self.path = path
        self.capacity = capacity
        self.appended = 0  # samples written in this process
        self.dropped_full = 0  # oldest samples evicted from a full spool (lost)
        self.dropped_error = 0  # samples that could not be written (disk full, I/O error: lost)
        self._write_errors_logged = 0
        self._db = self._open()
        self._count = int(self._db.execute("SELECT COUNT(*) FROM telemetry").fetchone()[0])
        self._oldest: tuple[int, float] | None = None  # (seq, measured_at): read by /metrics from its thread
        self._find_oldest()
        if self._count:
            log.info("telemetry spool %s holds %d unsent samples from before", path, self._count)

    # -- opening ---------------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        if self.path is None:
            return self._connect(":memory:")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SpoolError(f"state_dir: cannot create {self.path.parent}: {exc.strerror or exc}") from None
        try:
            return self._connect(str(self.path))
        except sqlite3.DatabaseError as exc:
            if not self.path.exists() or _cannot_open(exc):
                raise SpoolError(f"state_dir: cannot open the telemetry spool {self.path}: {exc}") from None
            # Not a database (any more): a torn write or a stray file.  Telemetry is not worth
            # stopping the house's control for: keep the bad file for a look, start afresh.
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            log.warning("telemetry spool %s is unreadable (%s): moved to %s, starting an empty spool "
                        "(its unsent samples are lost)", self.path, exc, aside.name)
            for suffix in ("", "-wal", "-shm"):
                src = self.path.with_name(self.path.name + suffix)
                if src.exists():
                    src.replace(aside.with_name(aside.name + suffix))
            try:
                return self._connect(str(self.path))
            except sqlite3.DatabaseError as exc2:
                raise SpoolError(f"state_dir: cannot open the telemetry spool {self.path}: {exc2}") from None

    @staticmethod
    def _connect(target: str) -> sqlite3.Connection:
        db = sqlite3.connect(target, isolation_level=None)  # autocommit; explicit BEGIN where it matters
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            ok = db.execute("PRAGMA quick_check").fetchone()[0]
            if ok != "ok":
                raise sqlite3.DatabaseError(f"quick_check: {ok}")
            db.execute(_SCHEMA)
        except BaseException:
            db.close()
            raise
        return db

    def close(self) -> None:
        self._db.close()

    # -- use -----------------------------------------------------------------------
    def __len__(self) -> int:
        """Samples in the spool (recorded, not acknowledged)."""
        return self._count

    def append(self, measured_at: datetime, payload: bytes) -> int | None:
        """Add a sample; return the highest seq evicted to make room (None if none was).

        A write error (disk full, I/O) drops this sample: counted, logged, never raised
        (the control loop must not stop for telemetry).
        """
        try:
            self._db.execute("INSERT INTO telemetry (measured_at, payload) VALUES (?, ?)",
                             (measured_at.timestamp(), payload))
        except sqlite3.Error as exc:
            self.dropped_error += 1
            if self._write_errors_logged < 3 or self.dropped_error % 100 == 0:
                self._write_errors_logged += 1
                log.warning("telemetry spool %s: cannot write a sample (%d lost so far): %s",
                            self.path, self.dropped_error, exc)
            return None
        self.appended += 1
        self._count += 1
        if self._oldest is None:
            self._find_oldest()
        if self._count <= self.capacity:
            return None
        excess = self._count - self.capacity
        row = self._db.execute("SELECT seq FROM telemetry ORDER BY seq LIMIT 1 OFFSET ?", (excess - 1,)).fetchone()
        cutoff = int(row[0])
        self._db.execute("DELETE FROM telemetry WHERE seq <= ?", (cutoff,))
        self.dropped_full += excess
        self._count -= excess
        self._find_oldest()
        return cutoff

    def read(self, after_seq: int, limit: int) -> list[tuple[int, bytes]]:
        """Up to ``limit`` samples with seq > ``after_seq``, oldest first."""
        rows = self._db.execute("SELECT seq, payload FROM telemetry WHERE seq > ? ORDER BY seq LIMIT ?",
                                (after_seq, limit)).fetchall()
        return [(int(seq), bytes(payload)) for seq, payload in rows]

    def delete(self, seqs: Iterable[int]) -> int:
        """Forget acknowledged samples; return how many were still there."""
        keys = [(s,) for s in seqs]
        if not keys:
            return 0
        before = self._db.total_changes
        try:
            self._db.executemany("DELETE FROM telemetry WHERE seq = ?", keys)
        except sqlite3.Error as exc:  # sent again after a restart: the store keeps it once
            log.warning("telemetry spool %s: cannot delete acknowledged samples: %s", self.path, exc)
            return 0
        gone = self._db.total_changes - before
        self._count -= gone
        if gone and self._oldest is not None and any(k == (self._oldest[0],) for k in keys):
            self._find_oldest()
        return gone

    def oldest_measured_at(self) -> float | None:
        """Unix s of the oldest sample kept, None when empty (any thread: no database access)."""
        oldest = self._oldest
        return None if oldest is None else oldest[1]

    def _find_oldest(self) -> None:
        row = self._db.execute("SELECT seq, measured_at FROM telemetry ORDER BY seq LIMIT 1").fetchone()
        self._oldest = None if row is None else (int(row[0]), float(row[1]))


def _cannot_open(exc: sqlite3.DatabaseError) -> bool:
    """sqlite's "cannot open" errors (permissions, a directory, a read-only file system), as
    opposed to a file that opens but is not a database."""
    text = str(exc).lower()
    return any(s in text for s in ("unable to open", "readonly", "read-only", "permission", "access"))
