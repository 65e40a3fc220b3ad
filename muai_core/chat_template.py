"""Chat templates rendered as transformers renders them, in a sandbox with a bound on work, time and size.

A chat template comes with the model and is untrusted code. jinja2's sandbox keeps it from reaching Python
internals; this module also bounds what one rendering may cost: steps (calls, filters, operators, loop
iterations, ``range`` items), wall-clock time, and the length of any value or of the output. Needs jinja2
(``pip install muai-core[text]``).
"""

from __future__ import annotations

import functools
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
        """``value``, unless it is too long (a string, list...) or too large (a number) to be worth its cost."""
        if isinstance(value, (str, list, tuple, dict)) and len(value) > self.max_chars:
            raise TemplateTooExpensive(f"a value grew past {self.max_chars} characters or items")
        if isinstance(value, int) and value.bit_length() > MAX_BITS:
            raise TemplateTooExpensive(f"a number grew past {MAX_BITS} bits")
        return value

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
    return env.from_string(tree)


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
                if (
                    _is_int(count)
                    and isinstance(sequence, (str, list, tuple))
                    and len(sequence) * count > budget.max_chars
                ):
                    raise TemplateTooExpensive(f"a value would grow past {budget.max_chars} characters or items")
            elif operator == "%" and isinstance(left, str):
                budget.check_format(left)
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

    env = BoundedSandbox(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols], optimized=False)
    env.filters = {name: _guarded(f) for name, f in env.filters.items()}
    env.filters["tojson"] = _guarded(tojson)
    env.filters["format"] = _guarded(_checked_format(env.filters["format"]))
    env.filters["muai_counted"] = _counted
    env.filters["muai_sized"] = lambda value: _budget_or_default().check_size(value)
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


def _checked_format(format_filter: Callable[..., Any]) -> Callable[..., Any]:
    """jinja's ``format`` filter (``%`` formatting), refusing fields that are too wide first."""

    @functools.wraps(format_filter)
    def format(value: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(value, str):
            _budget_or_default().check_format(value)
        return format_filter(value, *args, **kwargs)

    return format


def _guarded(function: Callable[..., Any]) -> Callable[..., Any]:
    """A jinja filter that costs a step, refuses huge numbers (widths, counts) and results that are too long."""

    @functools.wraps(function)  # keeps jinja's pass_context / pass_environment marks
    def guarded(*args: Any, **kwargs: Any) -> Any:
        budget = _spend()
        if budget is None:
            return function(*args, **kwargs)
        budget.check_ints((*args[1:], *kwargs.values()))
        return budget.check_size(function(*args, **kwargs))

    return guarded
