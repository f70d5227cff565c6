"""Subject and body templates of jobs, rendered in a Jinja2 sandbox.

Operators write the templates, so they run sandboxed: no access to Python
internals, no changes to the values passed in, and bounded repetition so a
template cannot exhaust memory with ``{{ "x" * 10**9 }}``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from postroom.errors import InvalidInputError

# Maximum length of a string or list a template builds with '*', and the
# maximum exponent of '**'.
MAX_REPEAT_LENGTH = 100_000
MAX_EXPONENT = 100

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


class _Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int) and right > MAX_EXPONENT:
            raise SecurityError(f"exponents above {MAX_EXPONENT} are not allowed")
        if operator == "*":
            for sequence, count in ((left, right), (right, left)):
                if (
                    isinstance(sequence, str | list | tuple)
                    and isinstance(count, int)
                    and len(sequence) * count > MAX_REPEAT_LENGTH
                ):
                    raise SecurityError(
                        f"repeating to more than {MAX_REPEAT_LENGTH:,} items is not "
                        "allowed"
                    )
        return super().call_binop(context, operator, left, right)


_ENVIRONMENT = _Sandbox(undefined=StrictUndefined, autoescape=False)


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


def render(source: str, context: dict[str, Any]) -> str:
    """Render ``source``; raise TemplateError or SecurityError on failure."""
    return _ENVIRONMENT.from_string(source).render(context)


def check_template(source: str, field: str) -> str:
    """Compile ``source`` and render it with sample values; raise InvalidInputError."""
    try:
        render(source, sample_context())
    except TemplateError as exc:
        names = ", ".join(TEMPLATE_VARIABLES)
        raise InvalidInputError(
            f"template error: {exc.message or exc}; the variables are {names}",
            field=field,
        ) from exc
    return source
