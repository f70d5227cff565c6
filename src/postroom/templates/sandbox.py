"""Sandboxed Jinja2 rendering of operator-written templates.

This module runs inside a render process (see postroom.templates.isolation),
which bounds time and memory. Here Jinja2's immutable sandbox blocks access
to internals: attributes starting with an underscore, ``mro``, function
globals and methods that change data. No loader exists, so ``include``,
``import`` and ``extends`` cannot reach files. Output is counted while it is
produced, and operations that allocate a huge result in one C call
(``'x' * 10**9``, ``10 ** 10 ** 9``, ``'x'|center(10**9)``, ``'%09999999d' % 1``)
are rejected before they run (see postroom.templates.size_checks).

A job is a plain dict so that it pickles cheaply:

* ``parts``: ``{label: [kind, source]}`` where kind is ``text`` (a template
  rendered as plain text), ``html`` (autoescaped) or ``expression`` (a Jinja
  expression whose value is returned, for attachments).
* ``context``: the variables (event data plus ``event``), for ``render``.
* ``max_output``: the maximum characters per rendered part.
"""

from __future__ import annotations

import math
import traceback
from collections import OrderedDict
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, meta, nodes
from jinja2.exceptions import SecurityError, TemplateError, UndefinedError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from postroom.templates.html_text import html_to_text
from postroom.templates.size_checks import (
    check_printf,
    check_str_method,
    guard_filters,
)

# The largest integer a template may produce with ** or *, in bits: a
# 4096-bit number has about 1233 decimal digits, far more than any amount,
# count or id in a notification needs.
MAX_INTEGER_BITS = 4096
_COMPILED_CACHE_SIZE = 512
# Names Jinja2 provides itself; they are not variables the event must carry.
_GLOBAL_NAMES = frozenset({"range", "dict", "cycler", "joiner", "namespace"})


class OutputTooLarge(TemplateError):
    pass


def _finalize(value: Any) -> Any:
    # JSON null in event data prints as nothing rather than "None".
    return "" if value is None else value


