"""Fuzzed backend sections: each backend loads with them or refuses them itself with a muai error."""

from __future__ import annotations

import yaml
from hypothesis import event, given, settings
from hypothesis import strategies as st

from muai_core import ModelManager, PerformanceMonitor
from muai_core.errors import BackendError

KEYS = {
    "pytorch": ["device", "dtype", "allow_pickle"],
    "openvino": ["device", "precision", "kv_cache_precision", "num_streams", "performance_hint",
                 "inference_num_threads", "compile_cache_dir", "mmap"],
    "numpy": ["device"],
}  # fmt: skip
VALUES = st.one_of(
    st.sampled_from(["cpu", "CPU", "GPU", "gpu.1", "cuda:7", "AUTO", "NPU", "tpu", "", "FP32", "INT8", "fp16", "u8",
                     "f32", "LATENCY", "THROUGHPUT", "float16", "bfloat16", "float64", "2", "-1"]),
    st.integers(-(2**63), 2**63),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=True),
    st.lists(st.integers(), max_size=2),
    st.text(max_size=8),
)  # fmt: skip
BACKEND_SECTIONS = st.sampled_from(sorted(KEYS)).flatmap(
    lambda b: st.tuples(st.just(b), st.dictionaries(st.sampled_from([*KEYS[b], "unknown"]), VALUES, max_size=3))
)


@settings(max_examples=100)
@given(backend_section=BACKEND_SECTIONS)
def test_any_backend_section_loads_or_is_refused_by_the_backend(store, muai_workdir, backend_section):
    backend, section = backend_section
    section = {**section, "enable_fallback": False}
    if backend == "openvino":
        section.setdefault("cache_dir", str(store / "openvino"))
    config = {"models_dir": str(store / "models"), "backend": {"default": backend, backend: section}}
    path = muai_workdir / "system.yaml"
    path.write_text(yaml.safe_dump(config))
    try:
        manager = ModelManager(config_path=path, monitor=PerformanceMonitor())
        manager.generate("gpt2", "Hello", max_new_tokens=2)
    except BackendError as exc:
        assert not exc.reason.startswith(f"backend '{backend}' "), f"{type(exc.__cause__).__name__} escaped: {exc}"
        event(f"{backend}: {type(exc).__name__} {exc.reason[:40]}")
        return
    event(f"{backend}: loaded")
