"""Hypothesis properties of the core, on real in-place backends (counting, and faulty for faults)."""

from __future__ import annotations

import logging
import string

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from muai_core import ModelManager, PerformanceMonitor
from muai_core.config import parse_config
from muai_core.errors import BackendError, ConfigurationError, InferenceError, ModelLoadError
from muai_core.plugins import KNOWN_BACKENDS, PluginRegistry
from muai_core.testing import CountingBackend, FaultyBackend
from tests.conftest import write_config

names = st.text(string.ascii_lowercase + string.digits + "_-", min_size=1, max_size=12).filter(lambda s: s[0].isalnum())
prompts = st.text(string.ascii_letters + string.digits + " .,!?", min_size=1, max_size=20)


def fresh_registry(*extra: str) -> PluginRegistry:
    registry = PluginRegistry()
    registry.register(CountingBackend(), "counting")
    for name in extra:
        registry.register(CountingBackend(name), name)
    return registry


# Feature: openvino-backend-integration, Property 1: Backend Parameter Validation
@settings(max_examples=200)
@given(backend=st.one_of(names, st.sampled_from(["pytorch", "openvino", "counting", "PyTorch", ""]), st.integers()))
def test_property_1_backend_parameter_validation(backend):
    registry = fresh_registry()
    valid = backend in ("counting", *KNOWN_BACKENDS)
    if valid:
        assert ModelManager(backend=backend, registry=registry).backend_type == backend
    else:
        with pytest.raises(ConfigurationError) as info:
            ModelManager(backend=backend, registry=registry)
        assert "installed backends: counting" in str(info.value)


valid_sections = st.fixed_dictionaries(
    {},
    optional={
        "device": st.sampled_from(["cpu", "CPU", "GPU", "AUTO", "cuda"]),
        "enable_fallback": st.booleans(),
        "num_streams": st.integers(1, 8),
    },
)
valid_configs = st.fixed_dictionaries(
    {
        "backend": st.fixed_dictionaries(
            {"default": st.sampled_from(["counting", "pytorch", "openvino"])},
            optional={
                "priority": st.lists(st.sampled_from(["counting", "pytorch", "openvino"]), min_size=1, max_size=3),
                "counting": valid_sections,
                "openvino": valid_sections,
            },
        )
    },
    optional={
        "model_overrides": st.dictionaries(names, st.sampled_from(["counting", "pytorch", "openvino"]), max_size=3),
        "models": st.dictionaries(names, st.fixed_dictionaries({"pytorch_path": names}), max_size=3),
    },
)


# Feature: openvino-backend-integration, Property 2: Configuration Loading and Validation
@settings(max_examples=150)
@given(config=valid_configs)
def test_property_2_valid_configuration_is_applied(config):
    manager = ModelManager(registry=fresh_registry(), config_path=write_config(yaml.safe_dump(config)))
    assert manager.backend_type == config["backend"]["default"]
    for section in ("counting", "openvino"):
        assert dict(manager.config.backend_settings(section)) == config["backend"].get(section, {})
    for model, backend in config.get("model_overrides", {}).items():
        assert manager.config.model_overrides[model] == (backend,)
    expected_priority = tuple(dict.fromkeys(config["backend"].get("priority", ["pytorch"])))
    assert manager.config.priority == expected_priority


bad_values = st.one_of(st.integers(), st.floats(allow_nan=False), st.lists(st.integers(), max_size=2), st.just(""))
corruptions = st.sampled_from(
    [
        ("backend", "default"),
        ("backend", "priority"),
        ("backend", "openvino", "enable_fallback"),
        ("backend", "openvino", "device"),
        ("models_dir",),
        ("unknown_top",),
        ("backend", "openvino"),
    ]
)


# Feature: openvino-backend-integration, Property 2: Configuration Loading and Validation
@settings(max_examples=150)
@given(config=valid_configs, where=corruptions, value=bad_values)
def test_property_2_invalid_configuration_is_rejected_naming_the_key(config, where, value):
    target = config
    for key in where[:-1]:
        target = target.setdefault(key, {})
    if where == ("backend", "priority") and isinstance(value, list) and value:
        value = [str(v) + "/x" for v in value]
    target[where[-1]] = value
    with pytest.raises(ConfigurationError) as info:
        parse_config(config)
    assert where[-1] in str(info.value) or "unknown key" in str(info.value)


# Feature: openvino-backend-integration, Property 3: Per-Model Backend Override
@settings(max_examples=100)
@given(models=st.lists(names, min_size=1, max_size=4, unique=True), data=st.data())
def test_property_3_per_model_override(models, data):
    registry = fresh_registry("alpha", "beta")
    overrides = {m: data.draw(st.sampled_from(["alpha", "beta"])) for m in models}
    default = data.draw(st.sampled_from(["counting", "alpha"]))
    path = write_config(yaml.safe_dump({"backend": {"default": default}, "model_overrides": overrides}))
    manager = ModelManager(registry=registry, config_path=path, monitor=PerformanceMonitor())
    for model in models:
        assert manager.load_model(model).backend_name == overrides[model]
    assert manager.load_model("not-overridden-model").backend_name == default


