"""Fixtures for outbox tests that need PostgreSQL itself."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from postroom.domain.db import ensure_system_profiles
from postroom.runtime import Runtime
from tests.conftest import _truncate_all, make_runtime


@pytest.fixture
def pg_runtime(pg_database_url: str, tmp_path: Path) -> Iterator[Runtime]:
    """A runtime on the test PostgreSQL database, emptied first."""
    opened = make_runtime(tmp_path, pg_database_url, retry_base_seconds=1.0)
    _truncate_all(opened)
    ensure_system_profiles(opened.sessions)
    yield opened
    opened.close()
