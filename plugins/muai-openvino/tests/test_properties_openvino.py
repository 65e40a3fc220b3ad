"""Hypothesis properties of the openvino backend on real exported models."""

from __future__ import annotations

import logging
import shutil
import string
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from muai_core import ModelManager, PerformanceMonitor
from muai_core.contracts import LoadRequest
from muai_core.errors import ConfigurationError, ModelLoadError
from muai_openvino import runtime
from muai_openvino.export_layout import REQUIRED, SEQ2SEQ_REQUIRED, ir_dir, required_files
from muai_openvino.settings import available_device, normalize_device

prompts = st.text(string.ascii_letters + string.digits + " .,!?'", min_size=1, max_size=30).filter(str.strip)
names = st.sampled_from(["gpt2", "tiny-llama"])


@pytest.fixture(scope="module")
def store_config(store, tmp_path_factory) -> str:
    """A config file whose models_dir and openvino cache_dir are the session store."""
    path = tmp_path_factory.mktemp("config") / "system.yaml"
    path.write_text(
        f"models_dir: {store / 'models'}\nbackend:\n  openvino:\n    cache_dir: {store / 'models' / 'openvino'}\n"
    )
    return str(path)


def store_manager(config: str, backend: str, **settings) -> ModelManager:
    return ModelManager(backend=backend, backend_config=settings, config_path=config, monitor=PerformanceMonitor())


@pytest.fixture(scope="module")
def managers(store_config):
    """One manager per (backend, precision), all over the session store, loaded lazily."""
    cache: dict[tuple[str, str], ModelManager] = {}

    def get(backend: str, precision: str = "FP32") -> ModelManager:
        key = (backend, precision)
        if key not in cache:
            settings = {"precision": precision} if backend == "openvino" else {}
            cache[key] = store_manager(store_config, backend, **settings)
        return cache[key]

    return get


# Feature: openvino-backend-integration, Property 4: Device Configuration Consistency
@settings(max_examples=200)
@given(device=st.sampled_from(["cpu", "CPU", "Cpu", " cpu ", "gpu", "GPU.0", "gpu.1", "AUTO", "auto", "npu"]))
def test_property_4_device_names_normalise(device):
    name = normalize_device(device)
    assert name == device.strip().upper()
    assert available_device(name, ["CPU"]) in ("CPU", name)


# Feature: openvino-backend-integration, Property 4: Device Configuration Consistency
@settings(max_examples=20)
@given(device=st.sampled_from(["cpu", "CPU", "AUTO", "auto", "GPU"]), name=names)
def test_property_4_the_configured_device_is_used(store_config, device, name):
    manager = ModelManager(backend="openvino", device=device, config_path=store_config, monitor=PerformanceMonitor())
    manager.load_model(name)
    info = manager.get_model_info(name)["model_info"]
    assert info["requested_device"] == device.upper() and "CPU" in info["device"]
    assert manager.generate_result(name, "Hello", max_new_tokens=2).new_tokens == 2


# Feature: openvino-backend-integration, Property 9: Device Fallback on Unavailability
@settings(max_examples=200)
@given(device=st.sampled_from(["GPU", "GPU.0", "GPU.3", "NPU"]), available=st.sets(st.sampled_from(["CPU", "NPU"])))
def test_property_9_unavailable_device_falls_back_to_cpu(device, available, caplog):
    available = sorted({"CPU", *available} - ({device} if device == "NPU" else set()))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert available_device(device, available) == "CPU"
    assert f"OpenVINO device '{device}' not available" in caplog.text
    assert f"Available devices: {', '.join(available)}" in caplog.text


def test_property_9_bad_device_names_are_refused():
    # Feature: openvino-backend-integration, Property 9: Device Fallback on Unavailability
    for bad in ("banana", "GPU.x", "", "cuda"):
        with pytest.raises(ConfigurationError, match="CPU, GPU, GPU.N, NPU or AUTO"):
            normalize_device(bad)


# Feature: openvino-backend-integration, Property 11: Model Export Validation
@settings(max_examples=100)
@given(name=names, precision=st.sampled_from(["FP32", "FP16", "INT8"]), prompt=prompts)
def test_property_11_every_export_loads_and_produces_output(managers, name, precision, prompt):
    ov = managers("openvino", precision).generate_result(name, prompt, max_new_tokens=6)
    assert managers("openvino", precision).get_model(name).backend_name == "openvino"
    assert 1 <= ov.new_tokens <= 6 and isinstance(ov.text, str)
    if precision == "FP32":
        assert ov.token_ids == managers("pytorch").generate_result(name, prompt, max_new_tokens=6).token_ids


