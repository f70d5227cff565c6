"""Make sure exactly one scheduler is active among all processes.

On PostgreSQL the active scheduler holds a session-level advisory lock on a
connection of its own. When its process dies, the server closes that
connection and releases the lock, and a standby takes it on its next try.
On SQLite, whose database is one file on one machine, an exclusive flock on
a file beside the database does the same for the processes of that machine.

Leadership only decides who looks for due jobs; each run also takes its
job's lease in the database, so even two active schedulers could not run a
job twice at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
from pathlib import Path
from typing import IO, Protocol

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.pool import NullPool

log = logging.getLogger("postroom.scheduler")

# The ASCII bytes of "pr-sched" as a signed 64-bit key, distinct from the
# key of the migration lock.
SCHEDULER_LOCK_ID = int.from_bytes(b"pr-sched", "big") & (2**63 - 1)


class Leadership(Protocol):
    def acquire(self) -> bool:
        """Try to become the active scheduler; return True when this process is."""
        ...

    def holds(self) -> bool:
        """Return True while this process is still the active scheduler."""
        ...

    def release(self) -> None: ...


class PostgresLeadership:
    """An advisory lock held on a dedicated connection."""

    def __init__(self, engine: Engine, lock_id: int = SCHEDULER_LOCK_ID) -> None:
        # The application name lets an operator see the active scheduler in
        # pg_stat_activity.
        self.application_name = (
            f"postroom-scheduler:{socket.gethostname()}:{os.getpid()}"
        )
        self._engine = create_engine(
            engine.url,
            poolclass=NullPool,
            isolation_level="AUTOCOMMIT",
            connect_args={"application_name": self.application_name[:63]},
        )
        self._lock_id = lock_id
        self._connection: Connection | None = None
        self._held = False

    def acquire(self) -> bool:
        try:
            if self._connection is None:
                self._connection = self._engine.connect()
            self._held = bool(
                self._connection.scalar(
                    text("SELECT pg_try_advisory_lock(:id)"), {"id": self._lock_id}
                )
            )
        except Exception as exc:
            log.warning(
                "cannot reach PostgreSQL to take the scheduler lock",
                extra={"error": str(exc)},
            )
            self._drop()
        return self._held

    def holds(self) -> bool:
        if not self._held or self._connection is None:
            return False
        try:
            # A live connection still holds its session's locks; a broken
            # one (server restart, network) has lost them.
            self._connection.scalar(text("SELECT 1"))
        except Exception as exc:
            log.warning(
                "lost the connection that holds the scheduler lock",
                extra={"error": str(exc)},
            )
            self._drop()
        return self._held

    def release(self) -> None:
        if self._connection is not None and self._held:
            with contextlib.suppress(Exception):
                self._connection.scalar(
                    text("SELECT pg_advisory_unlock(:id)"), {"id": self._lock_id}
                )
        self._drop()
        self._engine.dispose()

    def _drop(self) -> None:
        self._held = False
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()
            self._connection = None


class FileLeadership:
    """An exclusive flock on a file; the kernel releases it when the process dies."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[bytes] | None = None

    def acquire(self) -> bool:
        if self._file is not None:
            return True
        handle = self.path.open("ab")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._file = handle
        return True

    def holds(self) -> bool:
        return self._file is not None

    def release(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None


class AlwaysLeader:
    """For databases private to one process, such as in-memory SQLite."""

    def acquire(self) -> bool:
        return True

    def holds(self) -> bool:
        return True

    def release(self) -> None:
        return None


def leadership_for(engine: Engine) -> Leadership:
    """Choose how schedulers sharing this database elect the active one."""
    if engine.dialect.name == "postgresql":
        return PostgresLeadership(engine)
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database and database != ":memory:":
        return FileLeadership(Path(f"{database}.scheduler.lock"))
    # NOTE: other databases get no election; the run leases still keep each
    # job from running twice at once.
    return AlwaysLeader()
