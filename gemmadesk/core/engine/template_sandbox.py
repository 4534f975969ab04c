"""Rendering a GGUF's chat template with limits: a hostile template fails within seconds, in bounded memory.

A chat template is Jinja code that came inside a downloaded file. Jinja's ``ImmutableSandboxedEnvironment``
already stops it from reaching Python internals or changing our data; it does not stop it from running for
ever (``{% for i in range(100000) %}{% for j in range(100000) %}…``) or allocating gigabytes
(``{% set x = 'A' * 1000000000 %}``). :func:`render_limited` adds, for each render:

- a **deadline** (:data:`RENDER_SECONDS`) and a **memory ceiling** (:data:`MEMORY_GROWTH` bytes of growth of
  this process's resident memory), checked every few thousand steps: each loop iteration (the code
  generator adds a tick to every ``{% for %}`` body), call, attribute or item access, operator and filter;
- **size checks before allocation** for everything that can multiply data in one C call: the ``*``,
  ``+``, ``%`` and ``**`` operators, ``~`` concatenation, output of ``{{ … }}``, and the filters and string
  methods that take a width, count or separator (``center``, ``indent``, ``wordwrap``, ``replace``,
  ``join``, ``format``, ``batch``, ``ljust``, ``zfill``, ``expandtabs``, ``str.format`` …). No single value may
  be larger than :func:`value_cap` (a few MiB plus a multiple of the conversation's size); the size of a
  list or dict counts every element as often as it appears, so nested references cannot blow up when
  printed;
- an **output cap** on the prompt text itself (through ``Template.generate``);
- a cap on the template's own size (:data:`MAX_TEMPLATE_CHARS`) and no ``lipsum``.

Every failure is a :class:`TemplateLimitError` (or the error Jinja raised); :mod:`chatformat` turns each
into one sentence for the user. The cost on Gemma 4's real template is measured in
``benchmarks/bench_hostile.py`` (under 2x a plain sandbox render: +0.1 ms for a short chat, +6 ms for 200
messages); docs/hostile-input.md lists every limit.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

RENDER_SECONDS = 5.0
MEMORY_GROWTH = 512 << 20
MAX_TEMPLATE_CHARS = 256 << 10
MAX_INT_BITS = 1 << 16
MAX_COUNT = 100_000  # batch/slice counts, like Jinja's own MAX_RANGE
MAX_NESTING = 200
_CHECK_EVERY = 2000  # ticks between two clock reads
_MEMORY_EVERY_S = 0.01
_BIG = 1 << 20

_state = threading.local()
_SCALARS = frozenset([str, int, float, bool, type(None)])
_SIZED = frozenset([str, list, tuple, dict, set, frozenset])


class TemplateLimitError(Exception):
    """The template hit one of the limits; ``str()`` says which (a clause, without the template's name)."""


def value_cap(input_chars: int) -> int:
    """The largest string/list a template may build while rendering a conversation of ``input_chars``."""
    return (8 << 20) + 4 * input_chars


def output_cap(input_chars: int) -> int:
    """The longest prompt a template may produce for a conversation of ``input_chars``."""
    return (1 << 20) + 4 * input_chars


@functools.cache
def _process() -> Any:
    import psutil

    return psutil.Process()


def _rss() -> int:
    return int(_process().memory_info().rss)


class _Watch:
    """The limits of one render (per thread)."""

    def __init__(self, seconds: float, cap: int) -> None:
        self.started = time.monotonic()
        self.deadline = self.started + seconds
        self.seconds = seconds
        self.cap = cap
        self.rss0 = _rss()
        self.next_memory = self.started + _MEMORY_EVERY_S
        self.countdown = _CHECK_EVERY
        self.big = 0
        self.memo: dict[int, tuple[Any, int]] = {}

    def check(self) -> None:
        self.countdown = _CHECK_EVERY
        now = time.monotonic()
        if now > self.deadline:
            raise TemplateLimitError(f"it did not finish within {self.seconds:g} seconds")
        if now >= self.next_memory:
            self.next_memory = now + _MEMORY_EVERY_S
            self.check_memory()

    def check_memory(self) -> None:
        if _rss() - self.rss0 > MEMORY_GROWTH:
            raise TemplateLimitError(f"it needed more than {MEMORY_GROWTH >> 20} MiB of memory")

    def tick(self) -> None:
        self.countdown -= 1
        if self.countdown <= 0:
            self.check()

    def need(self, size: int, what: str = "a value") -> None:
        """Refuse to build ``what`` of ``size`` characters/elements if it is over the cap; after every
        32 MiB of large values allowed, look at the memory at once (values kept alive by deep recursion)."""
        self.tick()
        if size > self.cap:
            raise TemplateLimitError(f"it tried to build {what} of {_human(size)}, more than the "
                                     f"{_human(self.cap)} allowed")
        if size >= _BIG:
            self.big += size
            if self.big >= 32 * _BIG:
                self.big = 0
                self.check_memory()

    def size(self, value: Any, depth: int = 0) -> int:
        """Characters ``str(value)`` or ``tojson`` could produce, counting repeated references each time."""
        kind = type(value)
        if kind is str:
            return len(value)
        if kind in _SCALARS:
            return 24
        if isinstance(value, str):  # Markup and other str subclasses
            return len(value)
        if depth > MAX_NESTING:
            raise TemplateLimitError("it nested lists or dicts too deeply")
        key = id(value)
        hit = self.memo.get(key)
        if hit is not None and hit[0] is value:
            return hit[1]
        items: Iterable[Any]
        if isinstance(value, dict | list | tuple | set | frozenset) and 2 + 4 * len(value) > self.cap:
            return 2 + 4 * len(value)  # each element prints as at least ", x" or '""'
        if isinstance(value, dict):
            items = [*value.keys(), *value.values()]
        elif isinstance(value, list | tuple | set | frozenset):
            items = value
        elif type(value).__name__ == "Namespace":
            try:
                attrs = object.__getattribute__(value, "_Namespace__attrs")
            except AttributeError:
                return 64
            return 16 + self.size(attrs, depth + 1)  # not memoised: a namespace changes
        else:
            return 64  # Undefined, macros, loop objects, cyclers: their str() is short
        total = 2
        for item in items:
            total += 2 + self.size(item, depth + 1)
            if total > self.cap:
                break
        if len(self.memo) < 100_000:
            self.memo[key] = (value, total)
        return total

    def value(self, value: Any, what: str = "a value") -> Any:
        self.need(self.size(value), what)
        return value


def _human(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB" if n >= 2**20 else f"{n:,} characters"


def _current() -> _Watch | None:
    return getattr(_state, "watch", None)


def _int(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value == value and abs(value) < 2**62:
        return int(value)
    return 0


_DIGITS = re.compile(r"\d+")


def _format_bound(w: _Watch, fmt: str, args: Iterable[Any]) -> int:
    """An upper bound of the length of ``fmt % args`` or ``fmt.format(*args)``: widths and precisions
    written in the format count in full, and so do integer arguments when the format can take a width
    from an argument (``*``, nested ``{}``)."""
    args = list(args)
    bound = len(fmt) + sum(w.size(a) for a in args)
    for digits in _DIGITS.findall(fmt):
        bound += int(digits) if len(digits) <= 12 else 1 << 62
    if "*" in fmt or "{" in fmt:
        bound += sum(abs(_int(a)) for a in args)
    return bound


def _replace_bound(w: _Watch, s: Any, old: Any, new: Any, count: Any = -1) -> int:
    if not (isinstance(s, str) and isinstance(old, str) and isinstance(new, str)):
        return w.size(s) + w.size(new)
    n = s.count(old)
    if isinstance(count, int) and count >= 0:
        n = min(n, count)
    return len(s) + n * max(len(new) - len(old), 0)


# ----- checks for filters and str methods that can multiply data in one call -------------------------------
def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], i: int, name: str, default: Any) -> Any:
    return args[i] if len(args) > i else kwargs.get(name, default)


def _check_center(w: _Watch, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    w.need(max(w.size(args[0]) if args else 0, _int(_arg(args, kwargs, 1, "width", 80))))


def _check_indent(w: _Watch, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    s = args[0] if args else ""
    width = _arg(args, kwargs, 1, "width", 4)
    per_line = len(width) if isinstance(width, str) else _int(width)
    lines = s.count("\n") + 1 if isinstance(s, str) else w.size(s)
    w.need(w.size(s) + lines * max(per_line, 0))


def _check_wordwrap(w: _Watch, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    wrap = _arg(args, kwargs, 3, "wrapstring", None)
    w.need(w.size(args[0] if args else "") * (1 + (len(wrap) if isinstance(wrap, str) else 1)))


def _check_replace_filter(w: _Watch, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    s, old, new = (_arg(args, kwargs, i, n, "") for i, n in ((0, "s"), (1, "old"), (2, "new")))
    count = _arg(args, kwargs, 3, "count", None)
    w.need(_replace_bound(w, s, old, new, -1 if count is None else count))


def _check_join(w: _Watch, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    value = args[0] if args else ()
    sep = _arg(args, kwargs, 1, "d", "")
    n = len(value) if hasattr(value, "__len__") else 0
    w.need(w.size(value) + n * (len(sep) if isinstance(sep, str) else 0))


def _check_format(w: _Watch, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    fmt = args[0] if args else ""
    w.need(_format_bound(w, fmt if isinstance(fmt, str) else "", [*args[1:], *kwargs.values()]))


def _check_count(name: str, index: int) -> Callable[[_Watch, tuple[Any, ...], dict[str, Any]], None]:
    def check(w: _Watch, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if _int(_arg(args, kwargs, index, name, 1)) > MAX_COUNT:
            raise TemplateLimitError(f"it asked for more than {MAX_COUNT:,} groups")
        for a in (*args, *kwargs.values()):
            w.value(a)

    return check


def _check_sum(w: _Watch, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    w.need(sum(w.size(a) for a in (*args, *kwargs.values())))


_FILTER_CHECKS: dict[str, Callable[[_Watch, tuple[Any, ...], dict[str, Any]], None]] = {
    "center": _check_center, "indent": _check_indent, "wordwrap": _check_wordwrap,
    "replace": _check_replace_filter, "join": _check_join, "format": _check_format,
    "batch": _check_count("linecount", 1), "slice": _check_count("slices", 1), "sum": _check_sum,
}  # fmt: skip
# Filters that never turn their argument into text (no size check before the call is needed).
_NO_STRINGIFY_NAMES = ("length count first last default d dictsort items selectattr rejectattr select reject map attr "
                       "unique sort min max groupby random abs int float round bool wordcount list reverse")
_NO_STRINGIFY = frozenset(_NO_STRINGIFY_NAMES.split())


def _check_str_method(w: _Watch, s: str, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    if name in ("center", "ljust", "rjust", "zfill"):
        w.need(max(len(s), _int(_arg(args, kwargs, 0, "width", 0))))
    elif name == "expandtabs":
        w.need(len(s) * max(_int(_arg(args, kwargs, 0, "tabsize", 8)), 1))
    elif name == "replace":
        w.need(_replace_bound(w, s, _arg(args, kwargs, 0, "old", ""), _arg(args, kwargs, 1, "new", ""),
                              _arg(args, kwargs, 2, "count", -1)))
    elif name == "join":
        items = args[0] if args else ()
        n = len(items) if hasattr(items, "__len__") else 0
        w.need(w.size(items) + n * len(s))
    elif name in ("format", "format_map"):
        values = [*args, *kwargs.values()]
        if name == "format_map" and args and isinstance(args[0], dict):
            values = list(args[0].values())
        w.need(_format_bound(w, s, values))
    elif name == "translate":
        table = args[0] if args else {}
        longest = max((w.size(v) for v in table.values()), default=1) if isinstance(table, dict) else 1
        w.need(len(s) * max(longest, 1))


# ----- the environment -----------------------------------------------------------------------------------
def make_environment() -> Any:
    """A fresh limited sandbox (one per compiled template)."""
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class LimitedEnvironment(ImmutableSandboxedEnvironment):
        intercepted_binops = frozenset(["*", "**", "+", "%"])
        code_generator_class = _ticking_code_generator()

        def loop_tick(self) -> None:
            """Called at the top of every ``{% for %}`` iteration by the compiled template."""
            w = _current()
            if w is not None:
                w.countdown -= 1
                if w.countdown <= 0:
                    w.check()

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            w = _current()
            if w is not None:
                _check_binop(w, operator, left, right)
            return self.binop_table[operator](left, right)

        def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
            w = _current()
            if w is None:
                return super().call(__context, __obj, *args, **kwargs)
            w.tick()
            target = getattr(__obj, "__wrapped__", __obj)  # the sandbox wraps str.format
            owner = getattr(target, "__self__", None)
            if isinstance(owner, str):
                _check_str_method(w, owner, getattr(target, "__name__", ""), args, kwargs)
            for a in (*args, *kwargs.values()):
                if type(a) not in _SCALARS:
                    w.value(a)
            result = super().call(__context, __obj, *args, **kwargs)
            if type(result) in _SIZED:
                w.value(result, "a result")
            return result

        def getattr(self, obj: Any, attribute: str) -> Any:
            w = _current()
            if w is not None:
                w.countdown -= 1
                if w.countdown <= 0:
                    w.check()
            return super().getattr(obj, attribute)

        def getitem(self, obj: Any, argument: Any) -> Any:
            w = _current()
            if w is not None:
                w.countdown -= 1
                if w.countdown <= 0:
                    w.check()
            return super().getitem(obj, argument)

    def finalize(value: Any) -> Any:
        w = _current()
        return value if w is None or isinstance(value, str) else w.value(value, "an output value")

    env = LimitedEnvironment(
        loader=jinja2.BaseLoader(),
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=["jinja2.ext.loopcontrols"],
        finalize=finalize,
    )
    env.globals.pop("lipsum", None)
    env.filters["tojson"] = _tojson
    for name, func in list(env.filters.items()):
        env.filters[name] = _guard_filter(name, func)
    return env


def _ticking_code_generator() -> Any:
    """Jinja's code generator, plus a call to ``environment.loop_tick()`` at the top of every loop body, so
    the deadline and the memory ceiling are checked inside loops that call nothing else (``{% for a in l
    %}{% for b in l %}{% endfor %}{% endfor %}``). A trace function did the same at 4x the cost."""
    from jinja2 import nodes
    from jinja2.compiler import CodeGenerator, Frame

    class TickingCodeGenerator(CodeGenerator):
        _loop_bodies: frozenset[int] = frozenset()

        def visit_For(self, node: nodes.For, frame: Frame) -> None:  # noqa: N802
            self._loop_bodies = self._loop_bodies | {id(node.body)}
            super().visit_For(node, frame)

        def blockvisit(self, body: Iterable[nodes.Node], frame: Frame) -> None:
            if id(body) in self._loop_bodies:
                self.writeline("environment.loop_tick()")
            super().blockvisit(body, frame)

    return TickingCodeGenerator


def _check_binop(w: _Watch, operator: str, left: Any, right: Any) -> None:
    w.tick()
    sequence = (str, list, tuple)
    if operator == "*":
        if isinstance(left, int) and isinstance(right, sequence):
            left, right = right, left
        if isinstance(left, sequence) and isinstance(right, int):
            w.need(w.size(left) * max(right, 0))
        elif isinstance(left, int) and isinstance(right, int) and left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise TemplateLimitError("it computed an integer with too many digits")
    elif operator == "**":
        big = isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1
        if big and right * left.bit_length() > MAX_INT_BITS:
            raise TemplateLimitError("it computed an integer with too many digits")
    elif operator == "+":
        if isinstance(left, sequence) and isinstance(right, sequence):
            w.need(w.size(left) + w.size(right))
    elif operator == "%" and isinstance(left, str):
        w.need(_format_bound(w, left, right if isinstance(right, tuple) else [right]))


def _tojson(value: Any, indent: Any = None, **_: Any) -> str:
    w = _current()
    if w is not None:
        w.value(value)
        if indent is not None and not (isinstance(indent, int) and 0 <= indent <= 16):
            raise TemplateLimitError("tojson was asked for an indent other than 0 to 16")
    return json.dumps(value, ensure_ascii=False, indent=indent)


def _guard_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    skip = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0  # context / eval_ctx / environment
    check = _FILTER_CHECKS.get(name)
    stringify = name not in _NO_STRINGIFY

    def guarded(*args: Any, **kwargs: Any) -> Any:
        w = _current()
        if w is None:
            return func(*args, **kwargs)
        w.tick()
        values = args[skip:]
        if check is not None:
            check(w, values, kwargs)
        elif stringify:
            for a in (*values, *kwargs.values()):
                if not isinstance(a, str):
                    w.value(a)
        return w.value(func(*args, **kwargs), "a result")

    functools.update_wrapper(guarded, func)  # keeps jinja_pass_arg
    return guarded


def _limited_join(original: Callable[[Iterable[Any]], str]) -> Callable[[Iterable[Any]], str]:
    def join(seq: Iterable[Any]) -> str:
        w = _current()
        if w is None:
            return original(seq)
        items = list(seq)
        w.need(sum(w.size(x) for x in items), "a string")
        return original(items)

    return join


@contextlib.contextmanager
def _limits(seconds: float, cap: int) -> Iterator[_Watch]:
    """Run the body under a :class:`_Watch` for this thread: loop ticks and the sandbox hooks check the
    clock and memory, the hooks check sizes."""
    watch = _Watch(seconds, cap)
    previous = _current()
    _state.watch = watch
    try:
        yield watch
    finally:
        _state.watch = previous


def compile_template(source: str) -> Any:
    """Compile ``source`` in a fresh limited environment. Raises Jinja's errors, or
    :class:`TemplateLimitError` for a template over :data:`MAX_TEMPLATE_CHARS` or one whose compilation
    breaks the limits (Jinja evaluates constant expressions such as ``'a' * 10**9`` while compiling)."""
    if len(source) > MAX_TEMPLATE_CHARS:
        raise TemplateLimitError(f"it is {len(source) / 1024:,.0f} KiB long, more than the "
                                 f"{MAX_TEMPLATE_CHARS >> 10} KiB allowed")
    with _limits(RENDER_SECONDS, value_cap(0)):
        template = make_environment().from_string(source)
    # ``~`` compiles to calls of ``str_join``/``markup_join`` looked up in the template's module globals
    # (jinja2 3.1, pinned <3.2): limit them there.
    namespace = template.root_render_func.__globals__
    for name in ("str_join", "markup_join"):
        if name not in namespace:
            raise RuntimeError(f"jinja2 changed: {name} is not in the compiled template")
        namespace[name] = _limited_join(namespace[name])
    return template


def render_limited(template: Any, context: dict[str, Any], input_chars: int, *,
                   seconds: float = RENDER_SECONDS) -> str:
    """Render a template from :func:`compile_template` under the limits (see the module docstring)."""
    out_cap = output_cap(input_chars)
    pieces: list[str] = []
    produced = 0
    with _limits(seconds, value_cap(input_chars)):
        for piece in template.generate(**context):
            produced += len(piece)
            if produced > out_cap:
                raise TemplateLimitError(f"it produced a prompt of more than {_human(out_cap)}")
            pieces.append(piece)
    return "".join(pieces)
