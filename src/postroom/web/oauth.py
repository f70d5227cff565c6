"""Pages of the OAuth connect flow, mounted at /oauth.

They need no API token: the state in the URL is the credential, random,
single-use and short-lived (see postroom.oauth.flow).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from postroom.api.deps import RuntimeDep
from postroom.errors import NotFoundError
from postroom.oauth.flow import complete_flow, pending_flow

router = APIRouter(prefix="/oauth", include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")

# The pages hold a capability in their URL: keep it out of other sites'
# Referer headers and out of caches.
_HEADERS = {"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}


def _invalid(request: Request, error: NotFoundError) -> HTMLResponse:
    return templates.TemplateResponse(
        request,
        "oauth_invalid.html",
        {"message": error.message},
        status_code=404,
        headers=_HEADERS,
    )


@router.get("/start/{state}", response_class=HTMLResponse)
async def start_page(state: str, request: Request, runtime: RuntimeDep) -> HTMLResponse:
    try:
        flow = await asyncio.to_thread(pending_flow, runtime.sessions, state)
    except NotFoundError as error:
        return _invalid(request, error)
    return templates.TemplateResponse(
        request, "oauth_start.html", {"flow": flow}, headers=_HEADERS
    )


@router.get("/callback", response_class=HTMLResponse)
async def callback_page(
    request: Request,
    runtime: RuntimeDep,
    state: str = "",
    code: str | None = None,
    error: str | None = None,
    error_description: str | None = None,
) -> HTMLResponse:
    try:
        result = await asyncio.to_thread(
            complete_flow,
            runtime.sessions,
            runtime.secrets,
            state,
            code=code,
            error=error,
            error_description=error_description,
        )
    except NotFoundError as exc:
        return _invalid(request, exc)
    return templates.TemplateResponse(
        request,
        "oauth_result.html",
        {"result": result},
        status_code=200 if result.ok else 400,
        headers=_HEADERS,
    )
