"""YAML configuration: defaults, the design's schema, and clear errors for invalid content."""

from __future__ import annotations

import pytest

from muai_core.config import MuaiConfig, load_config, parse_config
from muai_core.errors import ConfigurationError
from tests.conftest import write_config

DESIGN_EXAMPLE = """
backend:
  default: openvino
  openvino:
    device: CPU
    enable_fallback: true
    cache_dir: models/openvino
    num_streams: 1
  pytorch:
    device: cpu
    dtype: float32
model_overrides:
  gpt2: openvino
  t5-small: pytorch
models:
  gpt2:
    pytorch_path: models/gpt2
    openvino_path: models/openvino/gpt2
"""


def test_missing_file_gives_defaults():
    config = load_config()
    assert config == MuaiConfig()
    assert (config.default_backend, config.priority, config.models_dir) == ("pytorch", ("pytorch",), "models")


def test_the_design_schema_parses():
    config = load_config(write_config(DESIGN_EXAMPLE))
    assert config.default_backend == "openvino"
    assert config.backend_settings("openvino")["num_streams"] == 1
    assert config.backend_settings("pytorch") == {"device": "cpu", "dtype": "float32"}
    assert config.model_overrides == {"gpt2": ("openvino",), "t5-small": ("pytorch",)}
    assert config.models["gpt2"]["openvino_path"] == "models/openvino/gpt2"
    assert config.source == "config/system.yaml"


def test_env_variable_names_the_file(monkeypatch):
    path = write_config("backend: {default: openvino}", "elsewhere.yaml")
    monkeypatch.setenv("MUAI_CONFIG", path)
    assert load_config().default_backend == "openvino"


def test_empty_file_gives_defaults():
    assert load_config(write_config("")).default_backend == "pytorch"


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("backend: [pytorch", "cannot read config"),
        ("- a\n- b\n", "the top level"),
        ("backends: {}", "backends"),
        ("backend: {default: 3}", "backend.default"),
        ("backend: {default: '../x'}", "backend.default"),
        ("backend: {priority: pytorch}", "backend.priority"),
        ("backend: {priority: []}", "backend.priority"),
        ("backend: {openvino: {enable_fallback: 'yes'}}", "backend.openvino.enable_fallback"),
        ("backend: {openvino: {device: 0}}", "backend.openvino.device"),
        ("backend: {openvino: [CPU]}", "backend.openvino"),
        ("model_overrides: {gpt2: [1]}", "model_overrides.gpt2[0]"),
        ("models: {gpt2: {path: x}}", "models.gpt2.path"),
        ("models_dir: 7", "models_dir"),
        ("backend: {1: {}}", "non-text key"),
    ],
)
def test_invalid_content_names_the_key(text, named):
    with pytest.raises(ConfigurationError) as info:
        load_config(write_config(text))
    assert named in info.value.reason
    assert "config/system.yaml" in info.value.reason
    assert info.value.hint


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("backend: {priorty: [pytorch]}", "did you mean 'priority'?"),
        ("backend: {defualt: openvino}", "did you mean 'default'?"),
        ("backend: {order: [pytorch]}", "e.g. backend.order: {device: cpu}"),
    ],
)
def test_a_value_under_backend_that_is_no_section_is_an_unknown_key(text, hint):
    with pytest.raises(ConfigurationError) as info:
        load_config(write_config(text))
    name = text.split("{")[1].split(":")[0]
    assert info.value.reason.startswith(f"unknown key '{name}' at backend in config/system.yaml (allowed: default, ")
    assert hint in info.value.hint


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("backend:\n  pytorch: [a\n", "line 3, column 1: expected ',' or ']', but got '<stream end>' "
         "(while parsing a flow sequence from line 2, column 12)"),
        ("backend:\n  default: a: b\n", "line 2, column 13: mapping values are not allowed here"),
        ("x: !!python/object:os.system 1\n", "line 1, column 4: could not determine a constructor for the tag"),
        ("a: b\nc: \"\x01\"\n", "line 2, column 5: character #x0001: special characters are not allowed"),
    ],
)  # fmt: skip
def test_bad_yaml_is_one_line_naming_where(text, problem):
    with pytest.raises(ConfigurationError) as info:
        load_config(write_config(text))
    assert info.value.reason.startswith(f"cannot read config config/system.yaml: {problem}")
    assert "\n" not in info.value.reason and "<unicode string>" not in info.value.reason
    assert "quote" in info.value.hint