# Feature: openvino-backend-integration, Property 12: Export Directory Structure
@settings(max_examples=200)
@given(
    name=st.text(string.ascii_lowercase + string.digits + "-_.", min_size=1, max_size=20).filter(
        lambda s: s[0].isalnum()
    ),
    precision=st.sampled_from(["FP32", "FP16", "INT8"]),
)
def test_property_12_export_directory_convention(name, precision):
    request = LoadRequest(name, "transformers", f"models/{name}", True, "CPU")
    suffix = "" if precision == "FP32" else f"-{precision.lower()}"
    assert ir_dir(request, "models/openvino", precision) == Path("models/openvino") / f"{name}{suffix}"
    configured = LoadRequest(name, "transformers", f"models/{name}", True, "CPU", {}, {"openvino_path": "elsewhere/x"})
    assert ir_dir(configured, "models/openvino", precision) == Path("elsewhere/x")


# Feature: openvino-backend-integration, Property 13: Pre-Load File Validation
@settings(max_examples=100)
@given(missing=st.sets(st.sampled_from(REQUIRED), min_size=1))
def test_property_13_missing_files_are_named_before_openvino_runs(store, tmp_path_factory, monkeypatch, missing):
    directory = tmp_path_factory.mktemp("ir") / "gpt2"
    shutil.copytree(store / "models" / "openvino" / "gpt2", directory, ignore=shutil.ignore_patterns("compiled-cache"))
    for file in missing:
        (directory / file).unlink()

    def must_not_run():
        raise AssertionError("OpenVINO was called before the files were checked")

    monkeypatch.setattr(runtime, "shared_core", must_not_run)
    request = LoadRequest(
        "gpt2", "transformers", str(store / "models" / "gpt2"), True, "CPU", {}, {"openvino_path": str(directory)}
    )
    with pytest.raises(ModelLoadError) as info:
        runtime.load(request)
    message = str(info.value)
    assert any(file in message for file in missing)
    assert "muai export gpt2 --precision FP32" in message


batches = st.integers(1, 3).flatmap(
    lambda b: st.integers(1, 8).flatmap(
        lambda s: st.lists(st.lists(st.integers(0, 300), min_size=s, max_size=s), min_size=b, max_size=b)
    )
)


# Feature: openvino-backend-integration, Property 8: Backend Interface Uniformity
@settings(max_examples=100)
@given(ids=batches, name=names, prompt=prompts)
def test_property_8_openvino_and_pytorch_return_the_same_structure(managers, ids, name, prompt):
    outputs = {b: managers(b).forward(name, {"input_ids": np.array(ids)}) for b in ("openvino", "pytorch")}
    assert list(outputs["openvino"]) == list(outputs["pytorch"]) == ["logits"]
    ov_logits, pt_logits = outputs["openvino"]["logits"], outputs["pytorch"]["logits"]
    assert ov_logits.dtype == pt_logits.dtype == np.float32 and ov_logits.shape == pt_logits.shape
    np.testing.assert_allclose(ov_logits, pt_logits, atol=1e-4)
    results = {b: managers(b).generate_result(name, prompt, max_new_tokens=3) for b in ("openvino", "pytorch")}
    assert type(results["openvino"]) is type(results["pytorch"])
    assert results["openvino"].token_ids == results["pytorch"].token_ids
    assert results["openvino"].text == results["pytorch"].text


# Encoder-decoder (seq2seq) examples of the properties above, on the tiny T5 and BART of ``seq2seq_store``.
seq2seq_names = st.sampled_from(["t5", "bart"])


@pytest.fixture(scope="module")
def seq2seq_managers(seq2seq_store, tmp_path_factory):
    """One manager per (backend, precision) over the seq2seq store, loaded lazily."""
    path = tmp_path_factory.mktemp("seq2seq-config") / "system.yaml"
    openvino = seq2seq_store / "models" / "openvino"
    path.write_text(f"models_dir: {seq2seq_store / 'models'}\nbackend:\n  openvino:\n    cache_dir: {openvino}\n")
    cache: dict[tuple[str, str], ModelManager] = {}

    def get(backend: str, precision: str = "FP32") -> ModelManager:
        if (backend, precision) not in cache:
            settings = {"precision": precision} if backend == "openvino" else {}
            cache[backend, precision] = store_manager(str(path), backend, **settings)
        return cache[backend, precision]

    return get


