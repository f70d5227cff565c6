"""Settings from environment variables and an optional TOML file.

Precedence, highest first: environment variables, the TOML file, defaults.
The TOML file is the one named by ``POSTROOM_CONFIG``, else
``postroom.toml`` in the data directory when it exists.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

ENV_PREFIX = "POSTROOM_"
CONFIG_FILE_NAME = "postroom.toml"
# POSTROOM_DATA_SOURCE_SALES=postgresql://... configures data source "sales".
DATA_SOURCE_ENV_PREFIX = ENV_PREFIX + "DATA_SOURCE_"
_DATA_SOURCE_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")


class ConfigError(Exception):
    """Configuration that cannot be used; the message names the setting."""


def default_data_dir() -> Path:
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "postroom"


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str | None = None
    # One or more Fernet keys separated by commas; the first encrypts, all
    # decrypt, so a key can be rotated without re-entering passwords.
    secret_key: str | None = Field(default=None, repr=False)

    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8400, ge=1, le=65535)
    # The URL browsers reach Postroom at, when it differs from http_host and
    # http_port (a reverse proxy); OAuth redirects come back to it.
    public_url: str | None = None

    log_level: str = "INFO"
    log_format: str = "json"

    # HTTP request bodies larger than this get 413 before they are read in
    # full. An event may carry 25 MiB of attachments (the notification
    # limit), about 35 MB as base64 in its JSON, so 40 MB leaves it room.
    max_request_bytes: int = Field(default=40_000_000, ge=1024)
    # The largest message POST /api/messages queues, counted once built
    # (headers and encoded bodies); the same default as report_max_message_bytes.
    max_message_bytes: int = Field(default=10_000_000, ge=100_000)

    # Delivery worker.
    worker_batch_size: int = Field(default=50, ge=1, le=10_000)
    worker_poll_seconds: float = Field(default=1.0, gt=0)
    # Messages one worker process sends at the same time, across profiles;
    # each uses a connection of its own.
    worker_concurrency: int = Field(default=16, ge=1, le=1000)
    # Messages a connection may have had accepted by the server before their
    # outcomes are committed. A killed worker sends at most concurrency times
    # this many messages again.
    worker_unrecorded_per_connection: int = Field(default=8, ge=1, le=1000)
    shutdown_timeout_seconds: float = Field(default=30.0, ge=0)
    lease_seconds: float = Field(default=300.0, gt=0)
    max_attempts: int = Field(default=8, ge=1)
    max_message_age_seconds: float = Field(default=2 * 24 * 3600.0, gt=0)
    retry_base_seconds: float = Field(default=30.0, gt=0)
    retry_max_seconds: float = Field(default=3600.0, gt=0)

    # Scheduler and reports.
    scheduler_poll_seconds: float = Field(default=5.0, gt=0, le=60)
    scheduler_grace_seconds: float = Field(default=3600.0, ge=0)
    report_max_rows: int = Field(default=100_000, ge=1)
    report_max_seconds: float = Field(default=300.0, gt=0)
    report_max_message_bytes: int = Field(default=10_000_000, ge=100_000)
    # Named SQL data sources for report queries: name -> SQLAlchemy URL. The
    # URLs may contain passwords, so they stay out of repr and logs.
    data_sources: dict[str, str] = Field(default_factory=dict, repr=False)

    # Notifications: template rendering runs in separate processes, each
    # stopped after the timeout and capped at the memory allowance.
    render_timeout_seconds: float = Field(default=2.0, gt=0, le=120)
    render_max_output_chars: int = Field(default=1_000_000, ge=1000)
    render_memory_mb: int = Field(default=512, ge=64)
    render_processes: int = Field(default=2, ge=1, le=64)
    # An idempotency key is remembered at least this long.
    idempotency_hours: float = Field(default=24.0, ge=24)
    # How long a request waits for another one with the same idempotency
    # key to finish before it gets 409.
    idempotency_wait_seconds: float = Field(default=10.0, gt=0, le=300)

    @field_validator("log_format")
    @classmethod
    def _known_log_format(cls, value: str) -> str:
        if value not in ("json", "text"):
            raise ValueError("must be 'json' or 'text'")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_log_level(cls, value: str) -> str:
        level = value.upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return level

    @field_validator("data_sources")
    @classmethod
    def _valid_data_sources(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not _DATA_SOURCE_NAME.fullmatch(name):
                raise ValueError(
                    f"data source name {name!r} must be lower-case letters, digits "
                    "and underscores, starting with a letter"
                )
        return value

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'postroom.db'}"

    @property
    def key_file(self) -> Path:
        return self.data_dir / "secret.key"


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as stream:
            return tomllib.load(stream)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc


def _from_environment(environ: dict[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in Settings.model_fields:
        if name == "data_sources":
            continue
        raw = environ.get(ENV_PREFIX + name.upper())
        if raw is not None and raw != "":
            values[name] = raw
    return values


def _data_sources_from_environment(environ: dict[str, str]) -> dict[str, str]:
    return {
        key[len(DATA_SOURCE_ENV_PREFIX) :].lower(): value
        for key, value in environ.items()
        if key.startswith(DATA_SOURCE_ENV_PREFIX) and value
    }


def load_settings(
    environ: dict[str, str] | None = None, config_file: Path | None = None
) -> Settings:
    """Build the settings; raise ConfigError naming the setting at fault."""
    env = dict(os.environ if environ is None else environ)
    from_env = _from_environment(env)

    data_dir = Path(from_env.get("data_dir", default_data_dir())).expanduser()
    if config_file is None and env.get(ENV_PREFIX + "CONFIG"):
        config_file = Path(env[ENV_PREFIX + "CONFIG"])
    if config_file is None and (data_dir / CONFIG_FILE_NAME).is_file():
        config_file = data_dir / CONFIG_FILE_NAME

    values: dict[str, Any] = _read_toml(config_file) if config_file else {}
    values.update(from_env)
    from_env_sources = _data_sources_from_environment(env)
    if from_env_sources:
        values["data_sources"] = {**values.get("data_sources", {}), **from_env_sources}

    try:
        return Settings(**values)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"])
            source = f"{ENV_PREFIX}{field.upper()} or '{field}' in the config file"
            if field.startswith("data_sources"):
                source = (
                    f"{DATA_SOURCE_ENV_PREFIX}<NAME> or the [data_sources] table "
                    "in the config file"
                )
            problems.append(f"{field}: {error['msg']} (set by {source})")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from exc
