"""Size checks for filters and string methods that build a string in one call.

``'x'|center(300000000)``, ``'%0300000000d'|format(1)``, ``'x'.ljust(...)``
or a ``replace`` that multiplies a string allocate their whole result in a
single C call, so counting the output as it is produced comes too late:
the render process would spend its memory and time first. Each check here
predicts the result's length from the arguments and raises SecurityError
when it would pass the output limit. The render process's memory and time
limits remain the backstop for anything these checks do not foresee.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import wraps
from typing import Any

from jinja2.exceptions import SecurityError

# A printf-style conversion: optional mapping key, flags, width, precision.
_PRINTF_FIELD = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
# A replacement field of str.format and the digit runs inside it.
_FORMAT_FIELD = re.compile(r"\{[^{}]*\}")
_DIGITS = re.compile(r"\d+")

# str methods whose first argument is the width of the result.
_WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill"})


def _too_large(what: str, limit: int) -> SecurityError:
    return SecurityError(f"{what} would produce more than {limit} characters")


def _as_int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def check_printf(template: Any, args: Any, limit: int) -> None:
    """Reject a printf-style format whose width or precision passes ``limit``."""
    if not isinstance(template, str):
        return
    values = args if isinstance(args, tuple | list) else (args,)
    star_values = [_as_int(value) for value in values]
    for match in _PRINTF_FIELD.finditer(template):
        for number in match.groups():
            if number is None:
                continue
            size = max(star_values, default=0) if number == "*" else int(number)
            if size > limit:
                raise _too_large("the format's width or precision", limit)


def check_str_format(template: str, args: Any, kwargs: Any, limit: int) -> None:
    """Reject a str.format template whose field width passes ``limit``."""
    for field in _FORMAT_FIELD.findall(template):
        if any(int(digits) > limit for digits in _DIGITS.findall(field)):
            raise _too_large("the format's width", limit)
    # A nested field ("{:{}}") takes its width from the arguments.
    if "{:{" in template or "{!r:{" in template or "{!s:{" in template:
        numbers = [_as_int(value) for value in (*args, *dict(kwargs).values())]
        if any(number > limit for number in numbers):
            raise _too_large("the format's width", limit)


def replaced_length(text: str, old: str, new: str, count: Any = None) -> int:
    """Return the length ``text.replace(old, new, count)`` would have."""
    occurrences = text.count(old) if old else len(text) + 1
    if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
        occurrences = min(occurrences, count)
    return len(text) + occurrences * (len(new) - len(old))


def check_str_method(
    method: Any, args: tuple[Any, ...], kwargs: Any, limit: int
) -> None:
    """Reject a call of a str method whose result would pass ``limit``."""
    # Jinja2's sandbox hands str.format and str.format_map over wrapped in a
    # function of its own, which keeps the bound method as __wrapped__.
    target = getattr(method, "__wrapped__", method)
    owner = getattr(target, "__self__", None)
    if not isinstance(owner, str):
        return
    name = getattr(target, "__name__", "")
    if name in _WIDTH_METHODS and args and _as_int(args[0]) > limit:
        raise _too_large(f"str.{name}", limit)
    if name == "expandtabs":
        tab_size = _as_int(args[0] if args else kwargs.get("tabsize", 8))
        if len(owner) + owner.count("\t") * tab_size > limit:
            raise _too_large("str.expandtabs", limit)
    if name == "replace" and len(args) >= 2:
        old, new = str(args[0]), str(args[1])
        count = args[2] if len(args) > 2 else kwargs.get("count")
        if replaced_length(owner, old, new, count) > limit:
            raise _too_large("str.replace", limit)
    if name in ("format", "format_map"):
        check_str_format(owner, args, kwargs, limit)


def _checked(
    function: Callable[..., Any], check: Callable[..., None]
) -> Callable[..., Any]:
    # functools.wraps copies Jinja2's pass_eval_context and pass_environment
    # markers, so Jinja2 still passes the same first argument.
    @wraps(function)
    def checked(*args: Any, **kwargs: Any) -> Any:
        check(*args, **kwargs)
        return function(*args, **kwargs)

    return checked


def guard_filters(filters: dict[str, Callable[..., Any]], limit: int) -> None:
    """Replace the filters that build large strings with checked versions."""

    def center(value: Any, width: Any = 80, *_rest: Any, **_options: Any) -> None:
        if _as_int(width) > limit:
            raise _too_large("center", limit)

    def format_filter(value: Any, *args: Any, **kwargs: Any) -> None:
        check_printf(value, kwargs or args, limit)

    def replace(
        _eval_context: Any, text: Any, old: Any, new: Any, count: Any = None
    ) -> None:
        if replaced_length(str(text), str(old), str(new), count) > limit:
            raise _too_large("replace", limit)

    def indent(text: Any, width: Any = 4, *_rest: Any, **_options: Any) -> None:
        step = len(width) if isinstance(width, str) else _as_int(width)
        source = str(text)
        if len(source) + (source.count("\n") + 1) * step > limit:
            raise _too_large("indent", limit)

    def wordwrap(
        _environment: Any,
        text: Any,
        width: Any = 79,
        break_long_words: Any = True,
        wrapstring: Any = None,
        *_rest: Any,
        **_options: Any,
    ) -> None:
        source = str(text)
        breaks = len(source) // max(_as_int(width), 1) + 1
        if len(source) + breaks * len(str(wrapstring or "\n")) > limit:
            raise _too_large("wordwrap", limit)

    checks: dict[str, Callable[..., None]] = {
        "center": center,
        "format": format_filter,
        "replace": replace,
        "indent": indent,
        "wordwrap": wordwrap,
    }
    for name, check in checks.items():
        if name in filters:
            filters[name] = _checked(filters[name], check)
