"""The objects every interface needs: settings, database and secret box."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from postroom.config import Settings
from postroom.crypto import SecretBox, secret_box_from
from postroom.domain.db import (
    create_db_engine,
    ensure_system_profiles,
    migrate,
    session_factory,
)


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    secrets: SecretBox

    def close(self) -> None:
        self.engine.dispose()


def open_runtime(settings: Settings, *, migrate_schema: bool = True) -> Runtime:
    """Prepare the data directory, database and key; migrate on first start."""
    if not settings.data_dir.exists():
        # Owner-only: the directory holds the key file and the SQLite database.
        settings.data_dir.mkdir(parents=True, mode=0o700)
    box = secret_box_from(settings.secret_key, settings.key_file)
    engine = create_db_engine(settings.effective_database_url)
    if migrate_schema:
        migrate(engine)
    sessions = session_factory(engine)
    if migrate_schema:
        ensure_system_profiles(sessions)
    return Runtime(settings=settings, engine=engine, sessions=sessions, secrets=box)
