"""Tests for promptrec.templates.limits and .sandbox: what one render may do, and no work at compile time."""

import time
from pathlib import Path

import jinja2.meta
import pytest

from promptrec.core.errors import TemplateError
from promptrec.templates import limits
from promptrec.templates.sandbox import SANDBOX
from promptrec.templates.template import check_templates, load_template

FRONT = """---
name: {name}
version: "1"
kind: pointwise
inputs: [item]
choices: ["Yes", "No"]
description: d
---
"""
ITEM = {"title": "Heat (1995)", "genres": ["Action", "Crime"], "rate": 0.5, "rating": 4.0, "n": 3}


def write(tmp_path: Path, body: str, name: str = "t") -> Path:
    path = tmp_path / f"{name}.j2"
    path.write_text(FRONT.format(name=name) + body, encoding="utf-8")
    return path


def render(tmp_path: Path, body: str) -> str:
    return load_template(write(tmp_path, body)).render({"example_id": "e1", "item": ITEM})


HOSTILE = [
    ("{% for i in range(10**9) %}{{ item }}{% endfor %}", "range(1000000000) has 1,000,000,000 items"),
    ("{% for i in range(100000) %}{{ item }}{% endfor %}", "over the limit of 10,000"),
    ("{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}{{ item }}", "1,000,000 steps"),
    ("{{ item }}{{ 'a' * 10**10 }}", "str * 10000000000 would build a value over the limit"),
    ("{{ item }}{{ [item] * 10**8 }}", "list * 100000000"),
    ("{{ item }}{{ 2 ** 100000 }}", "bits"),
    ("{% set ns = namespace(n=3) %}{% for i in range(30) %}{% set ns.n = ns.n * ns.n %}{% endfor %}{{ item }}", "bits"),
    ("{{ item.title | center(10**10) }}", "filter 'center' got the number 10,000,000,000"),
    ("{{ item.title.ljust(10**9) }}", "str.ljust() got the number"),
    ("{{ (['a' * 999999] * 1000) | join }}{{ item }}", "filter 'join' would build"),
    ("{{ ('a' * 100000).replace('a', 'b' * 100000) }}{{ item }}", "str.replace would build"),
    ("{{ ('a' * 100000) | replace('a', 'bb' * 1000) }}{{ item }}", "filter 'replace' would build"),
    ("{{ ('\\n' * 100000) | indent(1000) }}{{ item }}", "indent would build"),
    ("{{ '%999999999d' % 1 }}{{ item }}", "'%' would build"),
    ("{{ '{:>999999999}'.format(item) }}", "str.format would build"),
    ("{{ '%s' | format('x' * 600000) * 2 }}{{ item }}", "str * 2"),
    ("{{ lipsum(10**7) }}{{ item }}", "lipsum() would build"),
    ("{{ lipsum(1000, max=1000) }}{{ item }}", "lipsum() would build"),
    ("{{ '{:{w}}'.format(item, w=10**9) }}", "str.format would build"),
    ("{{ '{0}{0}{0}'.format('x' * 600000) }}{{ item }}", "str.format would build"),
    ("{{ [1] | slice(10**9) | list }}{{ item }}", "filter 'slice' got the number"),
    ("{{ item | tojson(indent=10**5) }}", "tojson(indent=100000)"),
    ("{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ item }}",
     "'~' built a value of 1,048,576"),
    ("{% for i in range(10000) %}{{ 'x' * 1000 }}{% endfor %}{{ item }}", "wrote more than 1,000,000 characters"),
    (
        "{% macro m() %}{% for i in range(10000) %}" + "y" * 200 + "{% endfor %}{% endmacro %}"
        "{{ m() | length }}{{ item }}",
     "wrote more than 1,000,000 characters"),
    ("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(item) }}", "macros call each other too deeply"),
    ("{{ item.title.nope }}", "has no attribute 'nope'"),
    ("{{ item.rating + item.title }}", "unsupported operand"),
]  # fmt: skip


