"""Chat templates rendered as transformers renders them, in a sandbox with a bound on work, time and size.

A chat template comes with the model and is untrusted code. jinja2's sandbox keeps it from reaching Python
internals; this module also bounds what one rendering may cost: steps (calls, filters, operators, loop
iterations, ``range`` items), wall-clock time, and the length of any value or of the output. Sizes are
checked before the operation that would build a value (``~``, ``*``, ``%``, string methods, filters), since
Python cannot stop one C-level allocation midway. Needs jinja2 (``pip install muai-core[text]``).
"""

from __future__ import annotations

import functools
import inspect
import json
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from muai_core.contracts import GenerationRequest
from muai_core.errors import InvalidInputError, first_line, short_repr

#: Bounds on one rendering. Real templates take a few hundred steps and a millisecond or two.
MAX_STEPS = 200_000
MAX_SECONDS = 2.0
#: Any value, and the output, may hold this many characters (or items) plus twice the messages' length.
MAX_CHARS = 1_000_000
#: Numbers larger than this take long to compute with, and Python cannot stop a computation midway.
MAX_BITS = 4096
#: The special tokens transformers hands to every template (``PreTrainedTokenizerBase.SPECIAL_TOKENS_ATTRIBUTES``).
SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
#: The width and precision of a ``%`` or ``str.format`` field: ``%10000000000d`` would build a 10 GB string.
_FORMAT_NUMBERS = re.compile(r"%[-#0 +]*(\d*)(?:\.(\d+))?|\{[^{}:]*:[^{}\d]*(\d*)(?:\.(\d+))?")
_HINT = (
    "the model's chat template (chat_template.jinja or tokenizer_config.json) loops, recurses or grows without "
    "bound; replace it with the template of the original model, or generate without chat"
)


class _Raised(Exception):
    """What the template's ``raise_exception(message)`` raises: it refuses the messages."""


class TemplateTooExpensive(InvalidInputError):
    """A chat template went past a bound on its work, time or size."""

    def __init__(self, what: str) -> None:
        super().__init__(f"the model's chat template is too expensive to render: {what}", hint=_HINT)


@dataclass
class _Budget:
    max_chars: int
    steps: int = 0
    deadline: float = field(default_factory=lambda: time.monotonic() + MAX_SECONDS)

    def spend(self, steps: int = 1) -> None:
        self.steps += steps
        if self.steps > MAX_STEPS:
            raise TemplateTooExpensive(f"it took more than {MAX_STEPS} steps")
        if time.monotonic() > self.deadline:
            raise TemplateTooExpensive(f"it ran longer than {MAX_SECONDS:g} s")

    def check_size(self, value: Any) -> Any:
        """``value``, unless it is too long (its characters and items, nested ones too) or too large (a number)."""
        if _size(value, self.max_chars) > self.max_chars:
            raise TemplateTooExpensive(f"a value grew past {self.max_chars} characters or items")
        if isinstance(value, int) and value.bit_length() > MAX_BITS:
            raise TemplateTooExpensive(f"a number grew past {MAX_BITS} bits")
        return value

    def check_estimate(self, size: int) -> None:
        """Refuse to build a value of about ``size`` characters or items, if that is too many."""
        if size > self.max_chars:
            raise TemplateTooExpensive(f"a value would grow past {self.max_chars} characters or items")

    def check_inputs(self, values: Iterable[Any]) -> None:
        """Refuse ``values`` whose characters and items together are too many to turn into text."""
        self.check_estimate(sum(_size(value, self.max_chars) for value in values))

    def check_format(self, text: str) -> None:
        """Refuse ``%`` or ``str.format`` fields in ``text`` that are too wide."""
        self.check_ints(int(number) for match in _FORMAT_NUMBERS.findall(text) for number in match if number)

    def check_ints(self, values: Iterable[Any]) -> None:
        for value in values:
            if isinstance(value, int) and abs(value) > self.max_chars:
                raise TemplateTooExpensive(f"it passed the number {short_repr(value)} to a function or filter")


_budget: ContextVar[_Budget | None] = ContextVar("muai_chat_template_budget", default=None)


def _spend(steps: int = 1) -> _Budget | None:
    budget = _budget.get()
    if budget is not None:  # None while jinja compiles (it may call filters on constants)
        budget.spend(steps)
    return budget


