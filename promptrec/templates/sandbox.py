"""The sandbox every template runs in: Jinja's immutable sandbox with the limits of `limits` hooked in.

Every call, operator, attribute and item lookup, filter, test and printed value passes through the
hooks below, every `{% for %}` iterates through a counting wrapper, `~` results are sized, and literal
body text is printed through a filter so that it is counted too (and, for the special-token guarantee,
rewritten: see `promptrec.templates.segments`). Nothing is evaluated at compile time: constant folding
is off, and operators, filters, tests and printed values are all runtime-only, so `prompts check`
(parse and lint) never runs template code.

`compile_body` compiles a body under these rules; `limits.render_budget` wraps one render.
What is *not* here: loading, linting and the front matter (`template.py`).
"""

from __future__ import annotations

from collections.abc import Callable

import jinja2
from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

from promptrec.templates.limits import (
    LIPSUM_CHARS_PER_WORD,
    bounded_range,
    check_format,
    check_method,
    check_multiply,
    check_power,
    check_value,
    concatenated,
    current_budget,
    format_arguments,
    prepare_filter,
    refuse_size,
    step,
)


def _pass_arg(function) -> str | None:
    """Which first argument Jinja passes a filter or test: 'context', 'eval_context', 'environment' or None."""
    return getattr(getattr(function, "jinja_pass_arg", None), "name", None)


def _bounded_filter(name: str, function: Callable) -> Callable:
    """`function` as a runtime-only filter (context-taking, so never folded) that counts and sizes."""
    kind = _pass_arg(function)

    @jinja2.pass_context
    def bounded(context, value, *args, **kwargs):
        step()
        value, args = prepare_filter(name, value, args, kwargs)
        if name == "sum":
            value = list(value)
            result = concatenated(value, *args, **kwargs)
            if result is not None:
                return result
        first = {"context": (context,), "eval_context": (context.eval_ctx,), "environment": (context.environment,)}
        return check_value(function(*first.get(kind, ()), value, *args, **kwargs), f"filter '{name}'")

    return bounded


def _bounded_test(function: Callable) -> Callable:
    kind = _pass_arg(function)

    @jinja2.pass_context
    def bounded(context, value, *args, **kwargs):
        step()
        first = {"context": (context,), "eval_context": (context.eval_ctx,), "environment": (context.environment,)}
        return function(*first.get(kind, ()), value, *args, **kwargs)

    return bounded


LOOP_FILTER = "promptrec_loop"  # every {% for %} iterates through it (inserted by `_Limiter`)


LITERAL_FILTER = "promptrec_literal"  # every piece of literal body text is printed through it


SIZE_FILTER = "promptrec_size"  # every `~` concatenation is sized by it


@jinja2.pass_context
def _loop(context, iterable):
    for item in iterable:
        step()
        yield item


@jinja2.pass_context
def _literal(context, text: str) -> str:
    return text


@jinja2.pass_context
def _sized(context, value):
    step()
    return check_value(value, "'~'")


@jinja2.pass_context
def _finalize(context, value):
    """Every printed value (expressions and literal text): counted against MAX_OUTPUT_CHARS."""
    text = str(value)
    budget = current_budget()
    if budget is not None:
        budget.step()
        budget.write(len(text))
    return text


def _bounded_lipsum(n=5, html=True, min=20, max=100):  # noqa: A002 - Jinja's own parameter names
    refuse_size(n * max * LIPSUM_CHARS_PER_WORD, "lipsum()")
    return jinja2.utils.generate_lorem_ipsum(n, html, min, max)


class _Limiter(NodeTransformer):
    """Rewrites a parsed body: loops iterate through LOOP_FILTER, `~` results go through SIZE_FILTER,
    and literal text is printed through LITERAL_FILTER (so it is counted) after `literal` rewrote it."""

    def __init__(self, literal: Callable[[str], str] | None):
        self.literal = literal

    def visit_For(self, node: nodes.For) -> nodes.For:
        node = self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, LOOP_FILTER, [], [], None, None, lineno=node.iter.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Filter:
        node = self.generic_visit(node)
        return nodes.Filter(node, SIZE_FILTER, [], [], None, None, lineno=node.lineno)

    def visit_TemplateData(self, node: nodes.TemplateData) -> nodes.Filter:
        text = self.literal(node.data) if self.literal else node.data
        return nodes.Filter(nodes.Const(text), LITERAL_FILTER, [], [], None, None, lineno=node.lineno)


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox with StrictUndefined, no constant folding and the limits of this module."""

    intercepted_binops = frozenset(["+", "-", "*", "/", "//", "%", "**"])  # intercepted ones are never folded
    intercepted_unops = frozenset(["+", "-"])

    def __init__(self):
        super().__init__(
            undefined=jinja2.StrictUndefined, keep_trailing_newline=True, optimized=False, finalize=_finalize
        )
        self.globals.update(range=bounded_range, lipsum=_bounded_lipsum)
        self.filters = {name: _bounded_filter(name, f) for name, f in self.filters.items()}
        self.filters.update({LOOP_FILTER: _loop, LITERAL_FILTER: _literal, SIZE_FILTER: _sized})
        self.tests = {name: _bounded_test(f) for name, f in self.tests.items()}

    def call_binop(self, context, operator: str, left, right):
        step()
        if operator == "*":
            check_multiply(left, right)
        elif operator == "**":
            check_power(left, right)
        elif operator == "%" and isinstance(left, str):
            check_format(left, right if isinstance(right, tuple) else format_arguments((right,), {}), "'%'")
        return check_value(super().call_binop(context, operator, left, right), f"'{operator}'")

    def call_unop(self, context, operator: str, arg):
        step()
        return super().call_unop(context, operator, arg)

    def getattr(self, obj, attribute: str):
        step()
        return super().getattr(obj, attribute)

    def getitem(self, obj, argument):
        step()
        return super().getitem(obj, argument)

    def call(self, context, obj, /, *args, **kwargs):
        step()
        args = check_method(obj, args, kwargs)
        return check_value(super().call(context, obj, *args, **kwargs), "a call")


SANDBOX = BoundedSandbox()


def compile_body(source: str, literal: Callable[[str], str] | None = None) -> jinja2.Template:
    """`source` compiled under the limits; `literal` may rewrite the body's literal text first."""
    tree = _Limiter(literal).visit(SANDBOX.parse(source))
    return SANDBOX.template_class.from_code(SANDBOX, SANDBOX.compile(tree), SANDBOX.make_globals(None), None)