stages = st.sampled_from(["load", "generate", "forward"])
errors = st.sampled_from([RuntimeError("boom"), OSError("io"), MemoryError("oom"), KeyError("k"), ModelLoadError("x")])


def run_stage(manager: ModelManager, stage: str) -> object:
    if stage == "load":
        return manager.load_model("m")
    if stage == "generate":
        return manager.generate("m", "ab", max_new_tokens=2)
    return manager.forward("m", {"input_ids": [[1, 2]]})


# Feature: openvino-backend-integration, Property 6: Automatic Fallback on Failure
@settings(max_examples=100)
@given(stage=stages, error=errors)
def test_property_6_automatic_fallback(stage, error, caplog):
    registry = fresh_registry()
    faulty = FaultyBackend(fail_on=frozenset({stage}), error=error)
    registry.register(faulty, "faulty")
    monitor = PerformanceMonitor()
    path = write_config("backend: {default: faulty, priority: [counting]}")
    manager = ModelManager(registry=registry, monitor=monitor, config_path=path)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="muai_core.fallback"):
        result = run_stage(manager, stage)
    assert manager.get_model("m").backend_name == "counting"
    if stage == "generate":
        assert result == "abcd"
    [event] = monitor.fallback_events("m")
    assert (event.from_backend, event.to_backend, event.stage) == ("faulty", "counting", stage)
    assert "falling back to counting" in caplog.text
    assert all(m.released for m in faulty.loaded)


# Feature: openvino-backend-integration, Property 7: Fallback Disable Behavior
@settings(max_examples=100)
@given(stage=stages, error=errors)
def test_property_7_fallback_disabled_raises_the_original(stage, error):
    registry = fresh_registry()
    counting = registry.backend("counting").plugin
    registry.register(FaultyBackend(fail_on=frozenset({stage}), error=error), "faulty")
    monitor = PerformanceMonitor()
    path = write_config("backend: {default: faulty, priority: [counting], faulty: {enable_fallback: false}}")
    manager = ModelManager(registry=registry, monitor=monitor, config_path=path)
    with pytest.raises(BackendError) as info:
        run_stage(manager, stage)
    if isinstance(error, BackendError):
        assert info.value is error
    else:
        assert isinstance(info.value, ModelLoadError if stage == "load" else InferenceError)
        assert info.value.__cause__ is error
    assert counting.loaded == [] and monitor.fallback_events() == []


# Feature: openvino-backend-integration, Property 10: Performance Metrics Recording
@settings(max_examples=100)
@given(
    ops=st.lists(st.tuples(st.sampled_from(["counting", "alpha"]), prompts, st.integers(1, 8)), min_size=1, max_size=6)
)
def test_property_10_metrics_recording(ops):
    registry = fresh_registry("alpha")
    monitor = PerformanceMonitor()
    managers = {b: ModelManager(backend=b, registry=registry, monitor=monitor) for b in ("counting", "alpha")}
    for backend, prompt, tokens in ops:
        managers[backend].generate("m", prompt, max_new_tokens=tokens)
    for backend in ("counting", "alpha"):
        mine = [op for op in ops if op[0] == backend]
        stats = monitor.get_backend_stats(backend)
        if not mine:
            assert stats == {}
            continue
        assert stats["sample_count"] == len(mine)
        assert stats["total_tokens"] == sum(op[2] for op in mine)
        assert stats["avg_latency"] > 0 and stats["avg_throughput"] > 0
        assert stats["p50_latency"] <= stats["p95_latency"]
        assert all(m.backend == backend and m.model_name == "m" for m in monitor.inferences(backend))


ANY_VALUE = st.one_of(st.none(), st.integers(), st.text(max_size=8), st.binary(max_size=4), st.lists(st.integers()))
MESSAGES = st.one_of(
    ANY_VALUE,
    st.lists(
        st.one_of(
            ANY_VALUE,
            st.fixed_dictionaries(
                {"role": st.sampled_from(["system", "user", "assistant", "tool", "bot"]) | ANY_VALUE,
                 "content": st.text(max_size=12) | ANY_VALUE},
                optional={"name": ANY_VALUE},
            ),
            st.dictionaries(st.one_of(st.text(max_size=8), st.integers()), ANY_VALUE, max_size=3),
        ),
        max_size=4,
    ),
)  # fmt: skip


@settings(max_examples=300)
@given(messages=MESSAGES, prompt=st.one_of(st.none(), prompts))
def test_messages_are_accepted_exactly_when_well_formed(messages, prompt):
    from muai_core.contracts import ROLES, GenerationRequest
    from muai_core.errors import InvalidInputError

    if messages is None:
        valid = prompt is not None
    else:
        valid = prompt is None and isinstance(messages, list) and bool(messages)
        valid = valid and all(
            isinstance(m, dict)
            and set(m) == {"role", "content"}
            and m["role"] in ROLES
            and isinstance(m["content"], str)
            for m in messages
        )
    try:
        request = GenerationRequest.from_kwargs(prompt, messages=messages)
    except InvalidInputError as exc:
        assert not valid and exc.reason
        return
    assert valid
    if messages is not None:
        assert request.chat and request.prompt == "" and request.conversation == messages
