"""OpenAI request bodies (chat and completions) checked and turned into ``ModelManager`` arguments.

Greedy decoding unless the request samples: ``temperature`` 0 (or neither ``temperature`` nor ``top_p``) is
greedy. vLLM's extras ``top_k``, ``min_tokens``, ``repetition_penalty`` and ``ignore_eos`` are accepted too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from muai_core.serving.errors import bad_request
from muai_core.serving.settings import ServeSettings

#: OpenAI's message roles, as muai's (``developer`` is the newer name of ``system``).
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant", "tool": "tool"}
#: Parameters muai does not offer, and the value that means "not used" (a request may send that value).
UNSUPPORTED = {
    "logprobs": (None, False),
    "top_logprobs": (None, 0),
    "tools": (None, []),
    "tool_choice": (None, "none", "auto"),
    "functions": (None, []),
    "logit_bias": (None, {}),
    "echo": (None, False),
    "best_of": (None, 1),
    "suffix": (None, ""),
    "frequency_penalty": (None, 0, 0.0),
    "presence_penalty": (None, 0, 0.0),
}


@dataclass(frozen=True)
class ParsedRequest:
    """One request: the model, ``ModelManager.astream``'s arguments, and whether to stream the answer."""

    model: str
    arguments: dict[str, Any] = field(default_factory=dict)
    stream: bool = False


def parse_chat(body: Any, settings: ServeSettings) -> ParsedRequest:
    """``POST /v1/chat/completions``; raises ``ApiError`` (400) naming the parameter at fault."""
    body = _object(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("messages", "messages must be a non-empty list of {role, content} objects")
    arguments = {"messages": [_message(i, m) for i, m in enumerate(messages)]}
    tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    return _common(body, settings, arguments, tokens, settings.max_tokens)


def parse_completion(body: Any, settings: ServeSettings) -> ParsedRequest:
    """``POST /v1/completions``: one prompt (a string, or a list holding one); the answer is the completion."""
    body = _object(body)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str) or not prompt:
        raise bad_request("prompt", "prompt must be a non-empty string (one prompt per request)")
    arguments: dict[str, Any] = {"prompt": prompt, "return_full_text": False}
    return _common(body, settings, arguments, body.get("max_tokens", 16), settings.max_tokens)


def _common(
    body: dict[str, Any], settings: ServeSettings, arguments: dict[str, Any], max_tokens: Any, default: int
) -> ParsedRequest:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("model", "model must name a model (GET /v1/models lists them)")
    for name, unused in UNSUPPORTED.items():
        if body.get(name) not in unused:
            raise bad_request(name, f"{name} is not supported by muai serve; leave it out")
    if body.get("n", 1) != 1:
        raise bad_request("n", "muai serve answers with one choice: n must be 1")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise bad_request("stream", "stream must be true or false")
    arguments["max_new_tokens"] = _tokens(max_tokens, default, settings.max_tokens)
    arguments.update(_sampling(body))
    stop = body.get("stop")
    if stop is not None:
        stop = [stop] if isinstance(stop, str) else stop
        if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop) or len(stop) > 4:
            raise bad_request("stop", "stop must be a non-empty string or a list of up to 4 of them")
        arguments["stop"] = stop
    for ours, theirs in (("min_new_tokens", "min_tokens"), ("top_k", "top_k"), ("seed", "seed")):
        if body.get(theirs) is not None:
            arguments[ours] = _int(body, theirs)
    for name in ("repetition_penalty",):
        if body.get(name) is not None:
            arguments[name] = _number(body, name)
    if body.get("ignore_eos") is not None:
        if not isinstance(body["ignore_eos"], bool):
            raise bad_request("ignore_eos", "ignore_eos must be true or false")
        arguments["ignore_eos"] = body["ignore_eos"]
    return ParsedRequest(model, arguments, stream)


def _sampling(body: dict[str, Any]) -> dict[str, Any]:
    """``temperature``/``top_p`` as muai's arguments; temperature 0 means greedy (``top_p`` then unused)."""
    temperature = None if body.get("temperature") is None else _number(body, "temperature")
    top_p = None if body.get("top_p") is None else _number(body, "top_p")
    if temperature is not None and not 0 <= temperature <= 2:
        raise bad_request("temperature", f"temperature must be between 0 and 2, got {temperature}")
    if top_p is not None and not 0 < top_p <= 1:
        raise bad_request("top_p", f"top_p must be in (0, 1], got {top_p}")
    if temperature == 0 or (temperature is None and top_p is None):
        return {"do_sample": False}
    return {"do_sample": True, "temperature": temperature, "top_p": top_p}


def _tokens(value: Any, default: int, limit: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise bad_request("max_tokens", f"max_tokens must be an integer >= 1, got {value!r}")
    if value > limit:
        raise bad_request("max_tokens", f"max_tokens is {value}, more than this server allows ({limit})")
    return value


def _message(index: int, message: Any) -> dict[str, str]:
    """One chat message as muai's ``{role, content}``; text parts of a content list are joined."""
    where = f"messages[{index}]"
    if not isinstance(message, dict):
        raise bad_request("messages", f"{where} must be an object with role and content")
    role = ROLES.get(message.get("role"))  # type: ignore[arg-type]
    if role is None:
        raise bad_request("messages", f"{where}.role must be one of {', '.join(ROLES)}, got {message.get('role')!r}")
    content = message.get("content")
    if isinstance(content, list):
        if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in content):
            raise bad_request("messages", f"{where}.content: muai serve takes text parts only")
        content = "".join(part["text"] for part in content)
    if not isinstance(content, str):
        raise bad_request("messages", f"{where}.content must be a string")
    return {"role": role, "content": content}


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise bad_request("body", "the request body must be a JSON object")
    return body


def _number(body: dict[str, Any], name: str) -> float:
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise bad_request(name, f"{name} must be a finite number, got {value!r}")
    return float(value)


def _int(body: dict[str, Any], name: str) -> int:
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(name, f"{name} must be an integer, got {value!r}")
    return value
