"""Templates: CRUD and previews."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field

from postroom.api.deps import RuntimeDep, TokenDep
from postroom.domain.db import transaction
from postroom.templates import store
from postroom.templates.preview import preview_template
from postroom.templates.render import RenderLimits
from postroom.templates.spec import TemplateInput, TemplateView

router = APIRouter(prefix="/api/templates", tags=["templates"])


class PreviewRequest(BaseModel):
    """Sample event data to render a stored template with."""

    model_config = ConfigDict(extra="forbid")

    data: dict[str, Any] | None = Field(
        default=None, description="Event data; default: the template's sample_data"
    )
    client: str | None = None
    locale: str | None = None
    raw: bool = Field(default=False, description="Include the raw message")


class DraftPreviewRequest(PreviewRequest):
    """An unsaved template and the event data to render it with."""

    template: TemplateInput


@router.get("")
def list_templates(
    runtime: RuntimeDep,
    _token: TokenDep,
    event_type: str | None = None,
    client: Annotated[
        str | None, Query(description="This client's and all-client templates")
    ] = None,
    active: bool | None = None,
) -> list[TemplateView]:
    with transaction(runtime.sessions) as session:
        templates = store.list_templates(
            session, event_type=event_type, client=client, is_active=active
        )
        return [TemplateView.of(template) for template in templates]


@router.post("", status_code=status.HTTP_201_CREATED)
def create_template(
    data: TemplateInput, runtime: RuntimeDep, _token: TokenDep, response: Response
) -> TemplateView:
    """Create a template; it is compiled first, and its variables are listed."""
    limits = RenderLimits.from_settings(runtime.settings)
    with transaction(runtime.sessions) as session:
        view = TemplateView.of(store.create_template(session, limits, data))
    response.headers["Location"] = f"/api/templates/{quote(view.name, safe='')}"
    return view


@router.post("/preview")
def preview_draft(
    request: DraftPreviewRequest, runtime: RuntimeDep, _token: TokenDep
) -> dict[str, Any]:
    """Render a template that is not saved yet; nothing is stored or queued."""
    limits = RenderLimits.from_settings(runtime.settings)
    with transaction(runtime.sessions) as session:
        template = store.preview_state(session, limits, request.template)
        return preview_template(
            session,
            limits,
            template,
            data=request.data,
            client=request.client,
            locale=request.locale,
            include_raw=request.raw,
        )


@router.get("/{name}")
def get_template(name: str, runtime: RuntimeDep, _token: TokenDep) -> TemplateView:
    with transaction(runtime.sessions) as session:
        return TemplateView.of(store.get_template(session, name))


@router.patch("/{name}")
def update_template(
    name: str, data: TemplateInput, runtime: RuntimeDep, _token: TokenDep
) -> TemplateView:
    limits = RenderLimits.from_settings(runtime.settings)
    with transaction(runtime.sessions) as session:
        return TemplateView.of(store.update_template(session, limits, name, data))


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT)
def delete_template(name: str, runtime: RuntimeDep, _token: TokenDep) -> None:
    with transaction(runtime.sessions) as session:
        store.delete_template(session, name)


@router.post("/{name}/preview")
def preview_stored(
    name: str, request: PreviewRequest, runtime: RuntimeDep, _token: TokenDep
) -> dict[str, Any]:
    """Render a stored template with sample data, as it would be sent; queue nothing."""
    limits = RenderLimits.from_settings(runtime.settings)
    with transaction(runtime.sessions) as session:
        template = store.get_template(session, name)
        return preview_template(
            session,
            limits,
            template,
            data=request.data,
            client=request.client,
            locale=request.locale,
            include_raw=request.raw,
        )
