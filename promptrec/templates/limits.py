"""The limits a template render runs under, and how each operation is sized against them.

A template is a file anyone can write, rendered once per example, so a typo (`range(10**9)`) or a
hostile body (`'a' * 10**10`, two nested 100,000-item loops) must end in one `TemplateError` naming
the template and the body line, never in a hang, an out-of-memory kill or a traceback. The limits are
the constants below. A `RenderBudget` counts the steps and the written characters of one render (see
`render_budget`); operations that could build a huge value in one C call (`*`, `**`, `%`, `join`,
`replace`, `indent`, `format`, ...) are sized *before* they run, every other result after
(`check_value`). Where these checks are hooked into Jinja is `promptrec.templates.sandbox`.
"""

from __future__ import annotations

import contextvars
import itertools
import math
import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

MAX_RANGE_ITEMS = 10_000  # range() in a template; prompts loop over histories of tens of items


MAX_VALUE_LENGTH = 1_000_000  # characters of a string, or items of a list/dict, that a template builds


MAX_OUTPUT_CHARS = 1_000_000  # characters one render writes, counted in every buffer (macros, set blocks)


MAX_INT_BITS = 16_384  # integers a template computes (~4,900 digits; Python will not print more than 4,300)


MAX_RENDER_STEPS = 1_000_000  # loop iterations, calls, operators, lookups and printed values per render


MAX_RENDER_SECONDS = 2.0  # wall clock per render; a shipped template renders in about a millisecond


CLOCK_EVERY_STEPS = 16  # read the clock every this many steps (a step is cheap, the clock is not free)


MAX_JSON_INDENT = 16  # tojson(indent=...): output grows with indent x nesting depth


LIPSUM_CHARS_PER_WORD = 8  # lipsum(n, max=...) writes up to n x max words of about this many characters


class RenderLimitError(Exception):
    """A render broke one of the limits above; the message says which and how to stay inside it."""


@dataclass
class RenderBudget:
    deadline: float  # time.monotonic() after which the render stops
    steps: int = 0
    output_chars: int = 0

    def step(self) -> None:
        self.steps += 1
        if self.steps > MAX_RENDER_STEPS:
            raise RenderLimitError(
                f"the render took more than {MAX_RENDER_STEPS:,} steps (loop iterations, calls, operations); "
                "do less per example: loop over fewer items, nest fewer loops, call fewer macros"
            )
        if self.steps % CLOCK_EVERY_STEPS == 0 and time.monotonic() > self.deadline:
            raise RenderLimitError(
                f"the render ran longer than {MAX_RENDER_SECONDS:g} s; loop over fewer items or do less per item"
            )

    def write(self, chars: int) -> None:
        self.output_chars += chars
        if self.output_chars > MAX_OUTPUT_CHARS:
            raise RenderLimitError(
                f"the render wrote more than {MAX_OUTPUT_CHARS:,} characters; a prompt should be far shorter, "
                "print less or loop over fewer items"
            )


_BUDGET: contextvars.ContextVar[RenderBudget | None] = contextvars.ContextVar("render_budget", default=None)


@contextmanager
def render_budget() -> Iterator[RenderBudget]:
    """The budget of one render; outside of it (compile time, linting) the hooks count nothing."""
    budget = RenderBudget(time.monotonic() + MAX_RENDER_SECONDS)
    token = _BUDGET.set(budget)
    try:
        yield budget
    finally:
        _BUDGET.reset(token)


def step() -> None:
    """Count one step of the render in progress (nothing outside a render: compile time, linting)."""
    budget = _BUDGET.get()
    if budget is not None:
        budget.step()


def current_budget() -> RenderBudget | None:
    return _BUDGET.get()