class PostroomSandbox(ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox with size checks on *, **, % and string builders."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def __init__(self, *, autoescape: bool, max_output: int) -> None:
        super().__init__(
            autoescape=autoescape,
            undefined=StrictUndefined,
            finalize=_finalize,
            auto_reload=False,
        )
        self.max_output = max_output
        # lipsum() writes as much text as it is asked for; nothing a
        # notification needs.
        self.globals.pop("lipsum", None)
        guard_filters(self.filters, max_output)

    def getattr(self, obj: Any, attribute: str) -> Any:
        # Event data is JSON, so ``order.items`` means the key "items", not
        # the dict method of that name that Jinja2 would find first.
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    # The parameter names are Jinja2's own: a template's keyword arguments
    # cannot clash with them.
    def call(
        __self,
        __context: Context,
        __obj: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        check_str_method(__obj, args, kwargs, __self.max_output)
        return super().call(__context, __obj, *args, **kwargs)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "%":
            check_printf(left, right, self.max_output)
        if operator == "*":
            self._check_repeat(left, right)
            self._check_repeat(right, left)
            if _is_int(left) and _is_int(right):
                bits = abs(left).bit_length() + abs(right).bit_length()
                if bits > MAX_INTEGER_BITS:
                    raise SecurityError("the product is too large a number")
        if (
            operator == "**"
            and _is_int(left)
            and _is_int(right)
            and right > 0
            and abs(left) > 1
            and right * math.log2(abs(left)) > MAX_INTEGER_BITS
        ):
            raise SecurityError("the power is too large a number")
        return super().call_binop(context, operator, left, right)

    def _check_repeat(self, sequence: Any, count: Any) -> None:
        repeatable = isinstance(sequence, str | list | tuple) and _is_int(count)
        if repeatable and len(sequence) * count > self.max_output:
            raise SecurityError(
                f"repeating a sequence {count} times would produce more "
                f"than {self.max_output} items"
            )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Environments:
    """The two sandboxes of one render process, with their compiled templates."""

    def __init__(self, max_output: int) -> None:
        self.text = PostroomSandbox(autoescape=False, max_output=max_output)
        self.html = PostroomSandbox(autoescape=True, max_output=max_output)
        self._compiled: OrderedDict[tuple[str, str, str], Any] = OrderedDict()

    def environment(self, kind: str) -> PostroomSandbox:
        return self.html if kind == "html" else self.text

    def compile(self, kind: str, label: str, source: str) -> Any:
        key = (kind, label, source)
        cached = self._compiled.get(key)
        if cached is not None:
            self._compiled.move_to_end(key)
            return cached
        environment = self.environment(kind)
        if kind == "expression":
            compiled: Any = environment.compile_expression(
                source, undefined_to_none=False
            )
        else:
            code = environment.compile(source, name=label, filename=label)
            compiled = environment.template_class.from_code(
                environment, code, environment.make_globals(None), None
            )
        self._compiled[key] = compiled
        if len(self._compiled) > _COMPILED_CACHE_SIZE:
            self._compiled.popitem(last=False)
        return compiled


_environments: dict[int, _Environments] = {}


def _environments_for(max_output: int) -> _Environments:
    environments = _environments.get(max_output)
    if environments is None:
        environments = _environments[max_output] = _Environments(max_output)
    return environments


def _line_of(exc: BaseException, label: str) -> int | None:
    if isinstance(exc, TemplateSyntaxError):
        return exc.lineno
    # Jinja2 rewrites tracebacks so that template frames carry the
    # template's file name (here the part label) and its own line numbers.
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename == label:
            return frame.lineno
    return None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TemplateSyntaxError):
        return exc.message or "invalid syntax"
    if isinstance(exc, SecurityError):
        return f"not allowed in a template: {exc}"
    if isinstance(exc, UndefinedError | OutputTooLarge):
        return str(exc)
    if isinstance(exc, TemplateError):
        return str(exc) or type(exc).__name__
    if isinstance(exc, TypeError) and "no loader" in str(exc):
        return (
            "include, import and extends are not available: templates cannot read files"
        )
    return f"{type(exc).__name__}: {exc}"


def _error(exc: BaseException, label: str, kind: str) -> dict[str, Any]:
    return {
        "part": label,
        "line": None if kind == "expression" else _line_of(exc, label),
        "reason": _reason(exc),
    }


def _variable_paths(node: nodes.Node, declared_roots: set[str]) -> set[str]:
    """Collect dotted paths such as ``customer.email`` read from undeclared names."""
    paths: set[str] = set()

    def chain(current: nodes.Node) -> list[str] | None:
        if isinstance(current, nodes.Name):
            return [current.name]
        if isinstance(current, nodes.Getattr):
            inner = chain(current.node)
            return None if inner is None else [*inner, current.attr]
        if isinstance(current, nodes.Getitem) and isinstance(current.arg, nodes.Const):
            inner = chain(current.node)
            if inner is None or not isinstance(current.arg.value, str | int):
                return None
            return [*inner, str(current.arg.value)]
        return None

    def visit(current: nodes.Node) -> None:
        if isinstance(current, nodes.Name | nodes.Getattr | nodes.Getitem):
            parts = chain(current)
            if parts is not None:
                if parts[0] in declared_roots:
                    paths.add(".".join(parts))
                if isinstance(current, nodes.Getitem):
                    visit(current.arg)
                return
        for child in current.iter_child_nodes():
            visit(child)

    visit(node)
    return paths


def _data_variables(paths: set[str]) -> set[str]:
    """Map paths to event data: ``event.data.x`` is ``x``, other ``event.*`` are not data."""
    result = set()
    for path in paths:
        root, _, rest = path.partition(".")
        if root in _GLOBAL_NAMES:
            continue
        if root == "event":
            if rest.startswith("data.") and len(rest) > len("data."):
                result.add(rest[len("data.") :])
            continue
        result.add(path)
    return result


def check(job: dict[str, Any]) -> dict[str, Any]:
    """Compile every part; return the errors and the variables the parts read."""
    environments = _environments_for(job["max_output"])
    errors = []
    variables: set[str] = set()
    for label, (kind, source) in job["parts"].items():
        environment = environments.environment(kind)
        try:
            environments.compile(kind, label, source)
            text = "{{ " + source + " }}" if kind == "expression" else source
            tree = environment.parse(text)
        except Exception as exc:
            errors.append(_error(exc, label, kind))
            continue
        undeclared = meta.find_undeclared_variables(tree)
        variables |= _data_variables(_variable_paths(tree, set(undeclared)))
    return {"errors": errors, "variables": sorted(variables)}


def _plain(value: Any, depth: int = 0) -> Any:
    """Turn an expression's value into JSON-like data the parent process can use."""
    if depth > 20:
        raise SecurityError("the value is nested too deeply")
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, dict):
        return {str(key): _plain(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item, depth + 1) for item in value]
    return str(value)


def _render_part(
    environments: _Environments,
    kind: str,
    label: str,
    source: str,
    context: dict[str, Any],
    max_output: int,
) -> Any:
    compiled = environments.compile(kind, label, source)
    if kind == "expression":
        # Attachments are optional: data without the value attaches nothing.
        try:
            return _plain(compiled(**context))
        except UndefinedError:
            return None
    produced = 0
    chunks = []
    for chunk in compiled.generate(context):
        produced += len(chunk)
        if produced > max_output:
            raise OutputTooLarge(
                f"the output is longer than {max_output} characters; shorten the "
                "template or the data it loops over"
            )
        chunks.append(chunk)
    return "".join(chunks)


def render(job: dict[str, Any]) -> dict[str, Any]:
    """Render every part; stop at the first error and return it."""
    max_output = job["max_output"]
    environments = _environments_for(max_output)
    context = job["context"]
    values: dict[str, Any] = {}
    for label, (kind, source) in job["parts"].items():
        try:
            values[label] = _render_part(
                environments, kind, label, source, context, max_output
            )
        except MemoryError:
            raise
        except Exception as exc:
            return {"values": values, "error": _error(exc, label, kind)}
    # The text part is generated from the HTML when the template has no text
    # body or its text body rendered blank.
    html_label = job.get("text_from_html")
    text = values.get("text_body")
    if html_label and values.get(html_label) and not (text and text.strip()):
        try:
            values["text_from_html"] = html_to_text(values[html_label])
        except Exception as exc:
            return {"values": values, "error": _error(exc, html_label, "html")}
    return {"values": values, "error": None}


OPERATIONS = {"check": check, "render": render}
