"""Map errors to HTTP responses in FastAPI's own error shape.

Every 4xx response has ``detail`` as a list of ``{"loc", "msg", "type"}``, the
shape FastAPI uses for request validation errors, so a client reads them all
the same way: ``loc`` starts with where the value came from (``path``,
``query``, ``body`` or ``header``) and ends with the field at fault.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from sqlalchemy.exc import DataError, IntegrityError
from starlette.exceptions import HTTPException

from postroom.crypto import SecretKeyError
from postroom.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PostroomError,
)

log = logging.getLogger("postroom.api")

_STATUS = {
    InvalidInputError: status.HTTP_422_UNPROCESSABLE_CONTENT,
    NotFoundError: status.HTTP_404_NOT_FOUND,
    ConflictError: status.HTTP_409_CONFLICT,
}

# The ``loc`` of an HTTPException, by status. These exceptions come from the
# token check, from Starlette's routing and from FastAPI's body reading.
_HTTP_LOCATIONS: dict[int, list[str]] = {
    status.HTTP_400_BAD_REQUEST: ["body"],
    status.HTTP_401_UNAUTHORIZED: ["header", "Authorization"],
    status.HTTP_403_FORBIDDEN: ["header", "Authorization"],
    status.HTTP_404_NOT_FOUND: ["path"],
    status.HTTP_405_METHOD_NOT_ALLOWED: ["method"],
    status.HTTP_413_CONTENT_TOO_LARGE: ["body"],
    status.HTTP_415_UNSUPPORTED_MEDIA_TYPE: ["header", "Content-Type"],
}
_HTTP_TYPES = {
    status.HTTP_400_BAD_REQUEST: "invalid_body",
    status.HTTP_401_UNAUTHORIZED: "unauthorized",
    status.HTTP_403_FORBIDDEN: "forbidden",
    status.HTTP_404_NOT_FOUND: "not_found",
    status.HTTP_405_METHOD_NOT_ALLOWED: "method_not_allowed",
    status.HTTP_409_CONFLICT: "conflict",
    status.HTTP_413_CONTENT_TOO_LARGE: "too_large",
}

# SQLSTATE of a unique violation (PostgreSQL), and the text SQLite gives.
_UNIQUE_VIOLATION = "23505"
_SQLITE_UNIQUE = "UNIQUE constraint failed"


def _query_names(dependant: Dependant) -> set[str]:
    names = {param.alias for param in dependant.query_params}
    for dependency in dependant.dependencies:
        names |= _query_names(dependency)
    return names


def error_location(request: Request, error: PostroomError) -> list[str]:
    """Return ``loc`` for a service error: the path, query or body field at fault.

    Services name a field but not where it came from. A field named like a
    path parameter is that parameter when the resource it names was not
    found, or when the request has no body that could hold the field too
    (``DELETE /api/profiles/{name}`` of a system profile). A field named like
    a declared query parameter is that parameter. Anything else is the body.
    """
    field = error.field
    if not field:
        return ["body"]
    route = request.scope.get("route")
    has_body = isinstance(route, APIRoute) and route.body_field is not None
    if field in request.path_params and (
        isinstance(error, NotFoundError) or not has_body
    ):
        return ["path", field]
    if isinstance(route, APIRoute) and field in _query_names(route.dependant):
        return ["query", field]
    return ["body", field]


def _detail(loc: list[str], message: str, kind: str) -> dict[str, object]:
    return {"detail": [{"loc": loc, "msg": message, "type": kind}]}


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def install_error_handlers(app: FastAPI) -> None:
    async def postroom_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, PostroomError)
        code = next(
            (value for cls, value in _STATUS.items() if isinstance(exc, cls)),
            status.HTTP_400_BAD_REQUEST,
        )
        kind = {404: "not_found", 409: "conflict", 422: "value_error"}.get(
            code, "error"
        )
        loc = error_location(request, exc)
        return JSONResponse(_detail(loc, exc.message, kind), status_code=code)

    async def database_error(request: Request, exc: Exception) -> JSONResponse:
        # A value that validation let through and the database rejected, such
        # as a string longer than its column. The request's transaction has
        # been rolled back by then, so nothing was stored. Only the first line
        # of the driver's message is used: the rest (PostgreSQL's DETAIL, and
        # SQLAlchemy's statement and parameters) may show stored values.
        assert isinstance(exc, DataError | IntegrityError)
        reason = _first_line(exc.orig) if exc.orig is not None else _first_line(exc)
        sqlstate = getattr(exc.orig, "sqlstate", None)
        unique = sqlstate == _UNIQUE_VIOLATION or _SQLITE_UNIQUE in reason

        log.error(
            "the database rejected a request's data",
            extra={
                "method": request.method,
                "path": request.url.path,
                "error": type(exc.orig or exc).__name__,
                "reason": reason,
                "sqlstate": sqlstate,
            },
        )

        if unique:
            message = (
                f"conflicts with a stored row ({reason}); choose another name. "
                "Nothing was stored."
            )
            return JSONResponse(
                _detail(["body"], message, "conflict"),
                status_code=status.HTTP_409_CONFLICT,
            )

        message = (
            f"the database rejected a value ({reason}); check the field lengths "
            "and ranges in the API documentation. Nothing was stored."
        )
        return JSONResponse(
            _detail(["body"], message, "value_error"),
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        )

    async def http_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code in (
            status.HTTP_204_NO_CONTENT,
            status.HTTP_304_NOT_MODIFIED,
        ):
            return Response(status_code=exc.status_code, headers=exc.headers)
        if isinstance(exc.detail, list):
            body: dict[str, object] = {"detail": exc.detail}
        else:
            loc = _HTTP_LOCATIONS.get(exc.status_code, ["request"])
            kind = _HTTP_TYPES.get(exc.status_code, "error")
            body = _detail(loc, str(exc.detail), kind)
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    async def secret_key_error(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(
            _detail(["server"], str(exc), "configuration"),
            status_code=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )

    app.add_exception_handler(PostroomError, postroom_error)
    app.add_exception_handler(DataError, database_error)
    app.add_exception_handler(IntegrityError, database_error)
    app.add_exception_handler(HTTPException, http_error)
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
