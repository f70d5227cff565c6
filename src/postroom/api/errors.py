"""Map service errors to HTTP answers in FastAPI's own error shape."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
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


# Keys of a validation error's ``ctx`` whose values come from the schema (a
# bound, a pattern, the expected values), never from the request. Any other
# key, such as "error" (a parser message quoting the input) or "tag" (the
# submitted tag), is dropped.
_SCHEMA_CONTEXT_KEYS = frozenset(
    {
        "expected",
        "expected_tags",
        "discriminator",
        "pattern",
        "min_length",
        "max_length",
        "gt",
        "ge",
        "lt",
        "le",
        "multiple_of",
        "max_digits",
        "decimal_places",
    }
)


def validation_details(errors: Any) -> list[dict[str, Any]]:
    """Return FastAPI's validation errors without the submitted values.

    FastAPI echoes the offending ``input``, which can be a password, a client
    secret or a refresh token sent in the wrong shape or under a misspelled
    field name. Only ``loc``, ``msg``, ``type`` and the schema's own ``ctx``
    values are kept.
    """
    details: list[dict[str, Any]] = []
    for error in errors:
        detail: dict[str, Any] = {
            "loc": list(error.get("loc", ())),
            "msg": str(error.get("msg", "")),
            "type": str(error.get("type", "")),
        }
        context = {
            key: value
            for key, value in (error.get("ctx") or {}).items()
            if key in _SCHEMA_CONTEXT_KEYS
            and isinstance(value, str | int | float | bool)
        }
        if context:
            detail["ctx"] = context
        details.append(detail)
    return details


def install_validation_handler(app: FastAPI) -> None:
    async def validation_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return JSONResponse(
            {"detail": validation_details(exc.errors())},
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        )

    app.add_exception_handler(RequestValidationError, validation_error)
