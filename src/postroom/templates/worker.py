"""The render process: ``python -m postroom.templates.worker FD MEMORY_BYTES``.

It reads ``(operation, job, alarm_seconds)`` requests from the socket FD,
runs them with postroom.templates.sandbox and writes back
``("ok", result)``, ``("error", text)`` or ``("memory", None)``. Started and
stopped by postroom.templates.isolation.
"""

from __future__ import annotations

import gc
import os
import resource
import signal
import sys
from multiprocessing.connection import Connection
from typing import Any


def limit_memory(extra_bytes: int) -> None:
    """Cap the address space at what is mapped now plus ``extra_bytes``."""
    # RLIMIT_AS counts the whole address space, including the interpreter
    # and Jinja2 already loaded, so the limit is measured from here.
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            line = next(line for line in status if line.startswith("VmSize:"))
    except (OSError, StopIteration):
        # NOTE: without /proc (macOS) no memory limit is applied; the time
        # limit still stops a template that allocates without end.
        return
    limit = int(line.split()[1]) * 1024 + extra_bytes
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def serve(connection: Connection, memory_bytes: int) -> None:
    """Run jobs until the parent closes the connection."""
    from postroom.templates import sandbox

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # SIGALRM keeps its default action, which ends the process even in the
    # middle of a C call. The alarm only fires if the parent is gone and so
    # did not kill this process at its own timeout.
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    limit_memory(memory_bytes)

    while True:
        try:
            operation, job, alarm_seconds = connection.recv()
        except (EOFError, OSError):
            return
        signal.alarm(alarm_seconds)
        try:
            reply: tuple[str, Any] = ("ok", sandbox.OPERATIONS[operation](job))
        except MemoryError:
            del job
            gc.collect()
            # The interpreter may be in a poor state after a MemoryError, so
            # reply, then exit: the parent starts a clean process.
            try:
                connection.send(("memory", None))
            finally:
                os._exit(1)
        except Exception as exc:
            reply = ("error", f"{type(exc).__name__}: {exc}")
        signal.alarm(0)
        connection.send(reply)


def main() -> None:
    descriptor, memory_bytes = int(sys.argv[1]), int(sys.argv[2])
    serve(Connection(descriptor), memory_bytes)


if __name__ == "__main__":
    main()
