"""Typed, frozen records that cross the boundary between the core and backend plugins."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from muai_core.errors import InvalidInputError, ModelLoadError

#: Receives each new piece of text as it is generated; returning ``False`` stops generation.
Streamer = Callable[[str], "bool | None"]

#: ``eos``: the model's end-of-sequence token; ``stop``: a stop string or one of ``stop_token_ids``;
#: ``length``: the token budget; ``stopped``: the streamer returned ``False``.
FinishReason = Literal["eos", "stop", "length", "stopped"]

#: The roles a chat message may have.
ROLES = ("system", "user", "assistant", "tool")


@dataclass(frozen=True)
class Availability:
    """Whether a backend can run on this machine, and why not."""

    available: bool
    reason: str = ""


@dataclass(frozen=True)
class LoadRequest:
    """Everything a backend needs to load one model.

    ``source`` is a local directory when ``is_local``, else a Hugging Face hub id.
    ``paths`` holds the model's ``models.<name>`` config entries (e.g. ``openvino_path``, ``quality_bar``).
    ``settings`` is the backend's own config section (``backend.<name>``).
    ``models_dir`` is the models directory the model is filed under; files a backend derives from the model
    (exports, compiled caches) belong in a folder of its own under it, e.g. ``{models_dir}/openvino``.
    """

    model_name: str
    model_type: str
    source: str
    is_local: bool
    device: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    paths: Mapping[str, Any] = field(default_factory=dict)
    models_dir: str = "models"

    def require_model_type(self, supported: tuple[str, ...], backend: str) -> None:
        """Raise ``InvalidInputError`` when this backend cannot load ``model_type``; for ``"seq2seq"`` (an
        encoder-decoder model, which other backends may run) a ``ModelLoadError``, so the next backend gets it."""
        if self.model_type == "seq2seq" and self.model_type not in supported:
            raise ModelLoadError(
                f"{backend} runs decoder-only models, and '{self.model_name}' was asked for as model_type 'seq2seq'",
                hint="run it on a backend that supports encoder-decoder models (pytorch, openvino)",
            )
        if self.model_type not in supported:
            raise InvalidInputError(
                f"{backend} cannot load model_type {self.model_type!r}",
                hint=f"supported model types: {', '.join(supported)}",
            )


_SAMPLING_KEYS = ("temperature", "top_k", "top_p")
#: Request fields the core sets itself; ``generate`` does not accept them.
_INTERNAL_FIELDS = ("resume_ids", "cancel", "drafter")

#: Below this, logits divided by the temperature overflow float32 (inf) on some backends; it is near-greedy anyway.
MIN_TEMPERATURE = 1e-3
#: The most tokens ``prompt_lookup`` (or a draft model, ``draft_tokens``) may propose at a time.
MAX_PROMPT_LOOKUP = 64


@dataclass(frozen=True)
class GenerationRequest:
    """A validated text-generation request; the same fields mean the same thing on every backend.

    ``max_new_tokens`` wins over ``max_length`` (prompt plus new tokens), as in transformers.
    ``return_full_text`` keeps the prompt in ``GenerationResult.text`` (transformers' behaviour).
    ``chat`` sends the prompt as one user message through the model's chat template; ``text`` is then the
    answer alone (see ``keeps_prompt``), never the rendered template.
    ``ignore_eos`` never picks the model's end-of-sequence token, so the whole budget is generated (benchmarks)
    unless a stop string or stop token ends it.
    ``stop`` ends generation as soon as the generated text contains one of these strings; the text is cut
    before it. ``stop_token_ids`` end generation like the model's EOS (their text is kept). Both finish
    with ``"stop"``. ``min_new_tokens`` bans EOS and ``stop_token_ids`` until that many tokens are out.
    ``repetition_penalty`` (transformers' semantics) divides the positive logits of every token already in
    the prompt or the output by it, and multiplies the negative ones; 1.0 changes nothing.
    ``prompt_lookup`` (prompt-lookup decoding) proposes up to that many tokens at a time from the prompt and the
    text so far (what followed the latest earlier occurrence of the last few tokens) and checks them in one
    forward pass: the same tokens (greedy) or the same distribution (sampling), in fewer steps where the
    answer repeats its input (summaries, edits, extraction). 0 turns it off; None (not given) takes the
    model's ``models.<name>.prompt_lookup`` from the config, else 0. Backends that cannot verify several tokens
    at once ignore it.
    ``draft`` (draft-model speculative decoding) names another model with the target's tokenizer that proposes
    up to ``draft_tokens`` tokens a round (default 8; the number is adapted to the acceptance rate and the
    measured costs), checked by the target in one forward pass: the same tokens or distribution, as above.
    None (not given) takes ``models.<name>.draft`` (and ``draft_tokens``) from the config; "" turns it off. It
    wins over ``prompt_lookup``; where it cannot be used (see ``ModelManager.get_model_info``'s ``draft``), the
    target decodes without it.
    ``drafter`` (set by the manager, never by callers) is the loaded draft (``muai_core.drafting.DraftModel``).
    ``cancel`` (set by the manager, never by callers) ends generation at the next token once it is set: a
    stream left early or a cancelled ``agenerate`` (``TextStream`` checks it on every token).
    ``resume_ids`` (set by the manager, never by callers) are new tokens another backend already produced:
    the generation continues after them (see docs/writing-a-backend.md, "Resuming a generation").
    ``messages`` is a conversation (``{"role": ..., "content": ...}`` dicts) sent through the chat template instead
    of a prompt; ``prompt`` is then empty and ``chat`` True. ``conversation`` gives the messages either way.
    """

    prompt: str = ""
    max_length: int = 100
    max_new_tokens: int | None = None
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int | None = None
    return_full_text: bool = True
    chat: bool = False
    ignore_eos: bool = False
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    min_new_tokens: int = 0
    repetition_penalty: float = 1.0
    prompt_lookup: int | None = None
    draft: str | None = None
    draft_tokens: int | None = None
    streamer: Streamer | None = None
    resume_ids: tuple[int, ...] = ()
    messages: tuple[Mapping[str, str], ...] | None = None
    cancel: threading.Event | None = field(default=None, compare=False)
    drafter: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def from_kwargs(cls, prompt: Any = None, max_length: Any = 100, **kwargs: Any) -> GenerationRequest:
        """Build a request from ``generate``'s arguments, rejecting anything unknown or out of range."""
        fields = [k for k in cls.__dataclass_fields__ if k not in _INTERNAL_FIELDS]
        unknown = sorted(set(kwargs) - set(fields))
        if unknown:
            accepted = ", ".join(k for k in fields if k != "prompt")
            raise InvalidInputError(
                f"unknown generation argument(s): {', '.join(unknown)}",
                hint=f"accepted arguments are: {accepted}",
            )
        if kwargs.get("do_sample") is None:
            kwargs["do_sample"] = any(kwargs.get(k) is not None for k in _SAMPLING_KEYS)
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        for name, single in (("stop", str), ("stop_token_ids", int)):
            if name in kwargs:
                kwargs[name] = _as_tuple(kwargs[name], single)
        if "messages" in kwargs:
            kwargs["messages"] = _checked_messages(kwargs["messages"], prompt)
            kwargs.setdefault("chat", True)
            prompt = ""
        elif prompt is None:
            raise InvalidInputError("no prompt", hint="pass a prompt, or messages=[{'role': 'user', 'content': ...}]")
        request = cls(prompt=prompt, max_length=max_length, **kwargs)
        request.validate()
        return request

    def validate(self) -> None:
        """Raise ``InvalidInputError`` naming the first field that is out of range."""
        if self.messages is not None:
            _checked_messages(self.messages, None if self.prompt == "" else self.prompt)
            if self.chat is not True:
                raise InvalidInputError(
                    "messages always go through the model's chat template, but chat=False", hint="drop chat=False"
                )
        elif not isinstance(self.prompt, str):
            raise InvalidInputError(
                f"prompt must be a str, got {type(self.prompt).__name__}",
                hint="decode bytes first, e.g. data.decode('utf-8')",
            )
        elif not self.prompt:
            raise InvalidInputError("prompt is empty", hint="pass at least one character of text")
        _check_text("prompt", self.prompt)
        _check_int("max_length", self.max_length, minimum=1)
        if self.max_new_tokens is not None:
            _check_int("max_new_tokens", self.max_new_tokens, minimum=1)
        _check_bool("do_sample", self.do_sample)
        _check_bool("return_full_text", self.return_full_text)
        _check_bool("chat", self.chat)
        _check_bool("ignore_eos", self.ignore_eos)
        _check_int("top_k", self.top_k, minimum=0)
        if not _is_real(self.temperature) or not MIN_TEMPERATURE <= self.temperature < math.inf:
            raise InvalidInputError(
                f"temperature must be a finite number >= {MIN_TEMPERATURE}, got {self.temperature!r}",
                hint="lower temperatures overflow the scaled logits; use do_sample=False for greedy decoding",
            )
        if not _is_real(self.top_p) or not 0 < self.top_p <= 1:
            raise InvalidInputError(
                f"top_p must be in (0, 1], got {self.top_p!r}", hint="e.g. top_p=0.9; top_p=1 keeps every token"
            )
        if self.seed is not None:
            _check_int("seed", self.seed, minimum=0, maximum=2**32 - 1)
        self._validate_stopping()
        if self.streamer is not None and not callable(self.streamer):
            raise InvalidInputError(f"streamer must be callable, got {type(self.streamer).__name__}")
        if not self.do_sample:
            changed = [
                k for k in _SAMPLING_KEYS if getattr(self, k) != GenerationRequest.__dataclass_fields__[k].default
            ]
            if changed:
                raise InvalidInputError(
                    f"{', '.join(changed)} only apply when sampling, but do_sample=False",
                    hint="pass do_sample=True, or drop the sampling arguments for greedy decoding",
                )

    def _validate_stopping(self) -> None:
        if not isinstance(self.stop, tuple) or not all(isinstance(s, str) and s for s in self.stop):
            raise InvalidInputError(
                f"stop must be a string or a list of non-empty strings, got {self.stop!r}",
                hint='e.g. stop=["\\n\\n", "User:"]',
            )
        if not isinstance(self.stop_token_ids, tuple):
            raise InvalidInputError(f"stop_token_ids must be an int or a list of ints, got {self.stop_token_ids!r}")
        for token in self.stop_token_ids:
            _check_int("stop_token_ids", token, minimum=0)
        _check_int("min_new_tokens", self.min_new_tokens, minimum=0)
        if self.max_new_tokens is not None and self.min_new_tokens > self.max_new_tokens:
            raise InvalidInputError(
                f"min_new_tokens={self.min_new_tokens} is more than max_new_tokens={self.max_new_tokens}",
                hint=f"pass min_new_tokens={self.max_new_tokens} or less",
            )
        if self.prompt_lookup is not None:
            _check_int("prompt_lookup", self.prompt_lookup, minimum=0, maximum=MAX_PROMPT_LOOKUP)
        if self.draft is not None and not isinstance(self.draft, str):
            raise InvalidInputError(
                f"draft must be a model name, got {type(self.draft).__name__}",
                hint="e.g. draft='smollm2-135m'; draft='' decodes without a draft model",
            )
        if self.draft_tokens is not None:
            _check_int("draft_tokens", self.draft_tokens, minimum=1, maximum=MAX_PROMPT_LOOKUP)
        penalty = self.repetition_penalty
        if not _is_real(penalty) or not 0 < penalty < math.inf:
            raise InvalidInputError(
                f"repetition_penalty must be a finite number > 0, got {penalty!r}",
                hint="e.g. repetition_penalty=1.2; 1.0 changes nothing",
            )

    def check_token_ids(self, vocab_size: int) -> None:
        """Raise ``InvalidInputError`` when a ``stop_token_ids`` entry is not in the model's vocabulary."""
        beyond = [t for t in self.stop_token_ids if t >= vocab_size]
        if beyond:
            raise InvalidInputError(
                f"stop_token_ids {beyond} are beyond the model's vocabulary of {vocab_size} tokens",
                hint=f"pass ids below {vocab_size}",
            )

    @property
    def keeps_prompt(self) -> bool:
        """Whether ``GenerationResult.text`` starts with the prompt: ``return_full_text`` and not ``chat``."""
        return self.return_full_text and not self.chat

    @property
    def conversation(self) -> list[dict[str, str]]:
        """The messages to render through a chat template: ``messages``, else the prompt as one user message."""
        if self.messages is not None:
            return [dict(message) for message in self.messages]
        return [{"role": "user", "content": self.prompt}]

    def new_token_budget(self, prompt_tokens: int, context_length: int | None = None) -> int:
        """How many tokens to generate after a prompt of ``prompt_tokens``; checked against the context."""
        if context_length is not None and prompt_tokens >= context_length:
            raise InvalidInputError(
                f"the prompt has {prompt_tokens} tokens but the model's context holds {context_length}",
                hint="shorten the prompt",
            )
        if self.max_new_tokens is not None:
            budget = self.max_new_tokens
        else:
            budget = self.max_length - prompt_tokens
            if budget < 1:
                raise InvalidInputError(
                    f"max_length={self.max_length} leaves no room after the prompt's {prompt_tokens} tokens",
                    hint=f"raise max_length above {prompt_tokens}, or pass max_new_tokens",
                )
        if context_length is not None and prompt_tokens + budget > context_length:
            raise InvalidInputError(
                f"{prompt_tokens} prompt tokens + {budget} new tokens exceed the model's context of {context_length}",
                hint=f"ask for at most {context_length - prompt_tokens} new tokens",
            )
        return budget


@dataclass(frozen=True)
class GenerationResult:
    """What a backend's generate returns; the core turns it into text and metrics.

    ``text`` and ``completion`` end before a stop string that ended generation; ``token_ids`` are all the
    generated ids, up to and including the one that completed the stop string (or the EOS or stop token).
    """

    text: str
    completion: str
    prompt_tokens: int
    token_ids: tuple[int, ...]
    finish_reason: FinishReason
    ttft_s: float
    token_latencies_s: tuple[float, ...] = ()
    backend: str = ""  # the backend that generated it; filled in by ModelManager
    #: Part of ``ttft_s`` spent waiting for a place in the model's batch (0.0 where a backend does not queue).
    queue_wait_s: float = 0.0
    #: Speculative decoding (``prompt_lookup``): steps that checked proposed tokens, tokens proposed, and accepted.
    verify_calls: int = 0
    draft_tokens: int = 0
    accepted_tokens: int = 0

    @property
    def new_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def total_s(self) -> float:
        return self.ttft_s + sum(self.token_latencies_s)


@dataclass(frozen=True)
class Attempt:
    """One try of one backend by the resolver."""

    backend: str
    stage: str
    outcome: Literal["ok", "unavailable", "failed", "not installed", "unsupported"]
    reason: str = ""
    seconds: float = 0.0


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def _as_tuple(value: Any, single: type) -> Any:
    """A lone ``single`` or a list / tuple of values as a tuple; anything else unchanged, for ``validate``."""
    if isinstance(value, single) and not isinstance(value, bool):
        return (value,)
    return tuple(value) if isinstance(value, (list, tuple)) else value


def _check_text(name: str, text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInputError(
            f"{name} is not valid Unicode text: {exc.reason} at position {exc.start}",
            hint="decode the input with errors='replace', or drop lone surrogate characters",
        ) from exc


def _checked_messages(messages: Any, prompt: Any) -> tuple[dict[str, str], ...]:
    """``messages`` as a tuple of fresh dicts; ``InvalidInputError`` naming the first bad message otherwise."""
    example = "e.g. messages=[{'role': 'user', 'content': 'Hello'}]"
    if prompt is not None:
        raise InvalidInputError("pass a prompt or messages, not both", hint="put the prompt in the last user message")
    if not isinstance(messages, (list, tuple)):
        raise InvalidInputError(
            f"messages must be a list of dicts with 'role' and 'content', got {type(messages).__name__}", hint=example
        )
    if not messages:
        raise InvalidInputError("messages is empty", hint=example)
    for index, message in enumerate(messages):
        where = f"message {index}"
        if not isinstance(message, Mapping):
            raise InvalidInputError(
                f"{where} must be a dict with 'role' and 'content', got {type(message).__name__}",
                hint=f"{example}; one conversation per call",
            )
        if set(message) != {"role", "content"}:
            keys = ", ".join(sorted(map(repr, set(message) ^ {"role", "content"})))
            raise InvalidInputError(
                f"{where} must hold exactly 'role' and 'content' (missing or unknown: {keys})", hint=example
            )
        if message["role"] not in ROLES:
            raise InvalidInputError(f"{where} has role {message['role']!r}", hint=f"roles are {', '.join(ROLES)}")
        if not isinstance(message["content"], str):
            raise InvalidInputError(
                f"{where}'s content must be a str, got {type(message['content']).__name__}",
                hint="pass the text itself; muai takes text content only",
            )
        _check_text(f"{where}'s content", message["content"])
    return tuple(dict(message) for message in messages)


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise InvalidInputError(f"{name} must be True or False, got {value!r}")


def _check_int(name: str, value: Any, *, minimum: int, maximum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        upper = f" and <= {maximum}" if maximum is not None else ""
        raise InvalidInputError(
            f"{name} must be >= {minimum}{upper}, got {value}", hint=f"pass {name}={minimum} or more"
        )
