"""Request dependencies: the runtime, a database session, the caller's token."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from postroom.domain.db import transaction
from postroom.domain.models import ApiToken
from postroom.domain.tokens import verify_token
from postroom.runtime import Runtime

_bearer = HTTPBearer(
    auto_error=False, description="A token from `postroom token create`"
)
# The two 401 answers; postroom.api.guard sends the same ones before the
# request body is read.
MISSING_TOKEN = (
    "missing bearer token; create one with `postroom token create NAME` and send "
    "it as 'Authorization: Bearer <token>'"
)
INVALID_TOKEN = "invalid or revoked bearer token"


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def require_token(
    runtime: RuntimeDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiToken:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail=MISSING_TOKEN,
            headers={"WWW-Authenticate": "Bearer"},
        )
    with transaction(runtime.sessions) as session:
        token = verify_token(session, credentials.credentials)
        if token is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail=INVALID_TOKEN,
                headers={"WWW-Authenticate": "Bearer"},
            )
        return token


TokenDep = Annotated[ApiToken, Depends(require_token)]
