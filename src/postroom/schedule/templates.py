"""Subject and body templates of jobs, rendered in the template render processes.

Operators write the templates, so they render where notification templates
do (postroom.templates.isolation): Jinja2's sandbox in a separate process
with the same time and memory limits (POSTROOM_RENDER_*), stopped when it
runs past them. A template that loops without end or builds a huge string
fails with a reason instead of taking the service's CPU and memory, both
when a job is saved (a trial render with sample values) and when it runs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from postroom.errors import InvalidInputError
from postroom.templates.render import RenderLimits, TemplateRenderError, run_job

DEFAULT_SUBJECT = "{{ job }}: {{ rows }} rows on {{ run_date }}"
DEFAULT_BODY = (
    "The {{ job }} report for {{ run_date }} has {{ rows }} rows.\n\nSent by Postroom."
)

# Variables a template can use; sample_context() gives each a value for the
# trial render when a job is saved.
TEMPLATE_VARIABLES = (
    "job",
    "client",
    "rows",
    "run_date",
    "run_time",
    "run_at",
    "time_zone",
    "report",
    "format",
)


def sample_context() -> dict[str, Any]:
    at = datetime(2026, 1, 5, 7, 0)
    return {
        "job": "Open orders",
        "client": "Example",
        "rows": 12,
        "run_date": at.date().isoformat(),
        "run_time": "2026-01-05 07:00 CST",
        "run_at": at,
        "time_zone": "America/Chicago",
        "report": "Open orders",
        "format": "csv",
    }


def render(
    source: str, context: dict[str, Any], field: str, limits: RenderLimits
) -> str:
    """Render ``source`` in a render process; raise TemplateRenderError.

    The error's ``part`` is ``field`` ("subject" or "body"), and its
    ``reason`` names what failed: a template error, a construct the sandbox
    does not allow, or the time or memory limit.
    """
    job = {"parts": {field: ["text", source]}, "context": context}
    try:
        result = run_job(limits, "render", job, template=None)
    except TemplateRenderError as exc:
        raise TemplateRenderError(exc.reason, template=None, part=field) from None
    error = result["error"]
    if error is not None:
        raise TemplateRenderError(
            error["reason"], template=None, part=field, line=error["line"]
        )
    text: str = result["values"][field]
    return text


def check_template(source: str, field: str, limits: RenderLimits) -> str:
    """Render ``source`` with sample values; raise InvalidInputError naming ``field``."""
    try:
        render(source, sample_context(), field, limits)
    except TemplateRenderError as exc:
        names = ", ".join(TEMPLATE_VARIABLES)
        where = f" (line {exc.line})" if exc.line is not None else ""
        raise InvalidInputError(
            f"template error{where}: {exc.reason}; the variables are {names}",
            field=field,
        ) from exc
    return source