@pytest.mark.parametrize("body, expected", HOSTILE, ids=[f"case{i}" for i in range(len(HOSTILE))])
def test_hostile_body_is_one_line_naming_template_and_line(tmp_path, body, expected):
    start = time.perf_counter()
    with pytest.raises(TemplateError) as err:
        render(tmp_path, body)
    message = str(err.value)
    assert expected in message
    assert f"{tmp_path / 't.j2'}:9:" in message, "names the file and the body line"
    assert "\n" not in message
    assert time.perf_counter() - start < limits.MAX_RENDER_SECONDS + 1


def test_time_budget(tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "MAX_RENDER_SECONDS", 0.05)
    body = "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(30) }}{{ item }}"
    with pytest.raises(TemplateError, match="ran longer than 0.05 s"):
        render(tmp_path, body)


def test_the_line_named_is_the_body_line_that_failed(tmp_path):
    with pytest.raises(TemplateError, match=r"t\.j2:11: "):
        render(tmp_path, "{{ item.title }}\nok\n{% for i in range(10**6) %}{% endfor %}\n")


@pytest.mark.parametrize(
    "body, expected",
    [
        ("{{ '%.1f' % item.rate }}|{{ '%g' | format(item.rating) }}|{{ '{:.0%}'.format(item.rate) }}", "0.5|4|50%"),
        ("{{ item.genres | join('/') }}|{{ item.title ~ '!' }}|{{ item.title | upper }}", "Action/Crime|Heat (1995)!|"),
        ("{% for i in range(item.n) %}{{ loop.index }}{% endfor %}|{{ [[1], [2]] | sum(start=[]) }}", "123|[1, 2]"),
        ("{{ range(10) | select('odd') | list }}|{{ item.genres | map('lower') | join(',') }}", "[1, 3, 5, 7, 9]"),
        ("{{ 'ab' * 3 }}|{{ 2 ** 10 }}|{{ -item.n }}|{{ 7 // 2 }}|{{ ('x' * 99) | length }}", "ababab|1024|-3|3|99"),
        ("{% for i in range(100) %}{% for j in range(100) %}{% endfor %}{% endfor %}{{ item.n }}", "3"),
    ],
)
def test_ordinary_bodies_render_as_before(tmp_path, body, expected):
    assert render(tmp_path, body).startswith(expected)


def generated_code(source: str) -> tuple[str, str]:
    """(compiled Python, the code `jinja2.meta` generates while linting) for `source`."""
    compiled = SANDBOX.compile(SANDBOX.parse(source), raw=True)
    tracker = jinja2.meta.TrackingCodeGenerator(SANDBOX)
    tracker.visit(SANDBOX.parse(source))
    return compiled, tracker.stream.getvalue()


@pytest.mark.parametrize(
    "source, folded",
    [
        ("{{ 'ab' * 3 }}", "ababab"),
        ("{{ 'ab' | center(12) }}", "     ab"),
        ("{{ ('ab' ~ 'cd') | upper }}", "ABCD"),
        ("{{ 2 ** 20 }}", "1048576"),
        ("{{ -(5) }}", "-5"),
        ("{% if 'a' is lower %}yes{% endif %}", "if True"),
    ],
)
def test_nothing_is_evaluated_at_compile_or_lint_time(source, folded):
    for code in generated_code(source):
        assert folded not in code


def test_check_never_runs_the_body(tmp_path):
    path = write(tmp_path, "{{ item }}{{ 'a' * 10**10 }}{% for i in range(10**9) %}{% endfor %}\n")
    start = time.perf_counter()
    assert check_templates([path]) == []
    assert time.perf_counter() - start < 1


def test_deeply_nested_body_is_a_lint_error(tmp_path):
    path = write(tmp_path, "{{ " + "(" * 5000 + "item" + ")" * 5000 + " }}")
    problems = check_templates([path])
    assert len(problems) == 1 and "too deeply" in problems[0]


def test_huge_template_file_is_refused_before_reading(tmp_path):
    path = write(tmp_path, "{{ item }}" + " " * 1_100_000)
    assert "over the limit" in check_templates([path])[0]
