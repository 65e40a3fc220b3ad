"""The config's ``serve:`` section and the API key's sources."""

from __future__ import annotations

import pytest

from muai_core.config import parse_config
from muai_core.errors import ConfigurationError
from muai_core.serving.settings import API_KEY_ENV, ServeSettings


def test_the_serve_section_sets_the_limits():
    config = parse_config({"serve": {"max_request_bytes": "64KiB", "max_tokens": 32}})
    assert ServeSettings.from_section(config.serve) == ServeSettings(64 * 1024, 32, None)


@pytest.mark.parametrize(
    ("section", "named"),
    [({"max_tokens": 0}, "serve.max_tokens"), ({"max_request_bytes": "lots"}, "serve.max_request_bytes"),
     ({"max_token": 5}, "max_token")],
)  # fmt: skip
def test_a_bad_serve_section_is_refused_naming_the_key(section, named):
    with pytest.raises(ConfigurationError, match=named):
        ServeSettings.from_section(parse_config({"serve": section}).serve)


def test_the_api_key_comes_from_the_caller_else_the_environment(monkeypatch):
    monkeypatch.setenv(API_KEY_ENV, "from-env")
    assert ServeSettings.from_section({}).api_key == "from-env"
    assert ServeSettings.from_section({}, "given").api_key == "given"
    monkeypatch.setenv(API_KEY_ENV, "")
    assert ServeSettings.from_section({}).api_key is None
