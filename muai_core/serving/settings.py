"""The server's limits: the config's ``serve:`` section, checked; an API key from the caller or the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from muai_core.config import parse_size, reject_unknown_keys
from muai_core.errors import ConfigurationError, short_repr

API_KEY_ENV = "MUAI_API_KEY"
KEYS = ("max_request_bytes", "max_tokens")


@dataclass(frozen=True)
class ServeSettings:
    """``max_request_bytes`` bounds a request's body; ``max_tokens`` bounds (and, when a request has none, is)
    the tokens one answer may generate. ``api_key`` (None: no key) is required on every route but ``/health``."""

    max_request_bytes: int = 1 << 20
    max_tokens: int = 512
    api_key: str | None = None

    @classmethod
    def from_section(cls, section: Mapping[str, Any], api_key: str | None = None) -> ServeSettings:
        """Settings from the config's ``serve:`` section; ``api_key`` else ``$MUAI_API_KEY`` else no key."""
        reject_unknown_keys(section, KEYS, "serve")
        settings = cls(api_key=api_key or os.environ.get(API_KEY_ENV) or None)
        if "max_request_bytes" in section:
            size = parse_size(section["max_request_bytes"], "serve.max_request_bytes")
            settings = cls(size, settings.max_tokens, settings.api_key)
        if "max_tokens" in section:
            value = section["max_tokens"]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(
                    f"serve.max_tokens must be an int >= 1, got {short_repr(value)}", hint="e.g. serve.max_tokens: 512"
                )
            settings = cls(settings.max_request_bytes, value, settings.api_key)
        return settings
