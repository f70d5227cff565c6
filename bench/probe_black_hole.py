"""Measure how long a probe takes when some ports are black holes.

Run from the repository root: ``.venv/bin/python bench/probe_black_hole.py``.
It starts one scripted SMTP server and three black-holed loopback ports,
probes all four with a 2 s per-port limit and a 5 s total limit, and prints
the wall time of each of five runs. The ports run in parallel, so the
expected time is about one per-port limit, not four.
"""

from __future__ import annotations

import asyncio
import sys
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from postroom.diagnosis.probe import check_probe_request, run_probe
from tests.peers.blackhole import black_hole
from tests.peers.scripted import ScriptedServer

PORT_TIMEOUT = 2.0
TOTAL_TIMEOUT = 5.0


def main() -> None:
    server = ScriptedServer().start()
    try:
        with ExitStack() as stack:
            holes = [stack.enter_context(black_hole()) for _ in range(3)]
            request = check_probe_request(
                "127.0.0.1",
                [*holes, server.port],
                port_timeout=PORT_TIMEOUT,
                total_timeout=TOTAL_TIMEOUT,
            )
            for run in range(1, 6):
                started = time.perf_counter()
                result = asyncio.run(run_probe(request))
                elapsed = time.perf_counter() - started
                usable = [port.port for port in result.report.ports if port.usable]
                print(f"run {run}: {elapsed:.2f} s, usable ports {usable}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