def check_value(value, what: str):
    """`value` if it is within the size limits, else a RenderLimitError naming `what` built it."""
    if isinstance(value, (str, bytes, list, tuple, dict, set, frozenset)) and len(value) > MAX_VALUE_LENGTH:
        raise RenderLimitError(
            f"{what} built a value of {len(value):,} characters/items, over the limit of {MAX_VALUE_LENGTH:,}; "
            "build smaller strings and lists"
        )
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_INT_BITS:
        raise RenderLimitError(f"{what} built an integer of more than {MAX_INT_BITS:,} bits; compute smaller numbers")
    return value


def refuse_size(size: float, what: str) -> None:
    if size > MAX_VALUE_LENGTH:
        about = f" (about {size:,.0f})" if math.isfinite(size) else ""
        raise RenderLimitError(
            f"{what} would build a value over the limit of {MAX_VALUE_LENGTH:,} characters/items{about}; "
            "build smaller strings and lists"
        )


def length_of(value) -> int:
    return len(value) if isinstance(value, (str, bytes, list, tuple, dict, set, frozenset)) else len(str(value))


def bounded_range(*args) -> range:
    """range() with at most MAX_RANGE_ITEMS items (Jinja's sandbox raises a bare OverflowError at 100,000)."""
    numbers = range(*args)
    try:
        size = len(numbers)
    except OverflowError:  # longer than sys.maxsize
        size = math.inf
    if size > MAX_RANGE_ITEMS:
        raise RenderLimitError(
            f"range({', '.join(map(str, args))}) has {size:,} items, over the limit of {MAX_RANGE_ITEMS:,}; "
            "loop over fewer items"
        )
    return numbers


# ---------------------------------------------------------------- sizing before an operation runs
_DIGITS = re.compile(r"\d+")


def check_format(fmt: str, args: Iterable, what: str) -> float:
    """An upper bound of `fmt % args` / `fmt.format(*args)`: fields x (longest argument + widest width)."""
    values = list(args)
    numbers = [int(d) if len(d) <= 7 else math.inf for d in _DIGITS.findall(fmt)]  # widths, precisions
    if "*" in fmt or "{" in fmt:  # '%*d' and '{:{w}}' take widths from the arguments
        numbers += [abs(v) for v in values if isinstance(v, int) and not isinstance(v, bool)]
    fields = max(fmt.count("%"), fmt.count("{"))
    longest = max((length_of(v) for v in values), default=0)
    size = len(fmt) + fields * (longest + max(numbers, default=0))
    refuse_size(size, what)
    return size


def format_arguments(args: tuple, kwargs: dict) -> list:
    flat = []
    for value in [*args, *kwargs.values()]:
        flat.extend(value.values() if isinstance(value, dict) else value if isinstance(value, tuple) else [value])
    return flat


def check_multiply(left, right) -> None:
    for seq, times in ((left, right), (right, left)):
        if isinstance(seq, (str, bytes, list, tuple)) and isinstance(times, int):
            refuse_size(len(seq) * max(times, 0), f"{type(seq).__name__} * {times}")


def check_power(left, right) -> None:
    if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
        if right * left.bit_length() > MAX_INT_BITS:
            raise RenderLimitError(f"{left} ** {right} has more than {MAX_INT_BITS:,} bits; compute smaller numbers")


def check_replace(text, old, new, count=-1, what="replace") -> None:
    if isinstance(text, str) and isinstance(old, str):
        hits = len(text) + 1 if old == "" else text.count(old)
        hits = hits if count is None or count < 0 else min(hits, count)
        refuse_size(len(text) + hits * max(length_of(new) - len(old), 0), what)


def check_join(separator, items: list, what: str) -> None:
    size = sum(length_of(item) for item in items) + max(len(items) - 1, 0) * length_of(separator)
    refuse_size(size, what)


def check_indent(text, width=4, *args, **kwargs) -> None:
    pad = width if isinstance(width, int) else length_of(width)
    refuse_size(length_of(text) + (str(text).count("\n") + 1) * pad, "indent")


def check_wordwrap(text, width=79, break_long_words=True, wrapstring=None, *args, **kwargs) -> None:
    # every line break may add a wrapstring; a text cannot have more lines than characters
    refuse_size(length_of(text) * (1 + length_of(wrapstring or "\n")), "wordwrap")