def test_unknown_top_level_key_lists_allowed_keys():
    with pytest.raises(
        ConfigurationError, match="allowed keys are: backend, max_cache_bytes, model_overrides, models, models_dir"
    ):
        parse_config({"model_override": {}})


def test_override_list_is_a_chain_without_duplicates():
    config = parse_config({"model_overrides": {"m": ["openvino", "pytorch", "openvino"]}})
    assert config.model_overrides["m"] == ("openvino", "pytorch")


def test_non_utf8_file_is_a_configuration_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"backend:\n  default: \xff\xfe\n")
    with pytest.raises(ConfigurationError, match="cannot read config"):
        load_config(path)


def test_directory_instead_of_file_is_rejected(tmp_path):
    with pytest.raises(ConfigurationError, match="not a file"):
        load_config(tmp_path)


def _billion_laughs(key: str) -> str:
    """About 350 bytes of YAML whose aliases expand to 9**9 strings under ``key``."""
    anchors = ['&a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True):
        anchors.append(f"&{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
    document = {"backend.default": "backend:\n  default: [{}]\n", "models_dir": "models_dir: [{}]\n"}[key]
    return document.format(", ".join(anchors))


@pytest.mark.parametrize("key", ["backend.default", "models_dir"])
def test_aliases_that_expand_without_bound_are_refused_by_key(key):
    with pytest.raises(ConfigurationError, match=rf"^{key}\[5\] in .* expands past 1 MB through aliases"):
        load_config(write_config(_billion_laughs(key)))


def test_aliases_within_the_bound_still_work():
    text = "backend:\n  openvino: &shared {device: CPU}\n  numpy: *shared\n"
    assert load_config(write_config(text)).backend_settings("numpy") == {"device": "CPU"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("backend: " + "[" * 5000 + "]" * 5000, r"^backend\[0\].* nests deeper than 32 levels"),
        ("backend: &a {x: *a}", r"^backend\.x in .* has an alias inside its own anchor"),
        ("max_cache_bytes: " + "9" * 5000, r"^max_cache_bytes in .* is a number of 5000 digits"),
        ("max_cache_bytes: '" + "9" * 400 + " GiB'", r"^max_cache_bytes in .* must be a positive size"),
        ("max_cache_bytes: 99999999999999999999999", r"^max_cache_bytes in .* up to 8 EiB"),
    ],
)
def test_oversized_values_name_the_key_with_a_hint(text, message):
    with pytest.raises(ConfigurationError, match=message) as info:
        load_config(write_config(text))
    assert info.value.hint


def test_fractional_sizes_are_exact():
    assert parse_config({"max_cache_bytes": "1.5 GB"}).max_cache_bytes == 1_500_000_000
    assert parse_config({"max_cache_bytes": "0.5KiB"}).max_cache_bytes == 512


def test_values_in_errors_are_cut_before_they_are_formatted():
    huge = [[["x" * 10**6] * 1000] * 1000] * 1000  # a billion references: repr() would not finish
    with pytest.raises(ConfigurationError, match=r"models_dir must be a directory path, got \[\[\[") as info:
        parse_config({"models_dir": huge})
    assert len(str(info.value)) < 200
    with pytest.raises(ConfigurationError, match="non-text key <a number of about 5000 digits>"):
        parse_config({"models": {10**4999: {}}})
