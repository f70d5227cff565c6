"""Encryption of stored secrets (SMTP passwords, tokens) with Fernet.

The key lives outside the database: in ``POSTROOM_SECRET_KEY`` or in a key
file that is created with mode 0600 on first start. A copy of the database
alone therefore reveals no password.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class SecretKeyError(Exception):
    """The secret key is missing, malformed or does not match stored data."""


class SecretBox:
    """Encrypts and decrypts secrets; the first key encrypts, any key decrypts."""

    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise SecretKeyError("no secret key given")
        try:
            self._fernet = MultiFernet([Fernet(key) for key in keys])
        except ValueError as exc:
            raise SecretKeyError(
                "secret key is not a valid Fernet key (32 url-safe base64-encoded "
                "bytes); generate one with `postroom key generate`"
            ) from exc

    def encrypt(self, plaintext: str) -> bytes:
        return self._fernet.encrypt(plaintext.encode("utf-8"))

    def rotate(self, token: bytes) -> bytes:
        """Re-encrypt a stored secret with the first key."""
        try:
            return self._fernet.rotate(token)
        except InvalidToken as exc:
            raise SecretKeyError(
                "a stored secret cannot be decrypted with any configured key; "
                "keep the old key in POSTROOM_SECRET_KEY until rotation is done"
            ) from exc

    def decrypt(self, token: bytes) -> str:
        try:
            return self._fernet.decrypt(token).decode("utf-8")
        except InvalidToken as exc:
            raise SecretKeyError(
                "a stored secret cannot be decrypted with the configured key; "
                "was POSTROOM_SECRET_KEY or the key file changed?"
            ) from exc


def generate_key() -> str:
    return Fernet.generate_key().decode("ascii")


def load_or_create_key_file(path: Path) -> bytes:
    """Read the key file, creating it with owner-only permissions if missing."""
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass

    path.parent.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key()
    # O_EXCL makes two processes starting at once agree on one key: the loser
    # of the race falls through and reads the winner's file.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as stream:
        stream.write(key + b"\n")
    return key


def secret_box_from(secret_key: str | None, key_file: Path) -> SecretBox:
    if secret_key:
        keys = [part.strip().encode("ascii") for part in secret_key.split(",")]
        return SecretBox([key for key in keys if key])
    return SecretBox([load_or_create_key_file(key_file)])