def prompt_text(request: GenerationRequest, template: Any, special_tokens: Mapping[str, Any]) -> str:
    """The text to tokenise: the prompt itself, or ``request.conversation`` rendered through ``template``.

    ``template`` is a template string, or a dict of named ones (its "default" is used) as transformers keeps them;
    a model without one refuses ``chat`` and ``messages`` with ``InvalidInputError``.
    """
    if not request.chat:
        return request.prompt
    if isinstance(template, dict):
        template = template.get("default")
    if not template or not isinstance(template, str):
        hint = "pass the text as a prompt instead of messages" if request.messages else "generate without chat"
        raise InvalidInputError("this model's tokenizer has no chat template", hint=hint)
    return render(template, request.conversation, special_tokens)


def render(template: str, messages: list[dict[str, str]], special_tokens: Mapping[str, Any]) -> str:
    """``template`` rendered with ``messages`` and a generation prompt, as ``apply_chat_template`` renders it."""
    special = {name: _token(special_tokens.get(name)) for name in SPECIAL_TOKENS}
    variables = {name: value for name, value in special.items() if value is not None}
    variables.update(messages=messages, tools=None, documents=None, add_generation_prompt=True)
    length = sum(len(m.get("content", "")) for m in messages)
    budget = _Budget(max_chars=MAX_CHARS + 2 * length)
    token = _budget.set(budget)
    try:
        chunks, length = [], 0
        for chunk in _compile(template).generate(**variables):
            length += len(chunk)
            if length > budget.max_chars:
                raise TemplateTooExpensive(f"its output grew past {budget.max_chars} characters")
            chunks.append(chunk)
            budget.spend()
        return "".join(chunks)
    except InvalidInputError:
        raise
    except RecursionError as exc:
        raise TemplateTooExpensive("it recursed too deeply") from exc
    except _Raised as exc:
        raise InvalidInputError(
            f"the model's chat template failed: {first_line(exc)}",
            hint="the template refuses these messages; change them as its message says",
        ) from exc
    except Exception as exc:  # the template is code from the model: its failures take any form
        raise InvalidInputError(
            f"the model's chat template failed: {first_line(exc)}",
            hint="the chat template cannot render this prompt; generate without chat or fix the template",
        ) from exc
    finally:
        _budget.reset(token)


def _token(value: Any) -> str | None:
    if isinstance(value, dict):  # tokenizer_config.json's AddedToken form
        value = value.get("content")
    return value if isinstance(value, str) else None


@functools.lru_cache(maxsize=16)
def _compile(template: str) -> Any:
    from jinja2 import nodes
    from jinja2.exceptions import TemplateError
    from jinja2.visitor import NodeTransformer

    class SizedConcat(NodeTransformer):
        """``a ~ b ~ c`` becomes ``[a, b, c]|muai_concat``: the parts are measured before they are joined."""

        def visit_Concat(self, node: Any) -> Any:
            self.generic_visit(node)
            parts = nodes.List(node.nodes, lineno=node.lineno)
            return nodes.Filter(parts, "muai_concat", [], [], None, None, lineno=node.lineno)

    env = _environment()
    try:
        tree = env.parse(template)
    except TemplateError as exc:
        raise InvalidInputError(
            f"the model's chat template is not a valid Jinja template: {first_line(exc)}",
            hint="replace chat_template.jinja (or tokenizer_config.json's chat_template) with the original model's",
        ) from exc
    for loop in list(tree.find_all(nodes.For)):  # every loop item costs a step
        loop.iter = nodes.Filter(loop.iter, "muai_counted", [], [], None, None, lineno=loop.lineno)
    for assign in list(tree.find_all(nodes.Assign)):  # every value kept in a variable is measured
        assign.node = nodes.Filter(assign.node, "muai_sized", [], [], None, None, lineno=assign.lineno)
    for block in list(tree.find_all(nodes.AssignBlock)):
        block.filter = nodes.Filter(block.filter, "muai_sized", [], [], None, None, lineno=block.lineno)
    return env.from_string(SizedConcat().visit(tree))


