"""The model cache bounded by bytes (max_cache_bytes) as well as by count."""

from __future__ import annotations

import gc
import weakref

import pytest

from muai_core.config import parse_config, parse_size
from muai_core.errors import ConfigurationError, ModelLoadError
from tests.conftest import write_config

KIB = 1024


@pytest.mark.parametrize(
    ("text", "size"),
    [(4096, 4096), ("4096", 4096), ("2KiB", 2048), ("1.5 MB", 1_500_000), ("1gib", 2**30), ("3 B", 3)],
)
def test_sizes_are_read_with_units(text, size):
    assert parse_size(text, "max_cache_bytes") == size
    assert parse_config({"max_cache_bytes": text}).max_cache_bytes == size


@pytest.mark.parametrize("bad", [0, -5, "lots", "2 TB", "", True, 1.5, [1], "0.1B"])
def test_bad_sizes_are_refused_with_the_units(bad):
    with pytest.raises(ConfigurationError, match="max_cache_bytes must be a positive size.*") as info:
        parse_config({"max_cache_bytes": bad})
    assert "GiB" in info.value.hint


def test_the_least_recently_used_models_go_until_the_bytes_fit(make_manager, counting):
    manager = make_manager(backend_config={"memory_bytes": 3 * KIB}, max_cache_bytes="10KiB", max_cached_models=10)
    for name in "abcd":
        manager.load_model(name)
    assert manager.loaded_models() == ["b", "c", "d"]  # 4 x 3 KiB > 10 KiB: a goes
    manager.generate("b", "x", max_new_tokens=1)  # b is now the most recent
    manager.load_model("e")
    assert manager.loaded_models() == ["d", "b", "e"]
    assert [r.name for r in counting.loaded if r.released] == ["a", "c"]


def test_an_evicted_model_is_freed(make_manager):
    manager = make_manager(backend_config={"memory_bytes": 6 * KIB}, max_cache_bytes=10 * KIB)
    first = weakref.ref(manager.load_model("a").handle)
    manager.load_model("b")
    gc.collect()
    assert manager.loaded_models() == ["b"] and first() is None


def test_a_model_larger_than_the_bound_is_a_clear_error_and_is_unloaded(make_manager, counting):
    manager = make_manager(backend_config={"memory_bytes": 5 * 2**20}, max_cache_bytes="4MiB")
    with pytest.raises(ModelLoadError, match=r"'big' holds 5 MiB on counting, more than max_cache_bytes \(4 MiB\)"):
        manager.load_model("big")
    assert manager.loaded_models() == [] and counting.loaded[0].released


def test_the_bound_comes_from_the_config_file(make_manager):
    config = write_config("max_cache_bytes: 8KiB\nbackend:\n  counting:\n    memory_bytes: 5000\n")
    manager = make_manager(config_path=config, max_cached_models=5)
    manager.load_model("a")
    manager.load_model("b")
    assert manager.loaded_models() == ["b"]


def test_a_bad_bound_argument_is_a_configuration_error(make_manager):
    with pytest.raises(ConfigurationError, match="max_cache_bytes"):
        make_manager(max_cache_bytes="big")
