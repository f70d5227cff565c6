"""Shared accounting of what each profile has sent, for its rate limits.

One row counts the SMTP transactions a profile started in one fixed window
(a UTC second, minute or day). Every worker reserves from the same rows
inside a transaction, so a limit holds across processes and machines.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from postroom.domain.models import Base
from postroom.domain.types import UTCDateTime


class ProfileUsage(Base):
    __tablename__ = "profile_usage"

    profile_name: Mapped[str] = mapped_column(String(200), primary_key=True)
    # "second", "minute" or "day".
    period: Mapped[str] = mapped_column(String(8), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    used: Mapped[int] = mapped_column(Integer, default=0)
