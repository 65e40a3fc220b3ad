"""Tokenisation without transformers (and so without torch): tokenizer.json plus the chat template.

Needs ``pip install muai-core[text]``; for backends that do not bring transformers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from muai_core.contracts import GenerationRequest
from muai_core.errors import InvalidInputError, ModelLoadError
from muai_core.model_source import json_object

CLEANUPS = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"), (" 'm", "'m"),
            (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))  # fmt: skip


class TextCodec:
    """Encodes and decodes like the model's Hugging Face fast tokenizer, from the files in ``directory``."""

    def __init__(self, directory: Path, hint: str) -> None:
        from tokenizers import Tokenizer

        try:
            self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        except Exception as exc:  # tokenizers raises plain Exception on a bad file
            raise ModelLoadError(f"cannot read the tokenizer in {directory}: {exc}", hint=hint) from exc
        config = json_object(directory / "tokenizer_config.json", hint=hint)
        self._cleanup = bool(config.get("clean_up_tokenization_spaces", False))
        self._special = {name: _token(config.get(name)) for name in ("bos_token", "eos_token", "pad_token")}
        template_file = directory / "chat_template.jinja"
        self.chat_template = template_file.read_text(encoding="utf-8") if template_file.is_file() else None
        self.chat_template = self.chat_template or _default_template(config.get("chat_template"), directory, hint)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        text = self.tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens)
        if self._cleanup:
            for before, after in CLEANUPS:
                text = text.replace(before, after)
        return text

    def prompt_text(self, request: GenerationRequest) -> str:
        if not request.chat:
            return request.prompt
        if not self.chat_template:
            raise InvalidInputError("this model's tokenizer has no chat template", hint="generate without chat")
        return _render(self.chat_template, [{"role": "user", "content": request.prompt}], self._special)


def _render(template: str, messages: list[dict[str, str]], special: dict[str, str | None]) -> str:
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = lambda value, indent=None: json.dumps(value, indent=indent, ensure_ascii=False)
    env.globals["raise_exception"] = raise_exception
    try:
        return env.from_string(template).render(messages=messages, add_generation_prompt=True, **special)
    except TemplateError as exc:
        raise InvalidInputError(f"the model's chat template failed: {exc}") from exc


def _token(value: Any) -> str | None:
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


def _default_template(value: Any, directory: Path, hint: str) -> str | None:
    """tokenizer_config.json's ``chat_template``: one template, or a list of named ones (the "default" is used)."""
    if isinstance(value, list):
        named = {t.get("name"): t.get("template") for t in value if isinstance(t, dict)}
        value = named.get("default")
    if value is None or isinstance(value, str):
        return value
    raise ModelLoadError(
        f"the chat_template in {directory / 'tokenizer_config.json'} is neither a template nor a list of named "
        f"templates with a 'default' one",
        hint=hint,
    )
