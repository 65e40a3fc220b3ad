"""Tokenisation without transformers (and so without torch): tokenizer.json plus the chat template.

Needs ``pip install muai-core[text]``; for backends that do not bring transformers.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

from muai_core import chat_template
from muai_core.contracts import GenerationRequest
from muai_core.errors import ModelLoadError
from muai_core.model_source import json_object

CLEANUPS = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"), (" 'm", "'m"),
            (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))  # fmt: skip


class TextCodec:
    """Encodes and decodes like the model's Hugging Face fast tokenizer, from the files in ``directory``.

    ``hint`` is the hint of the ``ModelLoadError`` raised when those files are missing or malformed.
    """

    def __init__(self, directory: str | os.PathLike[str], hint: str) -> None:
        from tokenizers import Tokenizer

        directory = Path(directory)
        try:
            self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        except Exception as exc:  # tokenizers raises plain Exception on a bad file
            raise ModelLoadError(f"cannot read the tokenizer in {directory}: {exc}", hint=hint) from exc
        config = json_object(directory / "tokenizer_config.json", hint=hint)
        self._cleanup = bool(config.get("clean_up_tokenization_spaces", False))
        self._special = {name: config.get(name) for name in chat_template.SPECIAL_TOKENS}
        template_file = directory / "chat_template.jinja"
        self.chat_template = template_file.read_text(encoding="utf-8") if template_file.is_file() else None
        self.chat_template = self.chat_template or _default_template(config.get("chat_template"), directory, hint)

    @cached_property
    def digest(self) -> str:
        """``muai_core.text.vocab_digest`` of the vocabulary, added tokens included."""
        from muai_core.text import vocab_digest

        return vocab_digest(self.tokenizer.get_vocab(with_added_tokens=True))

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        text = self.tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens)
        if self._cleanup:
            for before, after in CLEANUPS:
                text = text.replace(before, after)
        return text

    def prompt_text(self, request: GenerationRequest) -> str:
        """The prompt, or the conversation in the chat template (see ``muai_core.chat_template.prompt_text``)."""
        return chat_template.prompt_text(request, self.chat_template, self._special)


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
