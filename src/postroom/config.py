"""Settings from environment variables and an optional TOML file.

Precedence, highest first: environment variables, the TOML file, defaults.
The TOML file is the one named by ``POSTROOM_CONFIG``, else
``postroom.toml`` in the data directory when it exists.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

ENV_PREFIX = "POSTROOM_"
CONFIG_FILE_NAME = "postroom.toml"


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

    log_level: str = "INFO"
    log_format: str = "json"

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


def _from_environment(environ: dict[str, str]) -> dict[str, str]:
    values = {}
    for name in Settings.model_fields:
        raw = environ.get(ENV_PREFIX + name.upper())
        if raw is not None and raw != "":
            values[name] = raw
    return values


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

    try:
        return Settings(**values)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"])
            source = f"{ENV_PREFIX}{field.upper()} or '{field}' in the config file"
            problems.append(f"{field}: {error['msg']} (set by {source})")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from exc