# Feature: openvino-backend-integration, Property 11: Model Export Validation
@settings(max_examples=30, deadline=None)
@given(
    export=st.sampled_from([("t5", "FP32"), ("bart", "FP32"), ("t5", "FP16"), ("t5", "INT8")]),
    prompt=prompts,
)
def test_property_11_every_seq2seq_export_loads_and_produces_output(seq2seq_managers, export, prompt):
    name, precision = export
    ov = seq2seq_managers("openvino", precision).generate_result(name, prompt, max_new_tokens=6, ignore_eos=True)
    assert seq2seq_managers("openvino", precision).get_model(name).backend_name == "openvino"
    assert ov.new_tokens == 6 and ov.text == ov.completion
    if precision == "FP32":
        reference = seq2seq_managers("pytorch").generate_result(name, prompt, max_new_tokens=6, ignore_eos=True)
        assert ov.token_ids == reference.token_ids


# Feature: openvino-backend-integration, Property 12: Export Directory Structure
@pytest.mark.parametrize(("name", "precision"), [("t5", "FP32"), ("bart", "FP32"), ("t5", "FP16"), ("t5", "INT8")])
def test_property_12_a_seq2seq_export_is_an_encoder_and_a_decoder_in_its_folder(seq2seq_store, name, precision):
    cache_dir = seq2seq_store / "models" / "openvino"
    request = LoadRequest(name, "transformers", str(seq2seq_store / "models" / name), True, "CPU")
    directory = ir_dir(request, str(cache_dir), precision)
    assert directory == cache_dir / (name if precision == "FP32" else f"{name}-{precision.lower()}")
    assert required_files(directory) == SEQ2SEQ_REQUIRED
    assert all((directory / file).is_file() for file in SEQ2SEQ_REQUIRED)


# Feature: openvino-backend-integration, Property 13: Pre-Load File Validation
@settings(max_examples=30, deadline=None)
@given(missing=st.sets(st.sampled_from([f for f in SEQ2SEQ_REQUIRED if f != "config.json"]), min_size=1))
def test_property_13_missing_seq2seq_files_are_named_before_openvino_runs(
    seq2seq_store, tmp_path_factory, monkeypatch, missing
):
    directory = tmp_path_factory.mktemp("ir") / "bart"
    shutil.copytree(seq2seq_store / "models" / "openvino" / "bart", directory)
    for file in missing:
        (directory / file).unlink()

    def must_not_run():
        raise AssertionError("OpenVINO was called before the files were checked")

    monkeypatch.setattr(runtime, "shared_core", must_not_run)
    source = str(seq2seq_store / "models" / "bart")
    request = LoadRequest("bart", "transformers", source, True, "CPU", {}, {"openvino_path": str(directory)})
    with pytest.raises(ModelLoadError) as info:
        runtime.load(request)
    assert any(file in str(info.value) for file in missing)
    assert "muai export bart --precision FP32" in str(info.value)


decoder_batches = st.integers(1, 3).flatmap(
    lambda b: st.tuples(
        st.integers(1, 8).flatmap(
            lambda s: st.lists(st.lists(st.integers(0, 300), min_size=s, max_size=s), min_size=b, max_size=b)
        ),
        st.integers(1, 6).flatmap(
            lambda s: st.lists(st.lists(st.integers(0, 300), min_size=s, max_size=s), min_size=b, max_size=b)
        ),
    )
)


# Feature: openvino-backend-integration, Property 8: Backend Interface Uniformity
@settings(max_examples=30, deadline=None)
@given(batch=decoder_batches, name=seq2seq_names, prompt=prompts)
def test_property_8_seq2seq_models_return_the_same_structure_on_both_backends(seq2seq_managers, batch, name, prompt):
    ids, decoder_ids = batch
    inputs = {"input_ids": np.array(ids), "decoder_input_ids": np.array(decoder_ids)}
    outputs = {b: seq2seq_managers(b).forward(name, inputs) for b in ("openvino", "pytorch")}
    assert list(outputs["openvino"]) == list(outputs["pytorch"]) == ["logits"]
    ov_logits, pt_logits = outputs["openvino"]["logits"], outputs["pytorch"]["logits"]
    assert ov_logits.dtype == pt_logits.dtype == np.float32 and ov_logits.shape == pt_logits.shape
    assert ov_logits.shape[:2] == np.array(decoder_ids).shape
    np.testing.assert_allclose(ov_logits, pt_logits, atol=1e-3)
    results = {b: seq2seq_managers(b).generate_result(name, prompt, max_new_tokens=3) for b in ("openvino", "pytorch")}
    assert results["openvino"].token_ids == results["pytorch"].token_ids
    assert results["openvino"].text == results["pytorch"].text
