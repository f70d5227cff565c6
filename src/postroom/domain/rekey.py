"""Re-encrypt every stored secret with the first configured key.

Every column whose name ends in ``_encrypted`` holds a Fernet token. After
a new key is put first in ``POSTROOM_SECRET_KEY`` (with the old key after
it), rotation rewrites all of them, so the old key can then be dropped.
"""

from __future__ import annotations

from sqlalchemy import Table, select, update
from sqlalchemy.orm import Session

import postroom.domain.all_models  # noqa: F401  (registers every table)
from postroom.crypto import SecretBox
from postroom.domain.models import Base

ENCRYPTED_SUFFIX = "_encrypted"


def encrypted_columns() -> list[tuple[Table, list[str]]]:
    found = []
    for table in Base.metadata.sorted_tables:
        names = [
            column.name
            for column in table.columns
            if column.name.endswith(ENCRYPTED_SUFFIX)
        ]
        if names:
            found.append((table, names))
    return found


def rotate_secrets(session: Session, box: SecretBox) -> int:
    """Re-encrypt every stored secret in the caller's transaction; return the count.

    Raises SecretKeyError, and so changes nothing, if any secret cannot be
    decrypted with the configured keys.
    """
    count = 0
    for table, names in encrypted_columns():
        key = list(table.primary_key.columns)
        for row in session.execute(select(*key, *(table.c[name] for name in names))):
            values = {
                name: box.rotate(row._mapping[name])
                for name in names
                if row._mapping[name] is not None
            }
            if not values:
                continue
            condition = [column == row._mapping[column.name] for column in key]
            session.execute(update(table).where(*condition).values(**values))
            count += len(values)
    return count