@functools.lru_cache(maxsize=1)
def _environment() -> Any:
    from jinja2.ext import loopcontrols
    from jinja2.runtime import LoopContext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class BoundedSandbox(ImmutableSandboxedEnvironment):
        intercepted_binops = frozenset({"*", "**", "%", "+"})

        def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
            budget = _budget_or_default()
            budget.spend()
            budget.check_ints((*args, *kwargs.values()))
            if isinstance(obj, LoopContext) and args:  # loop(...) of a recursive for loop
                args = (_counted(args[0]), *args[1:])
            method = getattr(obj, "__wrapped__", obj)  # str.format comes wrapped by the sandbox
            if isinstance(getattr(method, "__self__", None), str):
                if method.__name__ == "join" and len(args) == 1:  # measure the items, then join them
                    args = (list(_counted(args[0])),)
                budget.check_estimate(_str_method_size(method.__self__, method.__name__, args, kwargs, budget))
            return budget.check_size(super().call(context, obj, *args, **kwargs))

        def wrap_str_format(self, value: Any) -> Any:
            """``str.format`` as jinja sandboxes it, refusing fields that are too wide first."""
            if isinstance(getattr(value, "__self__", None), str):
                _budget_or_default().check_format(value.__self__)
            return super().wrap_str_format(value)

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            """``*``, ``**``, ``%`` and ``+``, refused before they build a huge string, list or number."""
            budget = _budget_or_default()
            budget.spend()
            if operator in ("*", "**") and _is_int(left) and _is_int(right):
                bits = left.bit_length() * (right if operator == "**" else 1) + (
                    right.bit_length() if operator == "*" else 0
                )
                if bits > MAX_BITS:
                    raise TemplateTooExpensive(f"a number would grow past {MAX_BITS} bits")
            elif operator == "*":
                count, sequence = (right, left) if _is_int(right) else (left, right)
                if _is_int(count) and isinstance(sequence, (str, list, tuple)):
                    budget.check_estimate(_size(sequence, budget.max_chars) * count)
            elif operator == "%" and isinstance(left, str):
                budget.check_format(left)
                budget.check_estimate(_format_size(left, (right,), budget))
            elif operator == "+":
                budget.check_inputs((left, right))
            return budget.check_size(super().call_binop(context, operator, left, right))

    def raise_exception(message: str) -> None:
        raise _Raised(message)

    def tojson(value: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None,
               sort_keys: bool = False) -> str:  # fmt: skip
        # as transformers: no HTML escaping, and its options
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def bounded_range(*args: int) -> range:
        numbers = range(*args)
        _spend(len(numbers))
        return numbers

    def concat(parts: list[Any]) -> str:
        _budget_or_default().check_inputs(parts)
        return "".join(map(str, parts))  # jinja's own ``~`` without autoescape

    def finalize(value: Any) -> Any:  # each ``{{ value }}`` is measured before it is turned into text
        _budget_or_default().check_inputs((value,))
        return value

    env = BoundedSandbox(
        trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols], optimized=False, finalize=finalize
    )
    env.filters = {name: _guarded(f, name) for name, f in env.filters.items()}
    env.filters["tojson"] = _guarded(tojson, "tojson")
    env.filters["muai_counted"] = _counted
    env.filters["muai_sized"] = lambda value: _budget_or_default().check_size(value)
    env.filters["muai_concat"] = concat
    env.globals.update(
        raise_exception=raise_exception,
        strftime_now=lambda fmt: datetime.now().strftime(fmt),
        range=bounded_range,
    )
    return env


def _budget_or_default() -> _Budget:
    """The rendering's budget; outside a rendering (jinja folding constants) a fresh one, for the size checks."""
    return _budget.get() or _Budget(MAX_CHARS)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _counted(items: Any) -> Iterator[Any]:
    """``items``, one step per item."""
    for item in items:
        _spend()
        yield item


def _guarded(function: Callable[..., Any], name: str) -> Callable[..., Any]:
    """A jinja filter that costs a step, refuses huge numbers (widths, counts), and inputs or results too long.

    A filter that can multiply its input (``replace``, ``indent``, ``join``...) has its result's size estimated,
    and refused, before it runs.
    """
    signature = inspect.signature(function)

    @functools.wraps(function)  # keeps jinja's pass_context / pass_environment marks
    def guarded(*args: Any, **kwargs: Any) -> Any:
        budget = _spend()
        if budget is None:
            return function(*args, **kwargs)
        budget.check_ints((*args[1:], *kwargs.values()))
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError:  # the filter's own call raises the error that names it
            return function(*args, **kwargs)
        bound.apply_defaults()
        arguments = bound.arguments
        if name == "join" and not isinstance(arguments["value"], (str, list, tuple, dict)):
            arguments["value"] = list(_counted(arguments["value"]))  # measured, then joined
        budget.check_inputs(value for key, value in arguments.items() if key not in _PASSED)
        rule = _FILTER_SIZES.get(name)
        if rule is not None:
            budget.check_estimate(rule(arguments, budget))
        return budget.check_size(function(*bound.args, **bound.kwargs))

    return guarded