def check_translate(text, table) -> None:
    if isinstance(text, str) and isinstance(table, dict):
        longest = max((length_of(v) for v in table.values() if v is not None), default=1)
        refuse_size(len(text) * longest, "translate")


def check_expandtabs(text, tabsize=8) -> None:
    if isinstance(text, str) and isinstance(tabsize, int):
        refuse_size(len(text) + text.count("\t") * tabsize, "expandtabs")


def check_numbers(args: Iterable, what: str) -> None:
    """Widths, counts and sizes passed to filters and string methods (center(10**9), slice(10**9))."""
    for value in args:
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_VALUE_LENGTH:
            raise RenderLimitError(
                f"{what} got the number {value:,}, over the limit of {MAX_VALUE_LENGTH:,} for widths and counts; "
                "pass a smaller number"
            )


# str methods sized before they run; the others cannot grow a string past a small multiple of its length
METHOD_CHECKS: dict[str, Callable] = {
    "replace": lambda text, old, new, count=-1: check_replace(text, old, new, count, "str.replace"),
    "join": lambda separator, items: check_join(separator, items, "str.join"),
    "expandtabs": check_expandtabs,
    "translate": check_translate,
}


def check_method(method, args: tuple, kwargs: dict) -> tuple:
    """Sizes a call of a str/bytes/int method; returns the (possibly listed) positional arguments."""
    owner = getattr(method, "__self__", None)
    name = getattr(method, "__name__", "")
    if name in ("format", "format_map") and callable(getattr(method, "__wrapped__", None)):
        fmt = getattr(method.__wrapped__, "__self__", None)  # the sandbox wraps str.format
        if isinstance(fmt, str):
            check_format(fmt, format_arguments(args, kwargs), f"str.{name}")
        return args
    if not isinstance(owner, (str, bytes, int)) or isinstance(owner, bool):
        return args
    check_numbers([*args, *kwargs.values()], f"{type(owner).__name__}.{name}()")
    if name == "join" and args:
        args = (list(args[0]), *args[1:])  # a generator would be used up by the sizing
    if name in METHOD_CHECKS:
        METHOD_CHECKS[name](owner, *args, **kwargs)
    return args


# ---------------------------------------------------------------- filters
def concatenated(items: list, attribute=None, start=0):
    """sum(items, start=[]) in one pass, or None where the builtin sum is linear anyway (numbers).

    sum() over lists copies the growing result once per item: quadratic work in one C call.
    """
    if attribute is not None or not isinstance(start, (list, tuple)):
        return None
    if not all(isinstance(item, type(start)) for item in items):
        return None  # the builtin raises the usual TypeError
    refuse_size(len(start) + sum(len(item) for item in items), "filter 'sum'")
    return type(start)(itertools.chain(start, *items))


def prepare_filter(name: str, value, args: tuple, kwargs: dict) -> tuple:
    """Size a filter call before it runs; returns (value, args) with generators turned into lists if needed."""
    check_numbers([*args, *kwargs.values()], f"filter '{name}'")
    if name == "join":
        value = list(value) if not isinstance(value, str) else value
        separator = args[0] if args else kwargs.get("d", "")
        check_join(separator, value if isinstance(value, list) else list(value), "filter 'join'")
    elif name == "replace" and len(args) >= 2:
        check_replace(value, *args[:3], what="filter 'replace'")
    elif name == "indent":
        check_indent(value, *args, **kwargs)
    elif name == "wordwrap":
        check_wordwrap(value, *args, **kwargs)
    elif name == "format" and isinstance(value, str):
        check_format(value, format_arguments(args, kwargs), "filter 'format'")
    elif name == "tojson":
        indent = args[0] if args else kwargs.get("indent")
        if isinstance(indent, int) and indent > MAX_JSON_INDENT:
            raise RenderLimitError(f"tojson(indent={indent}) is over the limit of {MAX_JSON_INDENT}; indent less")
    return value, args
