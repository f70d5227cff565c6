"""Sandboxed rendering in real render processes: escapes, time, memory, size."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from postroom.templates.isolation import RenderPool
from postroom.templates.render import RenderLimits, TemplateRenderError, run_job

LIMITS = RenderLimits(timeout_seconds=1.0, max_output_chars=20_000, memory_mb=256)


@pytest.fixture
def pool(monkeypatch: pytest.MonkeyPatch) -> Iterator[RenderPool]:
    """A pool of its own, so a test that kills processes disturbs no other."""
    own = RenderPool(processes=2, memory_mb=LIMITS.memory_mb)
    monkeypatch.setattr(RenderLimits, "pool", lambda _self: own)
    yield own
    own.close()


def render(
    source: str, context: dict[str, Any] | None = None, kind: str = "text"
) -> Any:
    result = run_job(
        LIMITS,
        "render",
        {"parts": {"html_body": [kind, source]}, "context": context or {}},
        template="t",
    )
    if result["error"]:
        error = result["error"]
        raise TemplateRenderError(
            error["reason"], template="t", part=error["part"], line=error["line"]
        )
    return result["values"]["html_body"]


# Payloads from server-side template injection write-ups against Jinja2:
# reaching Python internals through dunder attributes, globals of functions
# Jinja2 exposes, the template reference, format strings, and file access.
ESCAPES = [
    ("{{ ''.__class__.__mro__ }}", "is unsafe"),
    ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "is unsafe"),
    ("{{ ''.__class__.__base__.__subclasses__() }}", "is unsafe"),
    ("{{ ().__class__.__bases__[0].__subclasses__() }}", "is unsafe"),
    ("{{ [].__class__.__base__.__subclasses__() }}", "is unsafe"),
    ("{{ cycler.__init__.__globals__.os.popen('id').read() }}", "is unsafe"),
    ("{{ joiner.__init__.__globals__ }}", "is unsafe"),
    ("{{ namespace.__init__.__globals__ }}", "is unsafe"),
    ("{{ lipsum.__globals__['os'].popen('id').read() }}", "is undefined"),
    ("{{ range.__globals__ }}", "is unsafe"),
    ("{{ self._TemplateReference__context }}", "is unsafe"),
    (
        "{{ self._TemplateReference__context.cycler.__init__.__globals__.os }}",
        "is unsafe",
    ),
    ("{{ self.__init__.__globals__.__builtins__ }}", "is unsafe"),
    ("{{ self.__dict__ }}", "is unsafe"),
    ("{{ config.items() }}", "is undefined"),
    ("{{ request.application.__globals__.__builtins__ }}", "is undefined"),
    ("{{ url_for.__globals__ }}", "is undefined"),
    ("{{ get_flashed_messages.__globals__ }}", "is undefined"),
    ("{{ ''|attr('__class__') }}", "is unsafe"),
    ("{{ ''|attr('\\x5f\\x5fclass\\x5f\\x5f') }}", "is unsafe"),
    ("{{ ()|attr('__class__')|attr('__base__') }}", "has no attribute"),
    ("{{ '{0.__class__.__mro__}'.format('') }}", "is unsafe"),
    ("{{ '%s'.format.__globals__ }}", "is unsafe"),
    ("{{ dict.__base__.__subclasses__() }}", "is unsafe"),
    ("{{ data.__class__ }}", "is unsafe"),
    ("{{ data.items.__self__.__class__ }}", "is unsafe"),
    ("{{ data.update({'x': 1}) }}", "is unsafe"),
    ("{{ data.items.append(1) }}", "is unsafe"),
    (
        "{% for c in ''.__class__.__mro__[1].__subclasses__() %}{{ c }}{% endfor %}",
        "is unsafe",
    ),
    ("{% set x = ''.__class__ %}{{ x }}", "is unsafe"),
    ("{% include '/etc/passwd' %}", "cannot read files"),
    ("{% import 'os' as os %}{{ os }}", "cannot read files"),
    ("{% extends '/etc/hostname' %}", "cannot read files"),
    ("{% from 'x' import y %}", "cannot read files"),
]


@pytest.mark.parametrize(("payload", "reason"), ESCAPES)
def test_escape_attempt_rejected(pool: RenderPool, payload: str, reason: str) -> None:
    with pytest.raises(TemplateRenderError) as caught:
        render(payload, {"data": {"items": [1]}})

    message = str(caught.value)
    assert caught.value.part == "html_body"
    assert reason in caught.value.reason
    assert "<class" not in message
    assert "uid=" not in message
    assert "root:" not in message


def test_escape_error_names_line(pool: RenderPool) -> None:
    with pytest.raises(TemplateRenderError) as caught:
        render("Hello\n{{ name }}\n{{ ''.__class__ }}", {"name": "Bob"})

    assert caught.value.line == 3
    assert "unsafe" in caught.value.reason
    assert "html_body line 3" in str(caught.value)


def test_undefined_variable_names_line(pool: RenderPool) -> None:
    with pytest.raises(TemplateRenderError) as caught:
        render("line one\nline two {{ customer.name }}", {})

    assert caught.value.line == 2
    assert caught.value.reason == "'customer' is undefined"


def test_event_data_is_not_executed(pool: RenderPool) -> None:
    payload = "{{ ''.__class__.__mro__ }}{% include '/etc/passwd' %}"

    assert render("Hi {{ name }}", {"name": payload}) == f"Hi {payload}"


def test_html_body_is_autoescaped(pool: RenderPool) -> None:
    output = render("<p>{{ name }}</p>", {"name": "<script>x</script>"}, kind="html")

    assert output == "<p>&lt;script&gt;x&lt;/script&gt;</p>"


def test_items_key_wins_over_dict_method(pool: RenderPool) -> None:
    output = render(
        "{% for item in order.items %}{{ item }} {% endfor %}",
        {"order": {"items": ["a", "b"]}},
    )

    assert output == "a b "


def test_runaway_loop_stopped(pool: RenderPool) -> None:
    runaway = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"

    with pytest.raises(TemplateRenderError) as caught:
        render(runaway)

    assert "took longer than 1 seconds and was stopped" in str(caught.value)
    assert render("still {{ 'working' }}") == "still working"


def test_runaway_does_not_block_others(pool: RenderPool) -> None:
    runaway = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"
    outcome: dict[str, Any] = {}

    def run_away() -> None:
        try:
            render(runaway)
        except TemplateRenderError as exc:
            outcome["runaway"] = exc

    thread = threading.Thread(target=run_away)
    thread.start()
    outcome["other"] = render("fine")
    thread.join()

    assert outcome["other"] == "fine"
    assert "was stopped" in str(outcome["runaway"])


def test_unbounded_memory_stopped(pool: RenderPool) -> None:
    doubling = (
        "{% set ns = namespace(s='x') %}"
        "{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}"
        "{{ ns.s|length }}"
    )

    with pytest.raises(TemplateRenderError) as caught:
        render(doubling)

    assert "was stopped" in str(caught.value)
    assert render("{{ 1 + 1 }}") == "2"


@pytest.mark.parametrize(
    "source",
    [
        "{{ 'x' * 1000000000 }}",
        "{{ [0] * 1000000000 }}",
        "{{ 10 ** 100000 }}",
        "{% set n = 2 ** 4000 %}{{ n * n }}",
        "{% for i in range(100000) %}{{ 'abcdefghij' }}{% endfor %}",
        "{{ '%0999999d' % 1 }}",
    ],
)
def test_oversized_output_rejected(pool: RenderPool, source: str) -> None:
    with pytest.raises(TemplateRenderError) as caught:
        render(source)

    assert (
        "too large" in caught.value.reason
        or "longer than 20000" in (caught.value.reason)
        or "more than 20000" in caught.value.reason
    )


def test_lipsum_removed(pool: RenderPool) -> None:
    with pytest.raises(TemplateRenderError) as caught:
        render("{{ lipsum(1000000) }}")

    assert caught.value.reason == "'lipsum' is undefined"


def test_killed_idle_process_replaced(pool: RenderPool) -> None:
    assert render("one") == "one"
    for child in list(pool._idle):
        child.process.kill()
        child.process.wait()

    assert render("two") == "two"


def test_runaway_recursion_reported(pool: RenderPool) -> None:
    with pytest.raises(TemplateRenderError) as caught:
        render("{% macro down(n) %}{{ down(n + 1) }}{% endmacro %}{{ down(0) }}")

    assert "RecursionError" in caught.value.reason
    assert render("after") == "after"


# Each builds its whole result in one C call, so counting the output comes
# too late; |length keeps the output itself short.
@pytest.mark.parametrize(
    "source",
    [
        "{{ 'x'|center(300000000)|length }}",
        "{{ '%0300000000d'|format(1)|length }}",
        "{{ '%*d'|format(300000000, 1)|length }}",
        "{{ ('x' * 10000)|replace('x', 'x' * 2000)|length }}",
        "{{ ('x' * 10000)|replace('', 'yy')|length }}",
        "{{ ('a\nb' * 5000)|indent(1000)|length }}",
        "{{ ('x' * 10000)|wordwrap(1, wrapstring='y' * 1000)|length }}",
        "{{ 'x'.center(300000000)|length }}",
        "{{ 'x'.ljust(300000000)|length }}",
        "{{ 'x'.rjust(300000000)|length }}",
        "{{ '1'.zfill(300000000)|length }}",
        "{{ ('\t' * 1000).expandtabs(100000)|length }}",
        "{{ ('x' * 10000).replace('x', 'x' * 2000)|length }}",
        "{{ ('%0300000000d' % 1)|length }}",
        "{{ ('%(n)0300000000d' % {'n': 1})|length }}",
        "{{ '{:>300000000}'.format(1)|length }}",
        "{{ '{:{}}'.format(1, 300000000)|length }}",
        "{{ '{n:>300000000}'.format_map({'n': 1})|length }}",
    ],
)
def test_one_call_string_builders_rejected(pool: RenderPool, source: str) -> None:
    with pytest.raises(TemplateRenderError) as caught:
        render(source)

    assert "not allowed in a template" in caught.value.reason
    assert "would produce more than 20000 characters" in caught.value.reason


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ 'ab'|center(6) }}", "  ab  "),
        ("{{ '%05d'|format(42) }}", "00042"),
        ("{{ '%(n)03d'|format(n=7) }}", "007"),
        ("{{ 'a-b-c'|replace('-', '+') }}", "a+b+c"),
        ("{{ 'a\nb'|indent(2, first=true) }}", "  a\n  b"),
        ("{{ 'x'.ljust(3, '.') }}", "x.."),
        ("{{ '%.2f' % 3.14159 }}", "3.14"),
        ("{{ '{:>4}'.format(7) }}", "   7"),
        ("{{ 7 % 3 }}", "1"),
    ],
)
def test_small_string_builders_still_work(
    pool: RenderPool, source: str, expected: str
) -> None:
    assert render(source) == expected
