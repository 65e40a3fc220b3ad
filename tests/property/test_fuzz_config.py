"""Fuzzed configuration: every YAML document ends in a valid config or a ConfigurationError naming the problem."""

from __future__ import annotations

import math

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from muai_core import ModelManager
from muai_core.config import load_config, parse_config
from muai_core.errors import ConfigurationError

KEYS = ["backend", "default", "priority", "model_overrides", "models", "models_dir", "max_cache_bytes",
        "pytorch", "openvino", "counting", "enable_fallback", "device", "pytorch_path", "x", "", "../..",
        "prompt_lookup", "draft", "draft_tokens", "quality_bar", "max_kl",
        "dynamic_quantization_group_size"]  # fmt: skip
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(["pytorch", "openvino", "counting", "nope", "", "cpu", "GPU", "2GiB", "-1", "../x", "\x00"])
    | st.text(max_size=12)
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner),
    max_leaves=12,
)
DOCUMENTS = st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=5) | VALUES


# Feature: openvino-backend-integration, Property 2: Configuration Loading and Validation (fuzzed)
@settings(max_examples=1000)
@given(DOCUMENTS)
def test_any_document_is_a_config_or_a_clear_configuration_error(document):
    try:
        config = parse_config(document, source="fuzz.yaml")
    except ConfigurationError as exc:
        assert "fuzz.yaml" in str(exc) and len(exc.reason) > len(" in fuzz.yaml") + 10
        return
    assert config.default_backend and config.priority and config.models_dir
    assert config.max_cache_bytes is None or config.max_cache_bytes >= 1


@settings(max_examples=300)
@given(st.text(max_size=200) | DOCUMENTS.map(lambda d: yaml.safe_dump(d, allow_unicode=True)))
def test_any_file_text_loads_or_raises_a_configuration_error(muai_workdir, text):
    path = muai_workdir / "system.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_config(path)
    except ConfigurationError as exc:
        assert "system.yaml" in str(exc)


@settings(max_examples=300)
@given(
    device=SCALARS,
    cached=SCALARS,
    cache_bytes=SCALARS,
    backend=st.none() | st.sampled_from(["pytorch", "openvino", "nope", "", "a b"]) | SCALARS,
)
def test_manager_arguments_are_checked_before_use(registry, device, cached, cache_bytes, backend):
    try:
        manager = ModelManager(
            device=device, max_cached_models=cached, max_cache_bytes=cache_bytes, backend=backend, registry=registry
        )
    except ConfigurationError as exc:
        assert exc.reason
        return
    assert isinstance(manager.device, str) and manager.max_cached_models >= 1
    assert not (isinstance(cache_bytes, float) and math.isnan(cache_bytes))


@settings(max_examples=200)
@given(
    key=st.sampled_from(["backend.default", "backend.priority", "backend.openvino", "models_dir", "max_cache_bytes"]),
    fanouts=st.lists(st.integers(min_value=1, max_value=12), min_size=1, max_size=10),
)
def test_nested_aliases_load_or_are_refused_within_the_deadline(muai_workdir, key, fanouts):
    anchors = ["&a0 [lol, lol]"]
    for level, fanout in enumerate(fanouts, 1):
        anchors.append(f"&a{level} [" + ", ".join([f"*a{level - 1}"] * fanout) + "]")
    outer, _, inner = key.partition(".")
    value = "[" + ", ".join(anchors) + "]"
    path = muai_workdir / "system.yaml"
    path.write_text(f"{outer}: {{{inner}: {value}}}" if inner else f"{outer}: {value}", encoding="utf-8")
    try:
        load_config(path)
    except ConfigurationError as exc:
        assert "system.yaml" in str(exc) and len(str(exc)) < 500
