"""Diagnose a pasted SMTP reply or error message."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from postroom.api.deps import TokenDep
from postroom.diagnosis.pasted import MAX_TEXT_LENGTH, diagnose_text
from postroom.domain.models import AuthMechanism, Security
from postroom.smtp.errors import Step

router = APIRouter(prefix="/api/diagnose", tags=["diagnosis"])


class DiagnoseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(
        max_length=MAX_TEXT_LENGTH,
        description="The server's reply or the error message another program printed.",
    )
    step: Step | None = None
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    security: Security | None = None
    mechanism: AuthMechanism | None = None


@router.post("")
def diagnose(request: DiagnoseRequest, _token: TokenDep) -> dict[str, Any]:
    """Return the catalogue entry that explains the text; ``matched`` is false
    when none does."""
    result = diagnose_text(
        request.text,
        step=request.step,
        host=request.host,
        port=request.port,
        security=request.security.value if request.security else None,
        mechanism=request.mechanism.value if request.mechanism else None,
    )
    return result.as_dict()