#: What jinja passes a filter before the value.
_PASSED = frozenset({"context", "eval_ctx", "environment", "env"})


def _size(value: Any, limit: int) -> int:
    """About how long ``str(value)`` is: its characters and items, nested ones too, counted to past ``limit``."""
    from jinja2.utils import Namespace

    total, pending, seen = 0, [value], set()
    while pending and total <= limit:
        item = pending.pop()
        if isinstance(item, (str, bytes)):
            total += len(item)
        elif isinstance(item, (list, tuple, set, frozenset)):
            total += len(item)
            pending.extend(item)
        elif isinstance(item, dict):
            total += len(item)
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, Namespace) and id(item) not in seen:  # the one value a template can make cyclic
            seen.add(id(item))
            pending.append(item._Namespace__attrs)
    return total


def _format_size(text: str, values: tuple[Any, ...], budget: _Budget) -> int:
    """The most characters ``text % values`` or ``text.format(*values)`` can take: each field the widest value."""
    fields = text.count("%") + text.count("{")
    widths = [int(n) for match in _FORMAT_NUMBERS.findall(text) for n in match if n]
    widest = max((_size(value, budget.max_chars) for value in values), default=0)
    return len(text) + fields * (widest + max(widths, default=0))


def _str_method_size(text: str, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], budget: _Budget) -> int:
    """The most characters ``text.name(*args, **kwargs)`` can return, for the methods that can grow a string."""
    if name in ("format", "format_map"):
        return _format_size(text, (*args, *kwargs.values()), budget)
    try:
        arguments = inspect.signature(getattr(str, name)).bind(text, *args, **kwargs).arguments
    except (TypeError, ValueError):  # the call itself raises the error that names it
        return len(text)
    rule = _STR_SIZES.get(name)
    return rule(text, arguments, budget) if rule else len(text)


def _replaced_size(text: Any, old: Any, new: Any, count: Any) -> int:
    """The length of ``text.replace(old, new, count)``, counted before it is built."""
    if not (isinstance(text, str) and isinstance(old, str) and isinstance(new, str)):
        return 0  # jinja's replace filter turns them into strings: their sizes were checked as inputs
    times = text.count(old)
    if _is_int(count) and count >= 0:
        times = min(times, count)
    return len(text) + times * max(len(new) - len(old), 0)


def _lines(text: Any) -> int:
    return text.count("\n") + 1 if isinstance(text, str) else 1


def _width(value: Any) -> int:
    return len(value) if isinstance(value, str) else value if _is_int(value) else 0


_STR_SIZES: dict[str, Callable[[str, dict[str, Any], _Budget], int]] = {
    "replace": lambda text, a, _: _replaced_size(text, a.get("old"), a.get("new"), a.get("count", -1)),
    "expandtabs": lambda text, a, _: len(text) + text.count("\t") * _width(a.get("tabsize", 8)),
    "join": lambda text, a, b: _size(a.get("iterable"), b.max_chars) + len(text) * len(a.get("iterable", ())),
    "translate": lambda text, a, b: len(text) * max(_size(a.get("table"), b.max_chars), 1),
}

_FILTER_SIZES: dict[str, Callable[[dict[str, Any], _Budget], int]] = {
    "replace": lambda a, _: _replaced_size(a["s"], a["old"], a["new"], a["count"]),
    "indent": lambda a, b: _size(a["s"], b.max_chars) + _lines(a["s"]) * _width(a["width"]),
    "wordwrap": lambda a, b: _size(a["s"], b.max_chars) * (1 + _width(a["wrapstring"] or "\n")),
    "join": lambda a, b: _size(a["value"], b.max_chars) + _width(a["d"]) * len(a["value"]),
    "urlize": lambda a, b: _size(a["value"], b.max_chars) * (1 + _size((a["target"], a["rel"]), b.max_chars)),
    "format": lambda a, b: _format_size(a["value"], (a["args"], a["kwargs"]), b) if isinstance(a["value"], str) else 0,
    "tojson": lambda a, b: _size(a["value"], b.max_chars) * (1 + _width(a["indent"])),
}
