"""Rotating the secret key re-encrypts every stored secret."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from postroom.cli.main import app
from postroom.crypto import SecretKeyError, generate_key, secret_box_from
from postroom.domain import profiles
from postroom.domain.db import transaction
from postroom.domain.rekey import encrypted_columns, rotate_secrets
from tests.conftest import make_runtime


def test_encrypted_columns_found() -> None:
    columns = {table.name: names for table, names in encrypted_columns()}

    assert "password_encrypted" in columns["profiles"]
    assert any(name.startswith("refresh_token") for name in columns["oauth_grants"])


def test_rotate_with_cli(tmp_path: Path) -> None:
    old, new = generate_key(), generate_key()
    env = {"POSTROOM_DATA_DIR": str(tmp_path / "data"), "POSTROOM_SECRET_KEY": old}
    runner = CliRunner()
    created = runner.invoke(
        app,
        [
            "profile",
            "create",
            "Orders",
            "--host",
            "smtp.example.com",
            "--login",
            "a",
            "--password-stdin",
            "--from",
            "a@example.com",
        ],
        env=env,
        input="pw-123\n",
    )
    assert created.exit_code == 0, created.output

    rotated = runner.invoke(
        app, ["key", "rotate"], env={**env, "POSTROOM_SECRET_KEY": f"{new},{old}"}
    )

    assert rotated.exit_code == 0, rotated.output
    assert "re-encrypted 1 stored secrets" in rotated.stdout
    runtime = make_runtime(tmp_path, None)
    with transaction(runtime.sessions) as session:
        stored = profiles.get_profile(session, "Orders").password_encrypted
    assert stored is not None
    assert secret_box_from(new, tmp_path / "unused").decrypt(stored) == "pw-123"
    with pytest.raises(SecretKeyError):
        secret_box_from(old, tmp_path / "unused").decrypt(stored)


def test_rotate_without_old_key_changes_nothing(tmp_path: Path) -> None:
    runtime = make_runtime(tmp_path, None)
    with transaction(runtime.sessions) as session:
        profiles.create_profile(
            session,
            runtime.secrets,
            profiles.ProfileInput(
                name="Orders",
                host="smtp.example.com",
                login="a",
                password="pw",
                confirm_password="pw",
                from_address="a@example.com",
            ),
        )
        before = profiles.get_profile(session, "Orders").password_encrypted

    wrong = secret_box_from(generate_key(), tmp_path / "unused")
    with pytest.raises(SecretKeyError), transaction(runtime.sessions) as session:
        rotate_secrets(session, wrong)

    with transaction(runtime.sessions) as session:
        assert profiles.get_profile(session, "Orders").password_encrypted == before
