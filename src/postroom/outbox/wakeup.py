"""Tell delivery workers that new work was committed.

Within one process (``postroom serve``) the enqueueing code calls the
registered callbacks after commit. On PostgreSQL a NOTIFY inside the
enqueueing transaction also reaches workers in every other process once it
commits. A wakeup is only a hint: workers also poll, so a lost one delays a
message by at most the poll interval.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from sqlalchemy import event, text
from sqlalchemy.orm import Session

CHANNEL = "postroom_outbox"

_callbacks: list[Callable[[], None]] = []
_lock = threading.Lock()


def subscribe(callback: Callable[[], None]) -> Callable[[], None]:
    """Register a callback; return a function that removes it again."""
    with _lock:
        _callbacks.append(callback)

    def unsubscribe() -> None:
        with _lock:
            if callback in _callbacks:
                _callbacks.remove(callback)

    return unsubscribe


def _after_commit(session: Session) -> None:
    session.info.pop("postroom_wakeup", None)
    wake_local_workers()


def notify_in_transaction(session: Session) -> None:
    """Arrange for workers to wake once the session's transaction commits."""
    if session.get_bind().dialect.name == "postgresql":
        # NOTIFY is transactional: delivered at commit, dropped on rollback.
        session.execute(text(f"NOTIFY {CHANNEL}"))
    if not session.info.get("postroom_wakeup"):
        session.info["postroom_wakeup"] = True
        # After a rollback the listener stays armed and fires on the next
        # commit, which costs one spurious wakeup and nothing else.
        event.listen(session, "after_commit", _after_commit, once=True)


def wake_local_workers() -> None:
    with _lock:
        callbacks = list(_callbacks)
    for callback in callbacks:
        callback()
