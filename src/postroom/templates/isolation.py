"""Render processes: run templates where a runaway one can be stopped.

Jinja2's sandbox limits what a template may touch, not how long it runs or
how much memory it takes. Python cannot stop a thread from outside, and one
long C call (a huge string operation) would not even let a watchdog thread
run. So templates are compiled and rendered in child processes
(``python -m postroom.templates.worker``). The parent waits for an answer at
most the render timeout, then kills the child with SIGKILL and starts a
fresh one, so the service itself never runs template code. Each child caps
its address space (RLIMIT_AS): a template that allocates without end gets a
MemoryError instead of the machine's memory.

Children are plain subprocesses rather than multiprocessing ones because
multiprocessing re-imports the parent's main module in each child, which
breaks any caller whose script lacks an ``if __name__ == "__main__"`` guard.
"""

from __future__ import annotations

import atexit
import logging
import math
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

log = logging.getLogger("postroom.templates")


class RenderTimeout(Exception):
    """The render process did not finish in time and was stopped."""


class RenderMemoryExceeded(Exception):
    """The render process ran out of its memory limit."""


class RenderCrashed(Exception):
    """The render process exited or failed without an answer."""


@dataclass
class _Child:
    process: subprocess.Popen[bytes]
    connection: Connection

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            log.error(
                "render process did not exit after SIGKILL",
                extra={"pid": self.process.pid},
            )
        self.connection.close()


class RenderPool:
    """Up to ``processes`` render processes shared by all threads."""

    def __init__(self, processes: int, memory_mb: int) -> None:
        self.processes = processes
        self.memory_bytes = memory_mb * 1024 * 1024
        self._idle: list[_Child] = []
        self._running = 0
        self._condition = threading.Condition()
        self._closed = False

    def _start(self) -> _Child:
        parent_end, child_end = socket.socketpair()
        with child_end:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "postroom.templates.worker",
                    str(child_end.fileno()),
                    str(self.memory_bytes),
                ],
                pass_fds=[child_end.fileno()],
                stdin=subprocess.DEVNULL,
                # The child's own process group: Ctrl-C in a terminal goes to
                # the service, which decides when children stop.
                start_new_session=True,
            )
        return _Child(process=process, connection=Connection(parent_end.detach()))

    def _acquire(self) -> _Child | None:
        """Take an idle child, or return None when the caller may start one."""
        with self._condition:
            while True:
                if self._closed:
                    raise RuntimeError("the render pool is closed")
                if self._idle:
                    return self._idle.pop()
                if self._running < self.processes:
                    self._running += 1
                    return None
                self._condition.wait()

    def _release(self, child: _Child) -> None:
        with self._condition:
            self._idle.append(child)
            self._condition.notify()

    def _discard(self, child: _Child | None) -> None:
        if child is not None:
            child.stop()
        with self._condition:
            self._running -= 1
            self._condition.notify()

    def run(self, operation: str, job: dict[str, Any], timeout: float) -> Any:
        """Run ``operation`` on ``job`` in a render process.

        Raises RenderTimeout, RenderMemoryExceeded or RenderCrashed; in each
        case the process is replaced and the pool stays usable.
        """
        child = self._acquire()
        try:
            if child is None:
                child = self._start()
            # The child arms an alarm of its own as a backstop, so it ends
            # even if this process dies while the child runs away.
            request = (operation, job, math.ceil(timeout) + 5)
            try:
                child.connection.send(request)
            except (BrokenPipeError, ConnectionResetError, EOFError):
                # An idle child died (killed from outside): use a new one.
                child.stop()
                child = self._start()
                child.connection.send(request)
            status, value = self._wait(child, timeout)
        except BaseException:
            self._discard(child)
            raise
        self._release(child)
        if status == "error":
            raise RenderCrashed(value)
        return value

    def _wait(self, child: _Child, timeout: float) -> tuple[str, Any]:
        if not child.connection.poll(timeout):
            log.warning(
                "render process stopped after the time limit",
                extra={"pid": child.process.pid, "timeout_seconds": timeout},
            )
            raise RenderTimeout(f"rendering took longer than {timeout:g} seconds")
        try:
            status, value = child.connection.recv()
        except (EOFError, OSError) as exc:
            try:
                code = child.process.wait(5)
            except subprocess.TimeoutExpired:
                code = None
            raise RenderCrashed(
                f"the render process exited with status {code}"
            ) from exc
        if status == "memory":
            raise RenderMemoryExceeded(
                f"rendering needed more than {self.memory_bytes // 2**20} MiB"
            )
        return status, value

    def close(self) -> None:
        with self._condition:
            self._closed = True
            idle, self._idle = self._idle, []
            self._condition.notify_all()
        for child in idle:
            child.stop()


_pools: dict[tuple[int, int], RenderPool] = {}
_pools_lock = threading.Lock()


def shared_pool(processes: int, memory_mb: int) -> RenderPool:
    """Return the process-wide pool for these limits, starting it on first use."""
    key = (processes, memory_mb)
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            pool = _pools[key] = RenderPool(processes, memory_mb)
        return pool


@atexit.register
def _close_pools() -> None:
    with _pools_lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        pool.close()
