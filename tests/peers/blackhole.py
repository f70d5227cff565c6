"""A loopback port where TCP connects never complete, to test timeouts.

The listener's accept queue has room for one connection, which is filled at
once. Linux then drops further SYNs, so a client's connect waits until its
own timeout, as it would against a firewall that drops packets.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager, suppress


@contextmanager
def black_hole(port: int = 0) -> Iterator[int]:
    """Yield a loopback port that drops connects; ``port`` 0 picks a free one."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", port))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.settimeout(0.2)
        with suppress(OSError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    try:
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def closed_port() -> int:
    """Return a loopback port with nothing listening (connections are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
