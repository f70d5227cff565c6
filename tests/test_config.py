"""Settings from the environment and the TOML file; the key file."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from postroom.config import ConfigError, load_settings
from postroom.crypto import (
    SecretKeyError,
    generate_key,
    load_or_create_key_file,
    secret_box_from,
)


def test_environment_beats_toml(tmp_path: Path) -> None:
    config = tmp_path / "postroom.toml"
    config.write_text('http_port = 9000\nlog_level = "debug"\n')

    settings = load_settings(
        {"POSTROOM_DATA_DIR": str(tmp_path), "POSTROOM_HTTP_PORT": "9100"}
    )

    assert settings.http_port == 9100
    assert settings.log_level == "DEBUG"
    assert settings.effective_database_url == f"sqlite:///{tmp_path / 'postroom.db'}"


def test_config_file_named_by_environment(tmp_path: Path) -> None:
    config = tmp_path / "elsewhere.toml"
    config.write_text('database_url = "postgresql://u@db.internal/postroom"\n')

    settings = load_settings(
        {"POSTROOM_DATA_DIR": str(tmp_path / "data"), "POSTROOM_CONFIG": str(config)}
    )

    assert settings.database_url == "postgresql://u@db.internal/postroom"


def test_invalid_value_names_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="http_port") as caught:
        load_settings(
            {"POSTROOM_DATA_DIR": str(tmp_path), "POSTROOM_HTTP_PORT": "99999"}
        )
    assert "POSTROOM_HTTP_PORT" in str(caught.value)


def test_unknown_toml_key_is_refused(tmp_path: Path) -> None:
    (tmp_path / "postroom.toml").write_text("htp_port = 1\n")

    with pytest.raises(ConfigError, match="htp_port"):
        load_settings({"POSTROOM_DATA_DIR": str(tmp_path)})


def test_broken_toml_is_reported(tmp_path: Path) -> None:
    (tmp_path / "postroom.toml").write_text("http_port = \n")

    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings({"POSTROOM_DATA_DIR": str(tmp_path)})


def test_key_file_created_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "data" / "secret.key"

    first = load_or_create_key_file(path)
    second = load_or_create_key_file(path)

    assert first == second
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_rotated_keys_still_decrypt(tmp_path: Path) -> None:
    old = secret_box_from(None, tmp_path / "secret.key")
    token = old.encrypt("pw")
    old_key = (tmp_path / "secret.key").read_text().strip()
    new_key = generate_key()

    rotated = secret_box_from(f"{new_key},{old_key}", tmp_path / "unused.key")

    assert rotated.decrypt(token) == "pw"
    assert secret_box_from(new_key, tmp_path / "unused.key").encrypt("x") != token
    with pytest.raises(SecretKeyError):
        secret_box_from(new_key, tmp_path / "unused.key").decrypt(token)


def test_malformed_secret_key(tmp_path: Path) -> None:
    with pytest.raises(SecretKeyError, match="postroom key generate"):
        secret_box_from("not-a-key", tmp_path / "unused.key")
