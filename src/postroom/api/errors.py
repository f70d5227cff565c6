"""Map service errors to HTTP answers in FastAPI's own error shape."""

from __future__ import annotations

from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse

from postroom.crypto import SecretKeyError
from postroom.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PostroomError,
)

_STATUS = {
    InvalidInputError: status.HTTP_422_UNPROCESSABLE_CONTENT,
    NotFoundError: status.HTTP_404_NOT_FOUND,
    ConflictError: status.HTTP_409_CONFLICT,
}


def _body(error: PostroomError, kind: str) -> dict[str, object]:
    # The same shape FastAPI uses for request validation errors, so a client
    # reads every 4xx the same way: detail[].loc names the field.
    loc: list[str] = ["body", error.field] if error.field else ["body"]
    return {"detail": [{"loc": loc, "msg": error.message, "type": kind}]}


def install_error_handlers(app: FastAPI) -> None:
    async def postroom_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, PostroomError)
        code = next(
            (value for cls, value in _STATUS.items() if isinstance(exc, cls)),
            status.HTTP_400_BAD_REQUEST,
        )
        kind = {404: "not_found", 409: "conflict", 422: "value_error"}.get(
            code, "error"
        )
        return JSONResponse(_body(exc, kind), status_code=code)

    async def secret_key_error(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(
            {"detail": [{"loc": ["server"], "msg": str(exc), "type": "configuration"}]},
            status_code=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )

    app.add_exception_handler(PostroomError, postroom_error)
    app.add_exception_handler(SecretKeyError, secret_key_error)
